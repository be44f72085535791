#!/usr/bin/env python3
"""make-chat-golden.py: renders the chat golden files in tests/golden/chat/ with Python jinja2.

Templates (the reference), all in tests/golden/chat/:
  - gemma4-small.jinja (E2B/E4B) and gemma4-large.jinja (26B/31B): Google's canonical Gemma 4
    templates, verbatim copies of shared/spec/templates/ (see the README there).
  - gemma3.jinja: Google's official Gemma 3 chat template, written down from
    memory of the google/gemma-3-*-it tokenizer_config.json (the 270M GGUF carries no
    tokenizer.chat_template key to copy it from).

Environment: the one Hugging Face transformers sets up in
utils/chat_template_utils.py::_compile_jinja_template:
  ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                extensions=[jinja2.ext.loopcontrols]),
  filters['tojson'] = json.dumps(x, ensure_ascii=False, ...), globals raise_exception (raises
  TemplateError) and strftime_now (datetime.now().strftime). The AssistantTracker extension
  ({% generation %}) is not used by these templates and is omitted. Variables: messages, tools
  (None when absent), add_generation_prompt, enable_thinking, preserve_thinking, bos_token='<bos>'
  (transformers also passes eos_token etc.; the templates do not read them).

Input normalisation applied before rendering (src/chat does exactly the same):
  - gemma4: tool_calls[].function.arguments given as a JSON string is parsed (json.loads); the
    template requires a mapping (llama.cpp's func_args_not_string does the same). A string that
    is not JSON is an error.
  - gemma4 with option tool_response_json: llama.cpp's convert_tool_responses_gemma4 fold
    (assistant tool_calls + following role:tool messages + an immediately following
    content-only assistant message become one assistant message with tool_responses, each
    response parsed as JSON where possible, named after the call at the same position).
  - gemma3: role 'developer' becomes 'system' (llama.cpp's map_developer_role_to_system).

Each case is tests/golden/chat/cases/NAME.json = {"messages", "tools", "options"}; for every
flavour the output goes to tests/golden/chat/expected/NAME.FLAVOUR.txt, or, when the template
raises, NAME.FLAVOUR.error (holding the message). Cases are re-read from the written JSON text so
that both sides parse identical bytes. Run from the repository root:
  python3 tools/make-chat-golden.py
"""
import copy
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "chat")
# The Gemma 4 templates are copied verbatim from shared/spec/templates/ into tests/golden/chat/
# so that the repository is self-contained; main() checks the copies against the originals
# when shared/ is present.
SPEC_TPL = os.path.join(os.path.dirname(ROOT), "shared", "spec", "templates")

FLAVOURS = {
    "gemma4-small": os.path.join(OUT, "gemma4-small.jinja"),
    "gemma4-large": os.path.join(OUT, "gemma4-large.jinja"),
    "gemma3": os.path.join(OUT, "gemma3.jinja"),
}


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def fold_tool_responses(messages):
    """llama.cpp convert_tool_responses_gemma4 (common/chat.cpp), restated."""
    def has_calls(m):
        return isinstance(m.get("tool_calls"), list) and len(m["tool_calls"]) > 0

    def has_content(m):
        c = m.get("content")
        return (isinstance(c, str) and c != "") or (isinstance(c, list) and len(c) > 0)

    out, i = [], 0
    while i < len(messages):
        m = messages[i]
        if m.get("role") != "assistant" or not has_calls(m):
            out.append(m)
            i += 1
            continue
        calls = list(m["tool_calls"])
        reasoning = m.get("reasoning_content") if isinstance(m.get("reasoning_content"), str) else None
        responses, content = [], None
        i += 1
        while i < len(messages) and messages[i].get("role") == "tool":
            t = messages[i]
            resp = None
            if "content" in t:
                resp = t["content"]
                if isinstance(resp, str):
                    try:
                        resp = json.loads(resp)
                    except ValueError:
                        pass
            name = ""
            k = len(responses)
            if k < len(calls) and isinstance(calls[k], dict) and isinstance(calls[k].get("function"), dict):
                name = calls[k]["function"].get("name", "")
            if not name:
                name = t.get("tool_call_id", "")
            responses.append({"name": name, "response": resp})
            i += 1
        if i < len(messages) and messages[i].get("role") == "assistant":
            nxt = messages[i]
            if not has_calls(nxt) and has_content(nxt):
                content = nxt["content"]
                i += 1
        msg = {"role": "assistant", "tool_calls": calls}
        if responses:
            msg["tool_responses"] = responses
        if content is not None:
            msg["content"] = content
        if reasoning is not None:
            msg["reasoning_content"] = reasoning
        out.append(msg)
    return out


