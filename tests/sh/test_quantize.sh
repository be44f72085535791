#!/usr/bin/env bash
# test_quantize.sh: `localgemma quantize` at the command line.
#  - usage errors exit 2, refusals (unknown type, OUT = IN, missing input) exit 1 or 2 with one
#    line "localgemma quantize: ..." on stderr, and leave no OUT;
#  - a small F32 model written by gguf-py (PyPI gguf) quantized to Q8_0 and Q4_K_M: exit 0,
#    `localgemma show` reports the file type, gguf-py reads the result (file type, tensor types,
#    dequantized values close to the input);
#  - a ~300 MB F32 model (made in a temp dir, deleted after) is killed mid-way with SIGTERM,
#    SIGINT and SIGKILL: no OUT file is left, and no temporary after the catchable signals.
# LG_BIN overrides the binary (default $BUILD/localgemma, BUILD=build; see lib.sh).
. "$(dirname "$0")/lib.sh"
qpid=
# the quantize killed mid-way, should the script stop before it does
lg_cleanup_extra() {
    [ -n "$qpid" ] && kill -KILL "$qpid" 2>/dev/null
}

# gen.py OUT N_LAYER NE0 NE1: a Gemma-like F32 model, N(0,1) weights, 1-D norms
cat >"$tmp/gen.py" <<'EOF'
import sys
import numpy as np
import gguf
path, n_layer, ne0, ne1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(1)
w = gguf.GGUFWriter(path, "gemma3")
w.add_block_count(n_layer)
w.add_head_count(4)
w.add_head_count_kv(1)
w.add_name("quantize sh test")
w.add_tensor("token_embd.weight", rng.standard_normal((ne1, ne0), dtype=np.float32))
w.add_tensor("output_norm.weight", np.ones(ne0, dtype=np.float32))
for il in range(n_layer):
    w.add_tensor(f"blk.{il}.attn_norm.weight", np.ones(ne0, dtype=np.float32))
    w.add_tensor(f"blk.{il}.attn_v.weight", rng.standard_normal((ne1 // 4, ne0), dtype=np.float32))
    w.add_tensor(f"blk.{il}.ffn_up.weight", rng.standard_normal((ne1, ne0), dtype=np.float32))
    w.add_tensor(f"blk.{il}.ffn_down.weight", rng.standard_normal((ne0, ne1), dtype=np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
EOF

# ---- usage and refusals -------------------------------------------------------------------
"$BIN" quantize >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q usage "$tmp/err"' "no arguments: rc=$rc"
"$BIN" quantize --help >"$tmp/out" 2>&1; rc=$?
check '[ $rc -eq 0 ] && grep -q Q4_K_M "$tmp/out"' "--help: rc=$rc"

if ! "$PY" "$tmp/gen.py" "$tmp/small.gguf" 4 512 256 2>"$tmp/err"; then
    bad "gguf-py could not write the small model: $(head -c 300 "$tmp/err")"
    lg_done
    exit 1
fi
small="$tmp/small.gguf"
sum_before=$(cksum <"$small")

"$BIN" quantize "$small" "$tmp/o.gguf" Q4_K_X >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "^localgemma quantize: unknown type Q4_K_X" "$tmp/err" && [ ! -e "$tmp/o.gguf" ]' \
    "unknown type: rc=$rc $(head -c 200 "$tmp/err")"
"$BIN" quantize "$small" "$small" Q8_0 >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "^localgemma quantize: .*input" "$tmp/err" && [ "$(cksum <"$small")" = "$sum_before" ]' \
    "OUT = IN: rc=$rc $(head -c 200 "$tmp/err")"
ln -s "$small" "$tmp/alias.gguf"
"$BIN" quantize "$small" "$tmp/alias.gguf" Q8_0 >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && [ "$(cksum <"$small")" = "$sum_before" ]' "OUT = IN via a symlink: rc=$rc"
"$BIN" quantize "$tmp/missing.gguf" "$tmp/o.gguf" Q8_0 >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "^localgemma quantize: " "$tmp/err" && [ ! -e "$tmp/o.gguf" ]' \
    "missing input: rc=$rc"
"$BIN" quantize "$small" "$tmp/o.gguf" Q8_0 --threads 0 >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && [ ! -e "$tmp/o.gguf" ]' "--threads 0: rc=$rc"
"$BIN" quantize "$small" "$tmp/o.gguf" Q8_0 --bogus >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && [ ! -e "$tmp/o.gguf" ]' "unknown option: rc=$rc"
"$BIN" quantize "$small" "$tmp/nodir/o.gguf" Q8_0 >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]' "unwritable OUT: rc=$rc"

# ---- successful runs ----------------------------------------------------------------------
for ty in Q8_0 Q4_K_M; do
    out="$tmp/small-$ty.gguf"
    "$BIN" quantize "$small" "$out" "$ty" --threads 2 >"$tmp/out" 2>"$tmp/err"; rc=$?
    check '[ $rc -eq 0 ] && [ -s "$out" ] && grep -q "100%" "$tmp/err"' \
        "$ty: rc=$rc $(tail -c 300 "$tmp/err")"
    "$BIN" show "$out" >"$tmp/show" 2>&1; rc=$?
    want_ft=$([ "$ty" = Q8_0 ] && echo 7 || echo 15)
    check '[ $rc -eq 0 ] && grep -q "file type: *MOSTLY_$ty ($want_ft)" "$tmp/show"' \
        "$ty: show: rc=$rc $(grep 'file type' "$tmp/show")"
    # gguf-py reads it: file type, version, per-tensor types, values close to the input
    "$PY" - "$small" "$out" "$ty" >"$tmp/py" 2>&1 <<'EOF'
import sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
src, out, ty = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2]), sys.argv[3]
f = out.fields
assert int(f["general.file_type"].parts[-1][0]) == (7 if ty == "Q8_0" else 15)
assert int(f["general.quantization_version"].parts[-1][0]) == 2
assert bytes(f["general.name"].parts[-1]).decode() == "quantize sh test"
s = {t.name: t for t in src.tensors}
# Q4_K_M on 4 layers: attn_v and ffn_down of layers 2 and 3 get Q6_K, token_embd (tied) Q6_K
more = {2, 3}
for t in out.tensors:
    a = s[t.name]
    if len(a.shape) == 1 or a.shape[1] == 1:
        want = "F32"
    elif ty == "Q8_0":
        want = "Q8_0"
    elif t.name == "token_embd.weight":
        want = "Q6_K"
    elif ("attn_v" in t.name or "ffn_down" in t.name) and int(t.name.split(".")[1]) in more:
        want = "Q6_K"
    else:
        want = "Q4_K"
    assert t.tensor_type.name == want, (t.name, t.tensor_type.name, want)
    x = np.asarray(a.data, dtype=np.float32).reshape(-1)
    y = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
    rel = float(np.sqrt(np.mean((x - y) ** 2) / np.mean(x ** 2)))
    assert rel < {"F32": 1e-9, "Q8_0": 0.0065, "Q6_K": 0.0215, "Q4_K": 0.086}[want], (t.name, rel)
print("gguf-py ok", len(out.tensors))
EOF
    rc=$?
    check '[ $rc -eq 0 ] && grep -q "gguf-py ok 18" "$tmp/py"' "$ty: gguf-py check: $(tail -c 400 "$tmp/py")"
done

# ---- interrupted runs leave no OUT --------------------------------------------------------
# 4 layers of [2048 x 4096] F32 + embeddings: ~340 MB, several seconds of Q4_K_M work
if "$PY" "$tmp/gen.py" "$tmp/big.gguf" 4 2048 4096 2>"$tmp/err"; then
    for sig in TERM INT KILL; do
        out="$tmp/big-$sig.gguf"
        "$BIN" quantize "$tmp/big.gguf" "$out" Q4_K_M --threads 1 >/dev/null 2>&1 &
        qpid=$!
        # wait until the temporary output exists and has data in it (at most 30 s)
        started=0
        for _ in $(seq 1 300); do
            t=$(ls "$out".tmp.* 2>/dev/null | head -n 1)
            if [ -n "$t" ] && [ "$(stat -c %s "$t" 2>/dev/null || echo 0)" -gt 1000000 ]; then
                started=1
                break
            fi
            kill -0 "$qpid" 2>/dev/null || break
            sleep 0.1
        done
        kill -"$sig" "$qpid" 2>/dev/null
        wait "$qpid" 2>/dev/null
        rc=$?
        qpid=
        check '[ $started -eq 1 ]' "$sig: quantize never got going"
        check '[ ! -e "$out" ]' "$sig: OUT exists after the kill"
        case $sig in
        TERM) want_rc=143 ;;
        INT) want_rc=130 ;;
        KILL) want_rc=137 ;;
        esac
        check '[ $rc -eq $want_rc ]' "$sig: rc=$rc, want $want_rc"
        if [ "$sig" != KILL ]; then
            check '[ -z "$(ls "$out".tmp.* 2>/dev/null)" ]' "$sig: temporary file left behind"
        fi
        rm -f "$out".tmp.*
    done
    rm -f "$tmp/big.gguf"
else
    bad "gguf-py could not write the big model: $(head -c 300 "$tmp/err")"
fi

lg_done
