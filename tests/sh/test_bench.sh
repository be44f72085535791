#!/usr/bin/env bash
# test_bench.sh: `localgemma bench` on a tiny fixture model: --json prints one JSON object whose
# figures are positive and consistent (prefill t/s = p / TTFT, weight bytes > 0, effective
# bandwidth = bytes x decode rate, --watts energy = W / rate / 3.6); -t 1 and 2 both run;
# --membw prints a positive bandwidth; bad arguments exit 2 and a missing file exits 1, each
# with one "localgemma bench: ..." line. No speed thresholds (CI machines vary).
# LG_BIN overrides the binary (default build/localgemma; see lib.sh).
. "$(dirname "$0")/lib.sh"
M=tests/golden/model/gemma3.q8_0.gguf

for t in 1 2; do
    if "$BIN" bench "$M" -p 8 -n 4 -r 2 -t $t --watts 50 --json >"$tmp/j" 2>"$tmp/e"; then
        ok
    else
        bad "bench -t $t exit $?: $(cat "$tmp/e")"
        continue
    fi
    if python3 - "$tmp/j" $t <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
t = int(sys.argv[2])
assert j["threads"] == t and j["p"] == 8 and j["n"] == 4 and j["reps"] == 2, j
for k in ("ttft_s", "prefill_tps", "decode_tps", "peak_rss_mib", "weight_bytes_per_token",
          "effective_gbs", "decode_kwh_per_mtok"):
    assert j[k] > 0, k
assert j["prefill_min_tps"] <= j["prefill_tps"] <= j["prefill_max_tps"]
# the median of two rates is not p / the median of two times: check the extremes, which pair up
assert abs(j["prefill_max_tps"] * j["ttft_min_s"] - 8) < 1e-2 * 8, "prefill rate vs TTFT (fastest)"
assert abs(j["prefill_min_tps"] * j["ttft_max_s"] - 8) < 1e-2 * 8, "prefill rate vs TTFT (slowest)"
bw = (j["weight_bytes_per_token"] + j["kv_bytes_per_token"]) * j["decode_tps"] / 1e9
assert abs(bw - j["effective_gbs"]) <= 1e-3 * bw + 1e-3, (bw, j["effective_gbs"])
kwh = 50 * (1e6 / j["decode_tps"]) / 3.6e6
assert abs(kwh - j["decode_kwh_per_mtok"]) <= 1e-3 * kwh + 1e-4, (kwh, j["decode_kwh_per_mtok"])
PY
    then ok; else bad "bench -t $t JSON figures inconsistent: $(cat "$tmp/j")"; fi
done

"$BIN" bench "$M" -p 4 -n 2 -r 1 >"$tmp/o" 2>&1 && grep -q '^decode n=2 ' "$tmp/o" && ok ||
    bad "human output: $(cat "$tmp/o")"

for args in "-p 0 $M" "-t 0 $M" "-r 1000 $M" "--bogus $M" "" "$M -p"; do
    # shellcheck disable=SC2086
    "$BIN" bench $args >"$tmp/o" 2>"$tmp/e"
    rc=$?
    if [ "$rc" -eq 2 ] && [ ! -s "$tmp/o" ] && grep -q 'localgemma bench' "$tmp/e"; then ok; else
        bad "bench $args: rc $rc, stderr $(cat "$tmp/e")"
    fi
done
"$BIN" bench "$tmp/missing.gguf" >"$tmp/o" 2>"$tmp/e"
rc=$?
if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/e")" -eq 1 ] && grep -q '^localgemma bench: ' "$tmp/e"; then
    ok
else
    bad "missing file: rc $rc, stderr $(cat "$tmp/e")"
fi

lg_done