def normalise(flavour, messages, options):
    messages = copy.deepcopy(messages)
    if flavour == "gemma3":
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "developer":
                m["role"] = "system"
        return messages
    for m in messages:
        for tc in (m.get("tool_calls") or []) if isinstance(m, dict) else []:
            fn = tc.get("function") if isinstance(tc, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                fn["arguments"] = json.loads(fn["arguments"])
    if options.get("tool_response_json"):
        messages = fold_tool_responses(messages)
    return messages


_compiled = {}


def render(env, flavour, case):
    key = (id(env), flavour)
    if key not in _compiled:
        _compiled[key] = env.from_string(open(FLAVOURS[flavour], encoding="utf-8").read())
    tpl = _compiled[key]
    opts = case.get("options", {})
    try:
        msgs = normalise(flavour, case["messages"], opts)
        return tpl.render(messages=msgs, tools=case.get("tools"),
                          add_generation_prompt=opts.get("add_generation_prompt", True),
                          enable_thinking=opts.get("enable_thinking", False),
                          preserve_thinking=opts.get("preserve_thinking", False),
                          bos_token="<bos>", eos_token="<eos>"), None
    except Exception as e:  # the template raised (or normalisation failed): an expected error
        return None, "%s: %s" % (type(e).__name__, e)


# ---------------------------------------------------------------------------------------------
# The cases. Each is (name, json_text_or_object). Text is used where the exact JSON spelling
# matters (3.0, 1e-5, -0, duplicate keys).

W = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Tokyo"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"}},
        "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search the web",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "What to look for"},
        "max_results": {"type": "integer", "description": "How many"},
        "filters": {"type": "object", "description": "Optional filters", "properties": {
            "site": {"type": "string"}, "after": {"type": "string", "description": "ISO date"},
            "lang": {"type": "string", "enum": ["en", "de", "ja"]}}, "required": ["site"]},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags"},
        "safe": {"type": "boolean", "nullable": True}},
        "required": ["query"]}}}
