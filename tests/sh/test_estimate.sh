#!/usr/bin/env bash
# test_estimate.sh: `localgemma estimate` and the memory check of run/bench (issue #9).
# On the tiny golden Gemma 4 fixtures and the real Gemma 3 270M: --json parts add up to the
# total; the KV cache follows the layer kinds (E2B-like fixture: shared layers hold nothing);
# q8_0 / q4_0 KV cost exactly 34/64 and 18/64 of f16 on the 270M (head 256); doubling the
# context doubles the global-layer KV and leaves the sliding rings alone; --parallel
# multiplies the per-sequence parts (KV-only states after the first, as serve); with LG_MEM_AVAILABLE too small the verdict is "does NOT
# fit", and run / bench refuse (exit 1) with the planner's explanation instead of loading;
# without --ctx, run picks min(trained, 8192, what fits); bad arguments exit 2.
# LG_BIN overrides the binary (default build/localgemma; see lib.sh).
. "$(dirname "$0")/lib.sh"
F=tests/golden/model/gemma4_e2b.q8_0.gguf
M=$(lg_gemma3_270m)

# 1. JSON: the parts add up, layer kinds, context doubling
for c in 1024 2048; do
    if "$BIN" estimate "$F" --ctx $c --json >"$tmp/j$c" 2>"$tmp/e"; then ok; else
        bad "estimate --ctx $c: $(cat "$tmp/e")"; fi
done
python3 - "$tmp/j1024" "$tmp/j2048" <<'PY' && ok || bad "estimate JSON checks"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for j in (a, b):
    parts = (j["meta_bytes"] + j["weights_bytes"] + j["repack_bytes"] + j["vocab_bytes"]
             + j["model_heap_bytes"] + j["baseline_bytes"]
             + j["state_bytes_first_sequence"]
             + (j["n_parallel"] - 1) * j["state_bytes_per_sequence"]
             + j["n_parallel"] * j["session_bytes_per_sequence"])
    assert parts == j["total_bytes"], (parts, j["total_bytes"])
    kv = j["kv"]
    assert kv["bytes_per_sequence"] == kv["sliding"]["bytes"] + kv["global"]["bytes"]
    assert kv["shared_layers"] == 3 and kv["sliding"]["layers"] == 3 and kv["global"]["layers"] == 2, kv
    assert j["paged_total_bytes"] > 0 and j["fits"] is True and j["kv_type_k"] == "f16"
assert a["n_ctx"] == 1024 and b["n_ctx"] == 2048
assert b["kv"]["global"]["bytes"] == 2 * a["kv"]["global"]["bytes"]
assert b["kv"]["sliding"]["bytes"] == a["kv"]["sliding"]["bytes"]  # the rings do not grow
assert b["total_bytes"] > a["total_bytes"]
PY

# 2. --parallel 4 multiplies the per-sequence parts only; sequences 2.. are KV-only (as the
# server's slots): their state is smaller than the first's, which alone has activations
"$BIN" estimate "$F" --ctx 1024 --parallel 4 --json >"$tmp/p4" 2>"$tmp/e" && ok || bad "--parallel"
python3 - "$tmp/j1024" "$tmp/p4" <<'PY' && ok || bad "--parallel arithmetic"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
per = b["state_bytes_per_sequence"] + b["session_bytes_per_sequence"]
assert b["n_parallel"] == 4 and b["total_bytes"] - a["total_bytes"] == 3 * per
assert b["kv_only_rest"] is True
assert b["state_bytes_per_sequence"] < b["state_bytes_first_sequence"]
assert b["state_bytes_first_sequence"] == a["state_bytes_first_sequence"]
assert b["state_bytes_per_sequence"] < b["kv"]["bytes_per_sequence"] + 4096
assert b["activations_bytes_per_sequence"] == a["activations_bytes_per_sequence"]
PY
"$BIN" estimate "$F" --ctx 1024 --parallel 4 >"$tmp/t4" 2>"$tmp/e" && ok || bad "table x4"
grep -q "activations and scratch (x1)" "$tmp/t4" && grep -q "KV cache (x4)" "$tmp/t4" && ok ||
    bad "table x4: $(cat "$tmp/t4")"

# 3. the human table
"$BIN" estimate "$F" --ctx 1024 >"$tmp/t" 2>"$tmp/e" && ok || bad "table: $(cat "$tmp/e")"
for w in "weights, mapped and resident" "per-layer embeddings, paged" "sliding: 3 layers" \
         "shared: 3 layers" "total (peak RSS" "largest context that fits"; do
    grep -q "$w" "$tmp/t" && ok || bad "table lacks '$w'"
done

# 4. too little memory: estimate says so (exit 0), run and bench refuse (exit 1)
LG_MEM_AVAILABLE=1M "$BIN" estimate "$F" --json >"$tmp/j" 2>"$tmp/e" && ok || bad "small mem"
python3 -c "import json,sys; j=json.load(open('$tmp/j')); assert j['fits'] is False and \
j['available_bytes'] == 1048576 and j['available_source'] == 'LG_MEM_AVAILABLE'" && ok ||
    bad "small-memory verdict: $(cat "$tmp/j")"
