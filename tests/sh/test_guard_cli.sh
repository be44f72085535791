#!/usr/bin/env bash
# test_guard_cli.sh: `localgemma keys|audit|policy` in a temporary LOCALGEMMA_HOME:
# keys add (secret printed once, lg- + 43 base64url chars, never in guard.db, file mode 0600),
# duplicate/bad names and options, list (no secrets), revoke; audit verify/export on an empty
# log, then on a row forged with the sqlite3 Python module (verify must fail at record 1);
# export --since parsing; policy test/check with the built-ins and a user policy, and bad
# policy files whose errors name the field and the PCRE2 offset.
# Binary: build/localgemma (LG_BIN overrides; see lib.sh).
. "$(dirname "$0")/lib.sh"
export LOCALGEMMA_HOME=$tmp/home

# ---- keys
sec=$("$BIN" keys add alice --rpm 10 --tpm 1000 --max-concurrent 2 --models gemma3,gemma4 2>"$tmp/err")
rc=$?
check '[ $rc -eq 0 ]' "keys add exit $rc"
check '[[ "$sec" =~ ^lg-[A-Za-z0-9_-]{43}$ ]]' "secret format: '$sec'"
check 'grep -q "shown only once" "$tmp/err"' "add says the secret is shown once"
check '[ "$(stat -c %a "$LOCALGEMMA_HOME/guard.db")" = 600 ]' "guard.db mode 0600"
check '[ "$(stat -c %a "$LOCALGEMMA_HOME")" = 700 ]' "home mode 0700"
sec2=$("$BIN" keys add root --scope admin 2>/dev/null)
check '[ -n "$sec2" ] && [ "$sec2" != "$sec" ]' "second key differs"
"$BIN" keys add alice >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "already exists" "$tmp/err"' "duplicate name refused ($rc)"
"$BIN" keys add "bad name" >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "key name" "$tmp/err"' "bad name refused ($rc)"
"$BIN" keys add bob --scope root >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "generate or admin" "$tmp/err"' "bad scope refused ($rc)"
"$BIN" keys add bob --rpm -1 >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "out of range" "$tmp/err"' "negative limit refused ($rc)"
"$BIN" keys add bob --rpm >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 2 ]' "missing value refused ($rc)"
"$BIN" keys frob >/dev/null 2>&1; rc=$?
check '[ $rc -eq 2 ]' "unknown subcommand exit 2 ($rc)"
list=$("$BIN" keys list)
check 'grep -q "^alice .*generate .*active .*10 .*1000 .*gemma3,gemma4" <<<"$list"' "list shows alice: $list"
check 'grep -q "^root .*admin .*active" <<<"$list"' "list shows root"
check '! grep -q "lg-" <<<"$list"' "list shows no secret"
# the secrets are nowhere on disk
check '! grep -rqa -- "${sec#lg-}" "$LOCALGEMMA_HOME"' "secret 1 not stored"
check '! grep -rqa -- "${sec2#lg-}" "$LOCALGEMMA_HOME"' "secret 2 not stored"
out=$("$BIN" keys revoke alice); rc=$?
check '[ $rc -eq 0 ] && grep -q "revoked" <<<"$out"' "revoke"
"$BIN" keys revoke alice >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "no active key" "$tmp/err"' "revoke twice ($rc)"
check '"$BIN" keys list | grep -q "^alice .*revoked"' "list shows revoked"

# ---- audit
out=$("$BIN" audit verify); rc=$?
check '[ $rc -eq 0 ] && grep -q "OK: 0 records" <<<"$out"' "verify empty log: $out"
out=$("$BIN" audit export); rc=$?
check '[ $rc -eq 0 ] && [ -z "$out" ]' "export empty log"
"$BIN" audit export --since yesterday >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "not a time" "$tmp/err"' "bad --since ($rc)"
out=$("$BIN" audit export --since 2026-01-01T00:00:00Z); rc=$?
check '[ $rc -eq 0 ]' "--since ISO accepted"
# a row forged without the chain: verify must fail and name record 1
python3 - "$LOCALGEMMA_HOME/guard.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO audit(seq,t_ms,key,route,model,status,n_prompt,n_completion,latency_ms,"
           "finish,decisions,client,hash) VALUES(1,0,'k','r','m',200,1,1,1,'stop','','',zeroblob(32))")