NESTED = {"type": "function", "function": {
    "name": "create_event", "description": "Create a calendar event",
    "parameters": {"type": "object", "properties": {
        "title": {"type": "string"},
        "attendees": {"type": "array", "description": "People", "items": {
            "type": "object", "properties": {
                "email": {"type": "string", "description": "Address"},
                "role": {"type": "string", "enum": ["required", "optional"]},
                "Zeta": {"type": "number"}},
            "required": ["email"]}},
        "when": {"type": "object", "properties": {
            "start": {"type": "string"}, "duration_min": {"type": "integer"},
            "repeat": {"type": "object", "properties": {
                "every": {"type": "string", "enum": ["day", "week"]},
                "count": {"type": "integer", "nullable": True}}}},
            "required": ["start", "duration_min"]},
        "priority": {"type": "number", "description": "0..1"},
        "Alpha": {"type": "string", "description": "case-insensitive sort check"},
        "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}},
        "required": ["title", "when"]}}}
QUIRKS = {"type": "function", "function": {
    "name": "quirky", "description": "Schema corners",
    "parameters": {"type": "object", "properties": {
        "description": {"type": "string", "description": "a property named description"},
        "type": {"type": "string"},
        "anyval": {"description": "no type at all"},
        "multi": {"type": ["string", "null"], "description": "list type"},
        "free": {"type": "object", "additionalProperties": {"type": "string"},
                 "description": "object without properties"},
        "arr_multi": {"type": "array", "items": {"type": ["integer", "null"], "description": "x",
                                                  "enum": [1, 2, None], "minimum": 0}},
        "obj_nested_items": {"type": "array", "items": {"type": "object", "properties": {
            "k": {"type": "string"}}, "required": ["k"], "extra": None}},
        "num_enum": {"type": "integer", "enum": [1, 2, 3]},
        "enum_str": {"type": "string", "enum": ["a\"b", "c'd", "back\\slash", "new\nline"]},
        "empty_items": {"type": "array", "items": {}},
        "nullable_obj": {"type": "object", "nullable": True, "properties": {"z": {"type": "boolean"}}},
        "desc_num": {"type": "number", "description": 42}},
        "required": ["type"]}}}
NOPARAMS = {"type": "function", "function": {"name": "ping", "description": "Ping"}}
NOTYPE = {"type": "function", "function": {
    "name": "lax", "description": "parameters without type",
    "parameters": {"properties": {"x": {"type": "integer"}}}}}
RESP = {"type": "function", "function": {
    "name": "lookup", "description": "With a response schema",
    "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
    "response": {"type": "object", "description": "The record"}}}
EMPTYPROPS = {"type": "function", "function": {
    "name": "now", "description": "Current time",
    "parameters": {"type": "object", "properties": {}}}}
UNICODE_TOOL = {"type": "function", "function": {
    "name": "traduire", "description": "Traduit un texte — «vite» 翻訳 😀",
    "parameters": {"type": "object", "properties": {
        "texte": {"type": "string", "description": "Le texte à traduire"},
        "langue": {"type": "string", "enum": ["français", "日本語"]}}, "required": ["texte"]}}}


def call(i, name, args):
    return {"id": "call_%d" % i, "type": "function", "function": {"name": name, "arguments": args}}


U = lambda t: {"role": "user", "content": t}
A = lambda t: {"role": "assistant", "content": t}
S = lambda t: {"role": "system", "content": t}

CASES = [
    ("basic_user", {"messages": [U("Hello!")]}),
    ("basic_multiturn", {"messages": [U("Hi"), A("Hello! How can I help?"), U("Tell me a joke.")]}),
    ("system_prompt", {"messages": [S("  You are a pirate.  \n"), U("Hi"), A("Arr!"), U("Bye")]}),
    ("developer_prompt", {"messages": [{"role": "developer", "content": "Be terse."}, U("Hi")]}),
    ("system_only", {"messages": [S("Only a system prompt.")]}),
    ("empty_messages", {"messages": []}),
    ("no_gen_prompt", {"messages": [U("Hi"), A("Hello")], "options": {"add_generation_prompt": False}}),
    ("whitespace_trim", {"messages": [U("\n\n  padded question \t\n"), A("  \n answer with spaces \n\n"),
                                      U("\u00a0nbsp and ideographic\u3000")]}),
    ("empty_content", {"messages": [U(""), A(""), U("   ")]}),
    ("null_content_assistant", {"messages": [U("q"), {"role": "assistant", "content": None}, U("again")]}),
    ("unicode_text", {"messages": [S("Réponds en français, s'il te plaît."),
                                   U("日本語で答えて 🤖 — «quotes» and emoji 👩‍👩‍👧"),
                                   A("はい、わかりました。"), U("Ελληνικά; Кириллица? עברית!")]}),
    ("special_chars", {"messages": [U("Quotes \" and ' and backslash \\ and tab\tand\nnewlines\n\nand <b>html</b> & {braces}"),
                                    A("Literal markup: <|turn>, <turn|> and {{ jinja }} {% raw %}")]}),
    ("thought_strip_history", {"messages": [
        U("What is 2+2?"),
        A("<|channel>thought\nSimple arithmetic.<channel|>The answer is 4."),
        U("And 3+3?")]}),
    ("thought_strip_multiple", {"messages": [
        U("x"), A("  before <|channel>thought\nA<channel|> middle <|channel>thought\nB<channel|> after  "),
        U("y"), A("no close <|channel>thought dangling"), U("z"), A("stray close<channel|> tail")]}),
    ("reasoning_content_after_last_user", {"messages": [
        U("Plan a trip"), {"role": "assistant", "content": "Sure.", "reasoning_content": "User wants a plan."}]}),
    ("reasoning_content_before_last_user", {"messages": [
        U("Q1"), {"role": "assistant", "content": "A1", "reasoning_content": "old reasoning"}, U("Q2")]}),
    ("reasoning_field", {"messages": [
        U("Q1"), {"role": "assistant", "content": "A1", "reasoning": "via reasoning", "reasoning_content": "ignored"}],
        "options": {"add_generation_prompt": False}}),
    ("multimodal_user", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "  Describe this image:  "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "and this audio"},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "image"}, {"type": "audio"}, {"type": "video"}, {"type": "unknown_part"}]}]}),
    ("multimodal_system_parts", {"messages": [{"role": "system", "content": [
        {"type": "text", "text": " part one "}, {"type": "text", "text": "part two"}]}, U("go")]}),
    ("assistant_parts", {"messages": [U("hi"), {"role": "assistant", "content": [
        {"type": "text", "text": "<|channel>thought\nhidden<channel|> Visible "},
        {"type": "text", "text": " second"}]}, U("ok")]}),
    ("tools_simple", {"messages": [U("Weather in Tokyo?")], "tools": [W]}),
    ("tools_multi", {"messages": [S("You can use tools."), U("Find news about Gemma")], "tools": [W, SEARCH]}),
    ("tools_nested", {"messages": [U("Book a meeting")], "tools": [NESTED]}),
    ("tools_quirks", {"messages": [U("corner cases")], "tools": [QUIRKS]}),
    ("tools_noparams_notype_resp", {"messages": [U("x")], "tools": [NOPARAMS, NOTYPE, RESP, EMPTYPROPS]}),
    ("tools_unicode", {"messages": [U("Traduis « bonjour »")], "tools": [UNICODE_TOOL]}),
    ("tools_empty_list", {"messages": [U("no tools")], "tools": []}),
    ("tool_call_string_args", {"messages": [
        U("Weather in Tokyo?"),
        {"role": "assistant", "content": None, "tool_calls": [call(1, "get_weather", "{\"city\": \"Tokyo\", \"unit\": \"celsius\"}")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"}],
        "tools": [W]}),
    ("tool_call_object_args", {"messages": [
        U("Weather in Paris?"),
        {"role": "assistant", "content": "", "tool_calls": [call(1, "get_weather", {"unit": "fahrenheit", "city": "Paris"})]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "sunny, 20C"},
        A("It is sunny and 20°C in Paris.")], "tools": [W]}),
    ("tool_call_no_response_yet", {"messages": [
        U("Weather?"), {"role": "assistant", "tool_calls": [call(1, "get_weather", {"city": "Oslo"})]}],
        "tools": [W]}),
    ("multi_tool_calls", {"messages": [
        U("Weather in Tokyo and Paris, then search"),
        {"role": "assistant", "content": None, "tool_calls": [
            call(1, "get_weather", {"city": "Tokyo"}), call(2, "get_weather", {"city": "Paris"}),
            call(3, "search", {"query": "gemma", "max_results": 3, "tags": ["ai", "llm"]})]},
        {"role": "tool", "tool_call_id": "call_2", "content": "{\"temp\": 18}"},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 25}"},
        {"role": "tool", "tool_call_id": "call_3", "content": "[\"result a\", \"result b\"]"},
        A("Tokyo 25, Paris 18."), U("Thanks!")], "tools": [W, SEARCH]}),
    ("tool_args_values", '''{"messages": [
        {"role": "user", "content": "values"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "search",
          "arguments": {"f": 3.0, "g": 1e-5, "h": -0, "i": -0.0, "j": 1.5e300, "k": 123456789012,
                        "l": 0.1, "m": 1e16, "n": 1e15, "o": 2.5e-7, "p": -12.75, "q": 100.0, "r": 1E2,
                        "s": null, "t": true, "u": false, "v": "", "w": [], "x": {},
                        "y": [1, "two", 3.5, null, true, [false], {"B": 1, "a": 2}],
                        "z": {"nested": {"deep": {"deeper": [{"k": "v"}]}}, "Upper": "U", "lower": "l"},
                        "quote": "He said \\"hi\\" and 'bye' \\\\ back\\nslash", "uni": "café ☕ 😀 \\u00e9"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"}
      ], "tools": null}'''),
    ("tool_args_dup_keys", '''{"messages": [
        {"role": "user", "content": "dup"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f",
          "arguments": {"b": 1, "a": 2, "b": 3, "A": 4, "_x": 5, "0": 6, "Z": 7}}}]}]}'''),
    ("tool_response_types", {"messages": [
        U("types"),
        {"role": "assistant", "tool_calls": [call(1, "f", {}), call(2, "g", {}), call(3, "h", {}), call(4, "i", {})]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "part A "}, {"type": "text", "text": "part B"},
                                                             {"type": "image_url", "image_url": {"url": "x"}}, {"type": "input_audio"}]},
        {"role": "tool", "tool_call_id": "call_2", "content": None},
        {"role": "tool", "tool_call_id": "nomatch", "name": "named_tool", "content": "by name"},
        {"role": "tool", "tool_call_id": "nomatch2", "content": "no name at all"}]}),
    ("tool_response_then_user", {"messages": [
        U("q"), {"role": "assistant", "tool_calls": [call(1, "get_weather", {"city": "Rome"})]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"ok\": true}"}, U("next question")], "tools": [W]}),
    ("tool_chain_two_rounds", {"messages": [
        U("Do two steps"),
        {"role": "assistant", "content": "Step one.", "reasoning_content": "think 1",
         "tool_calls": [call(1, "search", {"query": "a"})]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"hits\": 1}"},
        {"role": "assistant", "content": None, "reasoning_content": "think 2",
         "tool_calls": [call(2, "search", {"query": "b"})]},
        {"role": "tool", "tool_call_id": "call_2", "content": "{\"hits\": 2}"},
        {"role": "assistant", "content": "All done.", "reasoning_content": "think 3"}], "tools": [SEARCH],
        "options": {"add_generation_prompt": False}}),
    ("native_tool_responses", {"messages": [
        U("native"),
        {"role": "assistant", "tool_calls": [call(1, "get_weather", {"city": "Lima"})],
         "tool_responses": [{"name": "get_weather", "response": {"temp": 19, "sky": "cloudy", "wind": [1, 2.0]}},
                            {"name": "", "response": "plain string"}, {"response": 42}]},
        A("Cloudy.")], "tools": [W]}),
    ("consecutive_assistants", {"messages": [U("q"), A("part 1"), A("part 2"), U("ok")]}),
    ("assistant_first", {"messages": [A("I start."), U("ok")]}),
    ("later_system", {"messages": [U("a"), A("b"), S("mid-conversation system"), U("c")]}),
    ("tool_call_bad_args", {"messages": [
        U("bad"), {"role": "assistant", "tool_calls": [call(1, "f", "{not json")]}]}),
    ("tool_call_list_args", {"messages": [
        U("bad"), {"role": "assistant", "tool_calls": [call(1, "f", "[1,2]")]}]}),
    ("tool_call_null_args", {"messages": [
        U("null"), {"role": "assistant", "tool_calls": [call(1, "f", None)]}]}),
    ("long_conversation", {"messages": [S("sys")] + sum(([U("question %d" % i), A("answer %d" % i)] for i in range(8)), []) + [U("last")]}),
    ("system_with_tools_and_reasoning_tool_roundtrip", {"messages": [
        S("Use tools when helpful."), U("What's 17*23? Use the calculator."),
        {"role": "assistant", "content": "", "reasoning_content": "Need calc.",
         "tool_calls": [{"id": "x1", "type": "function", "function": {"name": "calc", "arguments": "{\"expr\": \"17*23\"}"}}]},
        {"role": "tool", "tool_call_id": "x1", "content": "391"}],
        "tools": [{"type": "function", "function": {"name": "calc", "description": "Evaluate", "parameters": {
            "type": "object", "properties": {"expr": {"type": "string"}}, "required": ["expr"]}}}]}),
    ("gemma3_alternation_ok", {"messages": [S("Be brief."), U("One"), A("1"), U("Two")]}),
    ("gemma3_parts", {"messages": [{"role": "system", "content": [{"type": "text", "text": " first part "}, {"type": "text", "text": "ignored"}]},
                                   {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " what is this? "}]}]}),
    ("tools_item_types", {"messages": [U("x")], "tools": [{"type": "function", "function": {
        "name": "arr", "description": "array corner cases", "parameters": {"type": "object", "properties": {
            "a": {"type": "array", "items": {"type": "string", "enum": ["x", "y"], "description": "d"}},
            "b": {"type": "ARRAY", "items": {"type": "OBJECT", "properties": {"deep": {"type": "array", "items": {"type": "integer"}}}}},
            "c": {"type": "array"},
            "d": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "e": {"type": "array", "items": {"type": "object", "required": ["q"], "properties": {"q": {"type": "string", "nullable": False}}}}},
            "required": []}}}]}),
    ("tool_name_unicode_args", {"messages": [
        U("Traduis"), {"role": "assistant", "tool_calls": [call(1, "traduire", {"texte": "Grüße, 世界! \"quoted\"", "langue": "日本語"})]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"résultat\": \"こんにちは\", \"score\": 0.95}"},
        A("こんにちは")], "tools": [UNICODE_TOOL]}),
    ("content_with_channel_user", {"messages": [U("user text <|channel>thought\nnot stripped for users<channel|> end")]}),
    ("only_tool_message", {"messages": [{"role": "tool", "tool_call_id": "a", "content": "orphan"}, U("hi")]}),
    ("preserve_thinking", {"messages": [
        U("q1"), {"role": "assistant", "content": "", "reasoning_content": "kept because preserve",
                  "tool_calls": [call(1, "f", {"a": 1})]},
        {"role": "tool", "tool_call_id": "call_1", "content": "r"}, A("final"), U("q2")],
        "options": {"preserve_thinking": True}}),
    ("unicode_key_order", {"messages": [U("keys"), {"role": "assistant", "tool_calls": [call(1, "f", {
        "éa": 1, "Éb": 2, "eZ": 3, "Ωmega": 4, "ωa": 5, "ß": 6, "SS": 7, "ÿ": 8, "Ÿ": 9, "Жук": 10, "жа": 11,
        "z": 12, "_u": 13, "日本": 14})]}]}),
    ("python_repr_in_schema", {"messages": [U("repr")], "tools": [{"type": "function", "function": {
        "name": "r", "description": ["list", "desc", None, True, 1.5, {"k": "it's"}],
        "parameters": {"type": "object", "properties": {
            "p": {"type": ["string", "integer"], "description": {"nested": ["a\"b", "tab\there", "nl\n"]}},
            "q": {"type": "array", "items": {"type": ["number", "null"], "default": [0.0, -1e-7, 2e20]}},
            "req_str": {"type": "object", "properties": {"x": {"type": "string"}}, "required": "xy"}},
            "required": ["p"]}}}]}),
    ("tool_call_id_numbers", {"messages": [
        U("ids"), {"role": "assistant", "tool_calls": [
            {"id": 1, "type": "function", "function": {"name": "first", "arguments": {}}},
            {"type": "function", "function": {"name": "no_id", "arguments": {}}}]},
        {"role": "tool", "tool_call_id": 1.0, "content": "matched by number"},
        {"role": "tool", "content": "matched None == None"}]}),
]