LG_MEM_AVAILABLE=1M "$BIN" estimate "$F" | grep -q "does NOT fit" && ok || bad "table verdict"
LG_MEM_AVAILABLE=1M "$BIN" bench "$F" -p 4 -n 2 -r 1 >/dev/null 2>"$tmp/e"
rc=$?
[ $rc -eq 1 ] && grep -q "localgemma bench: .* does not fit in memory: needs .* GiB" "$tmp/e" &&
    ok || bad "bench refusal: exit $rc $(cat "$tmp/e")"

# 5. bench with --ctx and a KV type reports them
"$BIN" bench "$F" -p 4 -n 2 -r 1 --ctx 300 --kv-type f32 --json >"$tmp/b" 2>"$tmp/e" && ok ||
    bad "bench --ctx: $(cat "$tmp/e")"
python3 -c "import json; j=json.load(open('$tmp/b')); assert j['n_ctx'] == 300 and \
j['kv_type_k'] == 'f32' and j['rss_anon_mib'] > 0" && ok || bad "bench JSON: $(cat "$tmp/b")"
"$BIN" bench "$F" -p 64 -n 2 --ctx 32 >/dev/null 2>"$tmp/e"
[ $? -eq 2 ] && ok || bad "bench --ctx smaller than -p accepted"

# 6. KV types on the real 270M (head 256): exact byte ratios; run refusal and default context
if [ -n "$M" ] && [ -f "$M" ]; then
    for t in f16 q8_0 q4_0; do
        "$BIN" estimate "$M" --ctx 4096 --kv-type $t --json >"$tmp/k$t" 2>"$tmp/e" && ok ||
            bad "--kv-type $t: $(cat "$tmp/e")"
    done
    python3 - "$tmp/kf16" "$tmp/kq8_0" "$tmp/kq4_0" <<'PY' && ok || bad "KV type ratios"
import json, sys
f, q8, q4 = (json.load(open(p))["kv"]["bytes_per_sequence"] for p in sys.argv[1:4])
assert q8 * 64 == f * 34 and q4 * 64 == f * 18, (f, q8, q4)
PY
    "$BIN" estimate "$M" --kv-type-k q8_0 --kv-type-v f16 --json >"$tmp/kk" && python3 -c "
import json; j=json.load(open('$tmp/kk')); assert j['kv_type_k']=='q8_0' and j['kv_type_v']=='f16'
assert j['n_ctx'] == min(8192, j['n_ctx_train'], j['n_ctx_max_fit'])" && ok || bad "split K/V types"
    LG_MEM_AVAILABLE=200M "$BIN" run "$M" -n 2 "hi" >"$tmp/o" 2>"$tmp/e"
    rc=$?
    [ $rc -eq 1 ] && grep -q "localgemma run: .* does not fit in memory" "$tmp/e" && [ ! -s "$tmp/o" ] &&
        ok || bad "run refusal: exit $rc $(cat "$tmp/e")"
    # what a 2048-token context needs, plus the headroom (the weights alone are ~280 MiB more
    # when repacked: a tied output copy): fits only a smaller context than the cap; run uses
    # what the planner chose
    mem=$("$BIN" estimate "$M" --ctx 2048 --json | python3 -c "import json,sys; j=json.load(sys.stdin); print(j['total_bytes'] + j['headroom_bytes'])")
    want=$(LG_MEM_AVAILABLE=$mem "$BIN" estimate "$M" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['n_ctx'])")
    LG_MEM_AVAILABLE=$mem "$BIN" run "$M" -n 2 --temp 0 --verbose "hi" >"$tmp/o" 2>"$tmp/e"
    got=$(sed -n 's/^load time:.*context \([0-9]*\)).*/\1/p' "$tmp/e")
    [ -n "$want" ] && [ "$want" = "$got" ] && [ "$want" -lt 8192 ] && [ "$want" -ge 2048 ] && ok ||
        bad "default context: planner $want, run $got"
else
    bad "the Gemma 3 270M model is missing"
fi

# 7. usage errors
"$BIN" estimate >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "no MODEL"
"$BIN" estimate "$F" --kv-type q3_k 2>"$tmp/e" >/dev/null
[ $? -eq 2 ] && grep -q "unknown KV cache type" "$tmp/e" && ok || bad "bad --kv-type"
"$BIN" estimate "$F" --ctx 0 >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "--ctx 0"
"$BIN" estimate /nonexistent.gguf >/dev/null 2>"$tmp/e"
[ $? -eq 1 ] && grep -q "localgemma estimate:" "$tmp/e" && ok || bad "missing file"
"$BIN" estimate "$F" --kv-type q8_0 >/dev/null 2>"$tmp/e"
[ $? -eq 1 ] && grep -q "32" "$tmp/e" && ok || bad "q8_0 on 16-wide heads accepted"

lg_done