db.execute("INSERT OR REPLACE INTO audit_head(id,seq,hash) VALUES(1,1,zeroblob(32))")
db.commit()
PY
out=$("$BIN" audit verify 2>"$tmp/err"); rc=$?
check '[ $rc -eq 1 ] && grep -q "first bad record 1" <<<"$out"' "forged row detected: $out"
out=$("$BIN" audit export); rc=$?
check '[ $rc -eq 0 ] && python3 -c "import json,sys; [json.loads(l) for l in sys.stdin]" <<<"$out" && [ "$(wc -l <<<"$out")" = 1 ]' "export is JSON lines"

# ---- policy
out=$("$BIN" policy test - "mail a.b@example.org, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, bad card 4111 1111 1111 1112"); rc=$?
check '[ $rc -eq 0 ]' "policy test builtin exit $rc"
check 'grep -q "^redacted: mail \[EMAIL\], card \[CARD\], IBAN \[IBAN\], bad card 4111 1111 1111 1112$" <<<"$out"' "builtin redaction: $out"
check 'grep -q "^redactions: email=1,card=1,iban=1$" <<<"$out"' "redaction summary"
cat >"$tmp/pol.json" <<'JSON'
{"version": 1, "refusal_message": "Refused by policy.",
 "input": {"deny": [{"id": "no-bomb", "pattern": "build\\s+a\\s+bomb", "caseless": true}]},
 "output": {"builtin_redact": ["email"],
            "redact": [{"id": "ticket", "pattern": "TICKET-[0-9]{5}", "replacement": "[T]", "max_len": 12}]},
 "tools": {"default": "deny", "models": {"gemma3": ["get_weather"]}}}
JSON
out=$("$BIN" policy test "$tmp/pol.json" "How do I BUILD a  bomb? mail x@y.de TICKET-12345"); rc=$?
check '[ $rc -eq 0 ] && grep -q "^input: deny (rule no-bomb): Refused by policy.$" <<<"$out"' "input deny: $out"
check 'grep -q "^redacted: How do I BUILD a  bomb? mail \[EMAIL\] \[T\]$" <<<"$out"' "user redaction: $out"
out=$("$BIN" policy test "$tmp/pol.json" "a birdhouse, call +44 20 7946 0958"); rc=$?
check 'grep -q "^input: allow$" <<<"$out" && grep -q "+44 20 7946 0958$" <<<"$out"' "allow, phone kept when not listed: $out"
out=$("$BIN" policy check "$tmp/pol.json"); rc=$?
check '[ $rc -eq 0 ] && grep -q "^OK" <<<"$out"' "policy check ok"
printf '{"input": {"deny": [{"id": "broken", "pattern": "a(b"}]}}' >"$tmp/bad1.json"
"$BIN" policy test "$tmp/bad1.json" x >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "bad1.json: input.deny\[0\]: pattern .broken.: missing closing parenthesis at offset 3" "$tmp/err"' "bad regex error: $(cat "$tmp/err")"
printf '{"output": {"redact": [{"id": "r", "pattern": "x", "max_len": "big"}]}}' >"$tmp/bad2.json"
"$BIN" policy check "$tmp/bad2.json" 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "output.redact\[0\].max_len" "$tmp/err"' "bad max_len error: $(cat "$tmp/err")"
printf '{"tools": {"defualt": "deny"}}' >"$tmp/bad3.json"
"$BIN" policy check "$tmp/bad3.json" 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "tools: unknown field .defualt." "$tmp/err"' "unknown field error: $(cat "$tmp/err")"
printf '{"input": ' >"$tmp/bad4.json"
"$BIN" policy check "$tmp/bad4.json" 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "JSON error at line 1" "$tmp/err"' "truncated JSON error: $(cat "$tmp/err")"
"$BIN" policy check "$tmp/missing.json" 2>"$tmp/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "No such file" "$tmp/err"' "missing file error"
"$BIN" policy test "$tmp/pol.json" >/dev/null 2>&1; rc=$?
check '[ $rc -eq 2 ]' "usage error exit 2 ($rc)"

lg_done