# Cases rendered a second time with thinking on, and once more with the llama.cpp-style fold.
THINK_TOO = ["basic_user", "basic_multiturn", "system_prompt", "tools_simple", "tool_call_string_args",
             "multi_tool_calls", "tool_chain_two_rounds", "tool_call_no_response_yet", "empty_messages",
             "system_with_tools_and_reasoning_tool_roundtrip", "reasoning_content_after_last_user",
             "tool_response_types", "native_tool_responses"]
FOLD_TOO = ["tool_call_string_args", "tool_call_object_args", "multi_tool_calls", "tool_chain_two_rounds",
            "tool_response_types", "tool_response_then_user", "tool_name_unicode_args",
            "system_with_tools_and_reasoning_tool_roundtrip", "preserve_thinking"]


def all_cases():
    out = []
    for name, spec in CASES:
        text = spec if isinstance(spec, str) else json.dumps(spec, ensure_ascii=False, indent=1)
        out.append((name, text))
        if name in THINK_TOO:
            obj = json.loads(text)
            obj.setdefault("options", {})["enable_thinking"] = True
            out.append((name + "__think", json.dumps(obj, ensure_ascii=False, indent=1)))
        if name in FOLD_TOO:
            obj = json.loads(text)
            obj.setdefault("options", {})["tool_response_json"] = True
            out.append((name + "__fold", json.dumps(obj, ensure_ascii=False, indent=1)))
            obj["options"]["enable_thinking"] = True
            out.append((name + "__fold_think", json.dumps(obj, ensure_ascii=False, indent=1)))
    return out


