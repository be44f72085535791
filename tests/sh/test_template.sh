#!/usr/bin/env bash
# test_template.sh: `localgemma template` against the jinja2 golden prompts in tests/golden/chat.
# Every case file (a {"messages","tools","options"} object, which the command accepts like a
# request body) is rendered for each flavour with the matching flags and must equal the
# expected .txt byte for byte, or, where the template raises, exit 1 with one stderr line.
# With the Gemma 3 270M GGUF installed, the flavour is also taken from the model itself.
# Usage errors exit 2. LG_BIN overrides the binary (default $BUILD/localgemma; see lib.sh).
. "$(dirname "$0")/lib.sh"

# flags per case from its options (preserve_thinking has no CLI flag: those cases are skipped)
python3 - tests/golden/chat/cases >"$tmp/flags" <<'EOF'
import json, os, sys
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    o = json.load(open(os.path.join(d, f))).get("options", {})
    if o.get("preserve_thinking"):
        continue
    flags = []
    if o.get("enable_thinking"): flags.append("--think")
    if o.get("add_generation_prompt") is False: flags.append("--no-generation-prompt")
    if o.get("tool_response_json"): flags.append("--tool-response-json")
    print(f[:-5], " ".join(flags))
EOF

while read -r name flags; do
    for fl in gemma4-small gemma4-large gemma3; do
        exp=tests/golden/chat/expected/$name.$fl
        # shellcheck disable=SC2086
        "$BIN" template --flavour "$fl" --messages "tests/golden/chat/cases/$name.json" $flags \
            >"$tmp/out" 2>"$tmp/err"
        rc=$?
        if [ -f "$exp.txt" ]; then
            if [ "$rc" -eq 0 ] && cmp -s "$tmp/out" "$exp.txt" && [ ! -s "$tmp/err" ]; then
                ok
            else
                bad "$name $fl: rc=$rc $(head -c 200 "$tmp/err")"
            fi
        else
            if [ "$rc" -eq 1 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
                grep -q '^localgemma template: ' "$tmp/err"; then
                ok
            else
                bad "$name $fl: expected an error, rc=$rc"
            fi
        fi
    done
done <"$tmp/flags"

# --messages and --tools as separate files, messages from stdin
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); json.dump(c["messages"], open(sys.argv[2],"w")); json.dump(c["tools"], open(sys.argv[3],"w"))' \
    tests/golden/chat/cases/tools_nested.json "$tmp/m.json" "$tmp/t.json"
if "$BIN" template --flavour gemma4-large --tools "$tmp/t.json" --messages - <"$tmp/m.json" >"$tmp/out" 2>/dev/null &&
    cmp -s "$tmp/out" tests/golden/chat/expected/tools_nested.gemma4-large.txt; then ok; else bad "separate --tools, stdin"; fi

# flavour from a real GGUF (general.architecture = gemma3)
model=$(lg_gemma3_270m || true)
if [ -n "$model" ] && [ -f "$model" ]; then
    if "$BIN" template "$model" --messages tests/golden/chat/cases/system_prompt.json >"$tmp/out" 2>"$tmp/err" &&
        cmp -s "$tmp/out" tests/golden/chat/expected/system_prompt.gemma3.txt; then
        ok
    else
        bad "gemma3 GGUF: $(cat "$tmp/err")"
    fi
fi

# usage and input errors
"$BIN" template >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "no arguments should exit 2"
"$BIN" template --flavour gemma5 --messages x.json >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "bad flavour should exit 2"
"$BIN" template --flavour gemma3 --messages /nonexistent.json >/dev/null 2>&1; [ $? -eq 1 ] && ok || bad "missing file should exit 1"
echo '[{"role":' >"$tmp/bad.json"
"$BIN" template --flavour gemma4-small --messages "$tmp/bad.json" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && ok || bad "bad JSON should exit 1 with one line"
"$BIN" template /nonexistent.gguf --messages "$tmp/m.json" >/dev/null 2>&1; [ $? -eq 1 ] && ok || bad "missing model should exit 1"

lg_done
