#!/usr/bin/env bash
# test_store.sh: the model store through the CLI, in a temporary LOCALGEMMA_HOME:
# import (hard link and copy), list, cp, rm with shared blobs, re-import (dedup), bad names
# (nothing touched on disk, checked with strace when available), non-GGUF input, and an
# import killed with SIGKILL half way through copying a 1.6 GB sparse GGUF from /dev/shm
# (another filesystem, so it must copy): no model in `list`, no blob, and the orphan partial
# is removed by the next command's startup scan.
# Binary: build/localgemma (LG_BIN overrides). Run from the repo root.
set -u
BIN=${LG_BIN:-build/localgemma}
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }

if [ ! -x "$BIN" ]; then
    echo "test_store: binary $BIN missing" >&2
    echo "test_store: 0 passed, 1 failed"
    exit 1
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

work=$(mktemp -d /tmp/lg_test_store_sh_XXXXXX)
shm=""
bgpid=""
cleanup() {
    [ -n "$bgpid" ] && kill -9 "$bgpid" 2>/dev/null
    rm -rf "$work"
    [ -n "$shm" ] && rm -f "$shm"
}
trap cleanup EXIT
export LOCALGEMMA_HOME=$work/home

# Small valid GGUFs (python gguf package, installed by scripts/setup).
python3 - "$work" <<'EOF'
import sys, numpy as np, gguf
for name, seed in (("small.gguf", 1), ("other.gguf", 2)):
    w = gguf.GGUFWriter(f"{sys.argv[1]}/{name}", "gemma3")
    w.add_string("general.basename", "Tiny Model")
    w.add_string("general.size_label", "2M")
    w.add_uint32("gemma3.context_length", 4096)
    w.add_tensor("t", np.random.default_rng(seed).standard_normal(50000).astype(np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
EOF
small=$work/small.gguf
other=$work/other.gguf
sum_small=$(sha256sum "$small" | cut -c1-64)
sum_other=$(sha256sum "$other" | cut -c1-64)

names() { "$BIN" list 2>/dev/null | tail -n +2 | awk '{print $1}' | sort | tr '\n' ' '; }
nblobs() { ls -A "$LOCALGEMMA_HOME/blobs" 2>/dev/null | wc -l; }
ntmp() { ls -A "$LOCALGEMMA_HOME/tmp" 2>/dev/null | wc -l; }

# --- import, list --------------------------------------------------------------------------
out=$("$BIN" import "$small" 2>&1); rc=$?
check '[ $rc -eq 0 ]' "import rc $rc: $out"
check '[[ "$out" == *"imported tiny-model:2m"*"hard link"* ]]' "default name + hard link: $out"
check '[ "$(names)" = "tiny-model:2m " ]' "list after import: $(names)"
check '[ -f "$LOCALGEMMA_HOME/blobs/sha256-$sum_small" ]' "blob named by sha256sum"
check '[ "$(stat -c %i "$small")" = "$(stat -c %i "$LOCALGEMMA_HOME/blobs/sha256-$sum_small")" ]' \
    "hard link shares the inode"
line=$("$BIN" list | grep tiny-model)
check '[[ "$line" == *"${sum_small:0:12}"* ]]' "list shows ID = first 12 hex: $line"
check '[[ "$("$BIN" list | head -1)" =~ ^NAME\ +ID\ +SIZE\ +MODIFIED ]]' "list header"
check 'grep -q "\"context_length\": 4096" "$LOCALGEMMA_HOME/manifests/tiny-model/2m"' \
    "manifest has GGUF facts"

# --- copy path, dedup, re-import -------------------------------------------------------------
out=$("$BIN" import --copy "$small" Tiny:Copy 2>&1); rc=$?
check '[ $rc -eq 0 ] && [[ "$out" == *"tiny:copy"*copied* ]]' "import --copy: $out"
check '[ "$(nblobs)" -eq 1 ]' "same content -> one blob ($(nblobs))"
out=$("$BIN" import "$small" tiny:copy 2>&1)
check '[ $? -eq 0 ] && [ "$(nblobs)" -eq 1 ]' "re-import same name: $out"
check '[ "$(names)" = "tiny-model:2m tiny:copy " ]' "names: $(names)"
check '[ "$(ntmp)" -eq 0 ]' "tmp empty after imports"
# re-pointing a name to other content drops the now unused blob? (no: tiny-model still uses it)
"$BIN" import "$other" tiny:copy >/dev/null 2>&1
check '[ "$(nblobs)" -eq 2 ]' "second content -> two blobs"

# --- cp and rm --------------------------------------------------------------------------------
out=$("$BIN" cp tiny:copy tiny:alias 2>&1)
check '[ $? -eq 0 ] && [ "$(names)" = "tiny-model:2m tiny:alias tiny:copy " ]' "cp: $out $(names)"
out=$("$BIN" cp nothere:x y 2>&1); rc=$?
check '[ $rc -eq 1 ] && [[ "$out" == *"not found"* ]]' "cp of a missing model: $out"
out=$("$BIN" rm tiny:copy 2>&1)
check '[ $? -eq 0 ] && [ -f "$LOCALGEMMA_HOME/blobs/sha256-$sum_other" ]' "rm keeps a shared blob: $out"
out=$("$BIN" rm tiny:alias 2>&1)
check '[ ! -e "$LOCALGEMMA_HOME/blobs/sha256-$sum_other" ]' "rm of the last name drops the blob"
check '[ ! -e "$LOCALGEMMA_HOME/manifests/tiny" ]' "empty family directory removed"
out=$("$BIN" rm tiny:alias 2>&1); rc=$?
check '[ $rc -eq 1 ] && [[ "$out" == *"not found"* ]]' "rm twice: $out"
"$BIN" rm tiny-model:2m >/dev/null 2>&1
check '[ "$(nblobs)" -eq 0 ] && [ -z "$(names)" ]' "store empty again"
check '[ -f "$small" ] && [ "$(sha256sum "$small" | cut -c1-64)" = "$sum_small" ]' \
    "the user's file survives rm of a hard-linked blob"

# --- the first Gemma 4 file also answers to `gemma4` -----------------------------------------
python3 - "$work" <<'EOF'
import sys, numpy as np, gguf
for name, seed in (("g4a.gguf", 3), ("g4b.gguf", 4)):
    w = gguf.GGUFWriter(f"{sys.argv[1]}/{name}", "gemma4")
    w.add_tensor("t", np.random.default_rng(seed).standard_normal(1000).astype(np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
EOF
out=$("$BIN" import "$work/g4a.gguf" gemma4:e2b 2>&1)
check '[[ "$out" != *"also available"* ]] && [ "$(names)" = "gemma4:e2b " ]' \
    "no alias when the name is already gemma4: $out / $(names)"
"$BIN" rm gemma4:e2b >/dev/null 2>&1
out=$("$BIN" import "$work/g4a.gguf" g4:e2b 2>&1)
check '[[ "$out" == *"also available as gemma4"* ]] && [ "$(names)" = "g4:e2b gemma4:latest " ]' \
    "gemma4 alias: $out / $(names)"
out=$("$BIN" import "$work/g4b.gguf" other4 2>&1)
check '[[ "$out" != *"also available"* ]] && [ "$(names)" = "g4:e2b gemma4:latest other4:latest " ]' \
    "alias kept on the first file: $out / $(names)"
"$BIN" rm g4:e2b gemma4 other4 >/dev/null 2>&1
check '[ -z "$(names)" ] && [ "$(nblobs)" -eq 0 ]' "gemma4 files removed"

# --- bad names, bad files ---------------------------------------------------------------------
for n in "../evil" "../../etc/x" "/abs/path" "a/b" "a:b:c" "" ":" ".hidden" "%2e%2e" "a..b" \
         "$(printf 'x%.0s' {1..70})" "a b" 'a\b'; do
    out=$("$BIN" import "$small" "$n" 2>&1); rc=$?
    check '[ $rc -eq 1 ] && [[ "$out" == "localgemma import: "* ]]' "bad name '$n' accepted: $out"
    out=$("$BIN" cp "$n" ok 2>&1); rc=$?
    check '[ $rc -eq 1 ]' "cp from bad name '$n'"
    out=$("$BIN" rm "$n" 2>&1); rc=$?
    check '[ $rc -eq 1 ]' "rm bad name '$n'"
done
check '[ ! -e "$work/evil" ] && [ ! -e "$LOCALGEMMA_HOME/evil" ] && [ -z "$(names)" ]' \
    "nothing created by bad names"
if command -v strace >/dev/null; then
    ASAN_OPTIONS=detect_leaks=0 strace -f -qq -o "$work/trace" -e trace=openat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,unlink,unlinkat \
        "$BIN" import "$small" "../../escape" >/dev/null 2>&1
    writes=$(grep -E 'O_CREAT|O_WRONLY|O_RDWR|mkdir|rename|link\(|linkat|unlink' "$work/trace" | grep -v ENOENT | wc -l)
    check '[ "$writes" -eq 0 ]' "a refused name causes no write syscall ($writes)"
    ASAN_OPTIONS=detect_leaks=0 strace -f -qq -o "$work/trace2" -e trace=openat,mkdir,mkdirat,renameat2,rename,linkat,unlinkat \
        "$BIN" import "$small" good:name >/dev/null 2>&1
    outside=$(grep -E 'O_CREAT|O_WRONLY|O_RDWR|mkdir|rename|link|unlink' "$work/trace2" \
              | grep -v -- "$LOCALGEMMA_HOME" | grep -v '/dev/' | wc -l)
    check '[ "$outside" -eq 0 ]' "an import writes only under the store root ($outside)"
    "$BIN" rm good:name >/dev/null 2>&1
fi
printf 'PK\003\004 not a model' > "$work/fake.gguf"
out=$("$BIN" import "$work/fake.gguf" fake 2>&1); rc=$?
check '[ $rc -eq 1 ] && [ -z "$(names)" ] && [ "$(nblobs)" -eq 0 ]' "non-GGUF refused: $out"
out=$("$BIN" import "$work/missing.gguf" 2>&1); rc=$?
check '[ $rc -eq 1 ] && [[ "$out" == *missing.gguf* ]]' "missing file: $out"
out=$("$BIN" import 2>&1); rc=$?
check '[ $rc -eq 2 ]' "import without a file is a usage error"
out=$("$BIN" import "$work" x 2>&1); rc=$?
check '[ $rc -eq 1 ]' "a directory is refused: $out"

# --- injected syscall failures (hardening.md G15) -----------------------------------------------
# Every fsync/rename/write/link an import makes is failed in turn; afterwards each listed model
# must have its blob with the right sha256, and no manifest may dangle.
verify_store() {   # prints the number of problems
    local n=0 m d
    for m in "$LOCALGEMMA_HOME"/manifests/*/*; do
        [ -f "$m" ] || continue
        d=$(grep -o '"digest": "sha256:[0-9a-f]*"' "$m" | cut -c19-82)
        if [ -z "$d" ] || [ ! -f "$LOCALGEMMA_HOME/blobs/sha256-$d" ] ||
           [ "$(sha256sum "$LOCALGEMMA_HOME/blobs/sha256-$d" | cut -c1-64)" != "$d" ]; then
            n=$((n + 1))
        fi
    done
    echo $n
}
if command -v strace >/dev/null; then
    injected=0
    for spec in fsync:error=EIO rename:error=EIO write:error=ENOSPC link:error=EXDEV \
                fallocate:error=ENOSPC; do
        for when in 1 2 3 4 5 6; do
            copy=""
            case $spec in write*|fallocate*) copy=--copy ;; esac
            ASAN_OPTIONS=detect_leaks=0 strace -f -qq -o /dev/null \
                -e inject="${spec}:when=$when" "$BIN" import $copy "$other" inj:x >/dev/null 2>&1
            rc=$?
            [ $rc -ne 0 ] && injected=$((injected + 1))
            probs=$(verify_store)
            check '[ "$probs" -eq 0 ]' "inject $spec when=$when: $probs inconsistent manifests"
            if [ $rc -ne 0 ]; then
                check '[ -z "$(names)" ]' "inject $spec when=$when failed but a model is listed"
            else
                check '[ "$(names)" = "inj:x " ]' "inject $spec when=$when: rc 0 but list $(names)"
            fi
            "$BIN" rm inj:x >/dev/null 2>&1
            sleep 0.02
            "$BIN" list >/dev/null 2>&1
            check '[ "$(ntmp)" -eq 0 ] && [ "$(nblobs)" -eq 0 ]' \
                "inject $spec when=$when: leftovers tmp=$(ntmp) blobs=$(nblobs)"
        done
    done
    check '[ "$injected" -ge 8 ]' "injected failures made only $injected imports fail"
fi

# --- kill -9 during a copy --------------------------------------------------------------------
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    shm=$(mktemp /dev/shm/lg_test_big_XXXXXX.gguf)
    python3 - "$shm" <<'EOF'
import os, sys, numpy as np, gguf
path = sys.argv[1]
n = 400_000_000  # 1.6 GB of F32, left sparse: reading it is fast, copying it takes seconds
w = gguf.GGUFWriter(path, "gemma3")
w.add_string("general.basename", "big")
w.add_tensor_info("big.weight", [n], np.dtype(np.float32), n * 4)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_ti_data_to_file(); w.close()
size = os.path.getsize(path)
os.truncate(path, (size + 31) // 32 * 32 + n * 4)
EOF
    for attempt in 1 2; do
        "$BIN" import "$shm" big:killed >/dev/null 2>&1 &
        bgpid=$!
        # wait until the copy is under way (a partial with data), then kill at once
        for _ in $(seq 1 200); do
            p=$(ls "$LOCALGEMMA_HOME"/tmp/*.partial 2>/dev/null | head -1)
            if [ -n "$p" ] && [ "$(stat -c %b "$p" 2>/dev/null || echo 0)" -gt 0 ]; then break; fi
            sleep 0.05
        done
        sleep 0.$((attempt * 3))
        kill -9 "$bgpid" 2>/dev/null
        wait "$bgpid" 2>/dev/null
        bgpid=""
        check '[ "$(ls "$LOCALGEMMA_HOME"/tmp/*.partial 2>/dev/null | wc -l)" -ge 1 ]' \
            "killed import #$attempt left its partial in tmp/ (copy was under way)"
        check '[ -z "$(names)" ]' "killed import #$attempt: no model listed ($(names))"
        check '[ "$(nblobs)" -eq 0 ]' "killed import #$attempt: no blob"
        check '[ ! -e "$LOCALGEMMA_HOME/manifests/big" ]' "killed import #$attempt: no manifest"
        sleep 0.05
        "$BIN" list >/dev/null 2>&1   # startup scan
        check '[ "$(ntmp)" -eq 0 ]' "orphan partial removed by the next startup scan ($(ntmp) left)"
    done
    rm -f "$shm"
    shm=""
fi

echo "test_store: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