def main():
    for fl in ("gemma4-small", "gemma4-large"):
        orig = os.path.join(SPEC_TPL, fl + ".jinja")
        if os.path.isfile(orig) and open(orig, "rb").read() != open(FLAVOURS[fl], "rb").read():
            sys.exit("make-chat-golden: %s differs from %s: copy it over first" % (FLAVOURS[fl], orig))
    env = make_env()
    cases_dir = os.path.join(OUT, "cases")
    exp_dir = os.path.join(OUT, "expected")
    os.makedirs(cases_dir, exist_ok=True)
    os.makedirs(exp_dir, exist_ok=True)
    for d in (cases_dir, exp_dir):
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
    n_ok = n_err = 0
    for name, text in all_cases():
        path = os.path.join(cases_dir, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        with open(path, encoding="utf-8") as f:
            case = json.load(f)
        for flavour in FLAVOURS:
            out, err = render(env, flavour, case)
            base = os.path.join(exp_dir, "%s.%s" % (name, flavour))
            if err is None:
                with open(base + ".txt", "w", encoding="utf-8", newline="") as f:
                    f.write(out)
                n_ok += 1
            else:
                with open(base + ".error", "w", encoding="utf-8") as f:
                    f.write(err + "\n")
                n_err += 1
    print("make-chat-golden: %d cases, %d renderings, %d expected errors" % (len(all_cases()), n_ok, n_err))


if __name__ == "__main__":
    sys.exit(main())
