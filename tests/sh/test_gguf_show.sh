#!/usr/bin/env bash
# test_gguf_show.sh: `localgemma show` on every malformed corpus file exits 1 with exactly one
# line "localgemma show: gguf: ..." on stderr and nothing on stdout; on the valid fuzz seeds it
# exits 0, and --json prints one JSON object whose tensor list and metadata count match the text
# output. Usage errors exit 2. LG_BIN overrides the binary (default build/localgemma; lib.sh).
. "$(dirname "$0")/lib.sh"

n_files=0
for f in tests/corpus/gguf/*.gguf; do
    n_files=$((n_files + 1))
    "$BIN" show "$f" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && [ ! -s "$tmp/out" ] &&
        grep -q '^localgemma show: gguf: .* at byte [0-9]*: ' "$tmp/err"; then
        ok
    else
        bad "$f: rc=$rc, $lines stderr lines: $(head -c 300 "$tmp/err")"
    fi
    # --json must fail the same way (no partial JSON on stdout)
    "$BIN" show --json "$f" >"$tmp/out" 2>"$tmp/err2"
    rc=$?
    if [ "$rc" -eq 1 ] && [ ! -s "$tmp/out" ] && cmp -s "$tmp/err" "$tmp/err2"; then ok; else bad "$f --json: rc=$rc"; fi
done
[ "$n_files" -ge 60 ] && ok || bad "only $n_files corpus files"

for f in tests/fuzz/corpus/gguf/valid_*.gguf; do
    if "$BIN" show "$f" >"$tmp/out" 2>"$tmp/err" && [ ! -s "$tmp/err" ] &&
        grep -q '^tensors (' "$tmp/out"; then ok; else bad "$f: show failed: $(cat "$tmp/err")"; fi
    if "$BIN" show --json --hash "$f" >"$tmp/json" 2>"$tmp/err"; then
        n_text=$(sed -n 's/^tensors (\([0-9]*\)):$/\1/p' "$tmp/out")
        kv_text=$(sed -n 's/^metadata (\([0-9]*\) keys):$/\1/p' "$tmp/out")
        if python3 - "$tmp/json" "$n_text" "$kv_text" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert len(d["tensors"]) == int(sys.argv[2]), "tensor count"
assert len(d["metadata"]) == d["n_kv"] == int(sys.argv[3]), "kv count"
assert all(len(t["sha256"]) == 64 for t in d["tensors"]), "sha256"
PY
        then ok; else bad "$f: --json disagrees with text output"; fi
    else
        bad "$f: show --json failed: $(cat "$tmp/err")"
    fi
done

# the small valid file: figures that the generator put there
f=tests/fuzz/corpus/gguf/valid_small.gguf
if "$BIN" show "$f" | grep -q '^architecture: "gemma3"$'; then ok; else bad "architecture line"; fi
if "$BIN" show "$f" | grep -qE '^  token_embd.weight +Q8_0 +32 x 4 +136$'; then ok; else bad "tensor row"; fi
if "$BIN" show "$f" | grep -q '^parameters:   192 '; then ok; else bad "parameter count"; fi
if "$BIN" show "$f" | grep -q '^  test.nested = \[array x 2\] \[\[u16 x 2\] \[1, 2\], \[u16 x 1\] \[3\]\]$'; then ok; else bad "nested array line"; fi

# values JSON cannot hold as such: invalid UTF-8 (replaced by U+FFFD and flagged), NaN, u64 max
python3 - "$tmp/odd.gguf" <<'PY'
import struct, sys
def s(b): return struct.pack("<Q", len(b)) + b
kv = s(b"odd.str") + struct.pack("<I", 8) + s(b"a\xffb\xc3")
kv += s(b"odd.nan") + struct.pack("<I", 6) + struct.pack("<f", float("nan"))
kv += s(b"odd.u64") + struct.pack("<I", 10) + struct.pack("<Q", 2**64 - 1)
open(sys.argv[1], "wb").write(b"GGUF" + struct.pack("<IQQ", 3, 0, 3) + kv)
PY
if "$BIN" show --json "$tmp/odd.gguf" >"$tmp/odd.json" 2>"$tmp/err" && python3 - "$tmp/odd.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
m = d["metadata"]
assert m["odd.str"]["value"] == "a\ufffdb\ufffd", m["odd.str"]
assert d["invalid_utf8_replaced"] is True
assert m["odd.nan"]["value"] == "nan"
assert m["odd.u64"]["value"] == "18446744073709551615"
PY
then ok; else bad "odd values in --json: $(cat "$tmp/err")"; fi
if "$BIN" show "$tmp/odd.gguf" | grep -qF '  odd.str string = "a\xffb\xc3"'; then ok; else bad "odd values in text"; fi

# the real Gemma 3 270M Q4_K_M file, when its PyPI package is installed (scripts/setup does)
model=$(lg_gemma3_270m)
if [ -n "$model" ] && [ -f "$model" ]; then
    "$BIN" show "$model" >"$tmp/model.txt" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 0 ] && grep -q '^file type:    MOSTLY_Q4_K_M (15)$' "$tmp/model.txt" &&
        grep -q '^parameters:   268098176 ' "$tmp/model.txt" &&
        grep -q '^tensors (236):$' "$tmp/model.txt" &&
        grep -q '^  tokenizer.ggml.tokens = \[string x 262144\] \["<pad>", "<eos>", "<bos>"' "$tmp/model.txt" &&
        grep -qE '^  token_embd.weight +Q8_0 +640 x 262144 +178257920$' "$tmp/model.txt"; then
        ok
    else
        bad "real model: rc=$rc $(head -c 300 "$tmp/err")"
    fi
else
    echo "test_gguf_show: real model not installed, skipping that check" >&2
fi

# usage and file errors
"$BIN" show >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "no FILE should exit 2"
"$BIN" show --bogus "$f" >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "unknown option should exit 2"
"$BIN" show /nonexistent/x.gguf >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]; then ok; else bad "missing file: rc=$rc"; fi
"$BIN" show tests >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 1 ] && grep -q 'not a regular file' "$tmp/err"; then ok; else bad "directory: rc=$rc"; fi

lg_done
