#!/usr/bin/env bash
# test_overflow.sh: what `run` / `chat` do with a prompt longer than the context (issue #9), on
# the real Gemma 3 270M: by default exit 1 with the token counts; with --overflow
# truncate-middle (or --truncate) an answer plus a stderr note saying how many tokens were
# dropped, and the prompt actually run (--verbose "prompt tokens") = original - dropped and
# leaves room for -n; a multi-turn chat drops whole earlier turns first; a bad --overflow value
# exits 2. LG_BIN overrides the binary (default build/localgemma; see lib.sh).
. "$(dirname "$0")/lib.sh"
M=$(lg_gemma3_270m)
[ -n "$M" ] && [ -f "$M" ] || lg_give_up "the Gemma 3 270M model is missing"
LONG=$(python3 -c "print(' '.join('item%d' % i for i in range(120)))")

# 1. default policy: error with the counts
"$BIN" run "$M" --ctx 64 -n 4 --temp 0 "$LONG" >"$tmp/o" 2>"$tmp/e"
rc=$?
[ $rc -eq 1 ] && ok || bad "default overflow: exit $rc, want 1"
n=$(sed -n 's/.*the prompt is \([0-9]*\) tokens but the context holds 64 .*/\1/p' "$tmp/e")
[ -n "$n" ] && [ "$n" -gt 64 ] && ok || bad "default overflow message: $(cat "$tmp/e")"
grep -q -- "--overflow truncate-middle" "$tmp/e" && ok || bad "message does not name the option"
[ ! -s "$tmp/o" ] && ok || bad "an answer was printed despite the error"

# 2. chat prompt, truncate-middle: an answer, the note, and the counts add up
"$BIN" run "$M" --ctx 96 -n 8 --temp 0 --verbose --overflow truncate-middle "$LONG" \
    >"$tmp/o" 2>"$tmp/e"
rc=$?
[ $rc -eq 0 ] && ok || bad "truncate-middle: exit $rc: $(cat "$tmp/e")"
[ -s "$tmp/o" ] && ok || bad "truncate-middle: no answer"
orig=$(sed -n 's/.*note: the prompt (\([0-9]*\) tokens) did not fit the 96-token.*/\1/p' "$tmp/e")
drop=$(sed -n 's/.*dropped \([0-9]*\) tokens from the middle.*/\1/p' "$tmp/e")
ran=$(sed -n 's/^prompt tokens: *\([0-9]*\) .*/\1/p' "$tmp/e")
if [ -n "$orig" ] && [ -n "$drop" ] && [ -n "$ran" ]; then
    [ "$orig" -eq "$n" ] && ok || bad "original count $orig differs from the error's $n"
    [ "$drop" -gt 0 ] && [ $((orig - drop)) -eq "$ran" ] && ok ||
        bad "orig $orig - dropped $drop != prompt tokens run $ran"
    [ "$ran" -le $((96 - 8)) ] && ok || bad "prompt $ran leaves no room for -n 8 in 96"
else
    bad "truncate-middle note/verbose missing: $(cat "$tmp/e")"
fi

# 3. raw prompt, --truncate: keeps the start and the end
"$BIN" run "$M" --ctx 80 -n 4 --temp 0 --verbose --raw --truncate "$LONG" >"$tmp/o" 2>"$tmp/e"
rc=$?
[ $rc -eq 0 ] && ok || bad "--truncate --raw: exit $rc: $(cat "$tmp/e")"
grep -q "note: the prompt ([0-9]* tokens) did not fit the 80-token context" "$tmp/e" && ok ||
    bad "--truncate: no note: $(cat "$tmp/e")"
ran=$(sed -n 's/^prompt tokens: *\([0-9]*\) .*/\1/p' "$tmp/e")
[ -n "$ran" ] && [ "$ran" -le 76 ] && [ "$ran" -ge 60 ] && ok || bad "--truncate ran $ran tokens"

# 4. a prompt that fits: no note
"$BIN" run "$M" --ctx 256 -n 4 --temp 0 --truncate "Hello" >"$tmp/o" 2>"$tmp/e"
rc=$?
[ $rc -eq 0 ] && ! grep -q "note:" "$tmp/e" && ok || bad "short prompt: exit $rc, $(cat "$tmp/e")"

# 5. multi-turn chat (stdin, not a terminal): whole earlier turns go first
python3 -c "
for i in range(5):
    print(' '.join('turn%d-word%d' % (i, j) for j in range(12)))" >"$tmp/in"
"$BIN" chat "$M" --ctx 200 -n 6 --temp 0 --overflow truncate-middle <"$tmp/in" >"$tmp/o" 2>"$tmp/e"
rc=$?
[ $rc -eq 0 ] && ok || bad "chat truncate: exit $rc: $(cat "$tmp/e")"
grep -q "earlier turn" "$tmp/e" && ok || bad "chat truncate: no dropped turns: $(cat "$tmp/e")"
"$BIN" chat "$M" --ctx 200 -n 6 --temp 0 <"$tmp/in" >"$tmp/o" 2>"$tmp/e"
rc=$?
[ $rc -eq 1 ] && grep -q "the prompt is [0-9]* tokens but the context holds 200" "$tmp/e" && ok ||
    bad "chat default overflow: exit $rc: $(cat "$tmp/e")"

# 6. bad value
"$BIN" run "$M" --overflow sometimes "x" >/dev/null 2>"$tmp/e"
rc=$?
[ $rc -eq 2 ] && grep -q "localgemma run: --overflow" "$tmp/e" && ok || bad "bad --overflow: exit $rc"

lg_done
