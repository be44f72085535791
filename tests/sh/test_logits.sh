#!/usr/bin/env bash
# test_logits.sh: `localgemma logits` and `localgemma convert` at the command line, on the
# tiny reference models in tests/golden/model (made by tools/make-fixtures).
#  - for each variant: --out writes [n_tokens][n_vocab] little-endian f32 within 1e-3 of the
#    transformers logits; --decode (token by token) writes the same floats as the prefill;
#    the top-1 printed per position is the argmax of the reference;
#  - convert HF_DIR -> GGUF, then logits of the converted file equal those of the fixture;
#  - usage errors exit 2; bad token lists, ids out of range, missing files exit 1 with one
#    line "localgemma logits: ..." on stderr.
# LG_BIN overrides the binary (default $BUILD/localgemma, BUILD=build; see lib.sh).
. "$(dirname "$0")/lib.sh"
G=tests/golden/model

for v in gemma4_e2b gemma4_26b gemma4_31b gemma3; do
    toks=$($PY -c "import json; print(','.join(map(str, json.load(open('$G/$v.json'))['tokens'])))")
    if "$BIN" logits "$G/$v.f32.gguf" --tokens "$toks" --out "$tmp/p.bin" --top 1 >"$tmp/top.txt" 2>"$tmp/err"; then ok; else bad "$v: prefill exit $? $(cat "$tmp/err")"; fi
    if "$BIN" logits "$G/$v.f32.gguf" --tokens "$toks" --decode --out "$tmp/d.bin" --top 0 2>"$tmp/err"; then ok; else bad "$v: decode exit $?"; fi
    if cmp -s "$tmp/p.bin" "$tmp/d.bin"; then ok; else bad "$v: --decode output differs from prefill"; fi
    if $PY - "$tmp/p.bin" "$G/$v.logits" "$tmp/top.txt" <<'PYEOF'
import sys, numpy as np
got = np.fromfile(sys.argv[1], "<f4"); ref = np.fromfile(sys.argv[2], "<f4")
if got.shape != ref.shape: sys.exit(f"shape {got.shape} vs {ref.shape}")
err = float(np.abs(got - ref).max())
if not err <= 1e-3: sys.exit(f"max abs err {err}")
ref = ref.reshape(-1, 256)
lines = open(sys.argv[3]).read().split("\n")[:-1]
if len(lines) != ref.shape[0]: sys.exit(f"{len(lines)} lines for {ref.shape[0]} positions")
for i, line in enumerate(lines):
    pos, rest = line.split(" ", 1)
    top = int(rest.split(": ")[1].split(":")[0])
    if int(pos) != i or top != int(ref[i].argmax()): sys.exit(f"line {i}: {line}")
PYEOF
    then ok; else bad "$v: logits vs reference"; fi
    # convert the HF checkpoint, then the converted file must give the same logits
    if "$BIN" convert "$G/$v.hf" "$tmp/c.gguf" --type f32 2>"$tmp/err"; then ok; else bad "$v: convert exit $? $(cat "$tmp/err")"; fi
    "$BIN" logits "$tmp/c.gguf" --tokens "$toks" --out "$tmp/c.bin" --top 0 2>/dev/null
    if cmp -s "$tmp/p.bin" "$tmp/c.bin"; then ok; else bad "$v: converted file gives other logits"; fi
done

M="$G/gemma3.f32.gguf"
expect() { # expect CODE ARGS...: exit code and, for 1, a one-line message
    want=$1; shift
    "$BIN" "$@" >/dev/null 2>"$tmp/err"; rc=$?
    if [ "$rc" = "$want" ]; then ok; else bad "$* -> exit $rc, want $want"; fi
    if [ "$want" = 1 ]; then
        if [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "^localgemma $1: " "$tmp/err"; then ok; else bad "$*: stderr $(cat "$tmp/err")"; fi
    fi
}
expect 2 logits
expect 2 logits "$M"
expect 2 logits "$M" --tokens 1,2 --bogus
expect 2 logits "$M" --tokens 1,2 --ctx 0
expect 1 logits "$M" --tokens 1,,2
expect 1 logits "$M" --tokens 1,2,
expect 1 logits "$M" --tokens -1
expect 1 logits "$M" --tokens 2,256
expect 1 logits "$M" --tokens 2,3,4 --ctx 2
expect 1 logits "$tmp/missing.gguf" --tokens 2
expect 1 logits "$G/gemma3.json" --tokens 2
expect 1 logits "$M" --tokens 2 --out "$tmp/no/such/dir/x.bin"
expect 2 convert
expect 2 convert "$G/gemma3.hf" "$tmp/x.gguf" --type q4_k
expect 1 convert "$tmp" "$tmp/x.gguf"
if [ ! -e "$tmp/x.gguf" ]; then ok; else bad "a failed convert left its output"; fi

lg_done
