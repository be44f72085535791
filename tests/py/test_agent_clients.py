#!/usr/bin/env python3
"""test_agent_clients.py: function calling, thinking and structured output end to end, through
`localgemma serve` and the official `openai` and `ollama` Python clients.

The model is a tiny random-weight Gemma 4 (E2B-shaped) with a real-shaped 6254-token Gemma 4
vocabulary (every special token at its real id) and Google's Gemma 4 chat template, written at
test time by tools/make-agent-model.py (seeded, < 1 s). Its output is noise, so every property
checked here is one the server guarantees whatever the model does:
  - tool_choice "required" / a named function: the tool-call grammar applies from the first
    token, so every call parses and its arguments validate (jsonschema) against the tool's
    schema; OpenAI shape (id, type, function.name, arguments as a JSON string), finish_reason
    "tool_calls", no content, no Gemma markup anywhere; parallel_tool_calls false -> one call;
  - streaming: the arguments arrive as several fragments (as generated), id/type/name on the
    first fragment only, and concatenate to the non-streamed arguments;
  - tool_choice "none" and "auto": whatever comes out, no markup leaks and any call validates;
  - a role:tool result folded back into the prompt (rendered as <|tool_response>, checked with
    `localgemma template`), and the next request works;
  - a call cut short by max_tokens: HTTP 200, finish "length", no tool_calls, the reason in the
    "validation" extension (never a 500, never markup);
  - Ollama /api/chat: tools -> message.tool_calls with arguments as an object; format schema;
  - response_format json_schema (strict) / json_object and Ollama format: the content validates
    for every seed (bounded schemas, so the grammar always finishes within max_tokens);
  - thinking: the Gemma 4 template ends the generation prompt inside the thought channel after
    a tool result when thinking is on (`<|channel>thought\\n`), so even this model "thinks";
    with a per-request reasoning_budget the engine closes the channel cleanly. Checked: the
    reasoning arrives in reasoning_content / message.thinking (OpenAI reasoning_effort,
    chat_template_kwargs.enable_thinking, Ollama think), never in content, and with
    tool_choice required the call after the thought is still constrained and valid (the
    grammar starts after the thought). What this does not show: that a model opens the
    thought channel by itself (a random model never does), which is the model's business.
Prints "test_agent_clients: N passed, N failed"."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, os.environ.get("BUILD", "build"), "localgemma")
GEN = os.path.join(ROOT, "tools", "make-agent-model.py")
NAME = "test_agent_clients"
from lgtest import T, check, free_port, stop, wait_up  # noqa: E402  (tests/py is on sys.path)

MARKUP = ["<|tool_call>", "<tool_call|>", "<|channel>", "<channel|>", '<|"|>', "<|turn>",
          "<turn|>", "<|tool_response>", "<tool_response|>", "call:get_weather",
          "call:search_docs"]

WEATHER = {"type": "object",
           "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 16},
                          "unit": {"type": "string", "enum": ["c", "f"]},
                          "days": {"type": "integer", "minimum": 1, "maximum": 7}},
           "required": ["city", "unit"], "additionalProperties": False}
SEARCH = {"type": "object",
          "properties": {"query": {"type": "string", "maxLength": 12},
                         "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 6},
                                  "maxItems": 3},
                         "exact": {"type": "boolean"}},
          "required": ["query", "limit", "tags", "exact"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description":
                                           "Current weather for a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "search_docs", "description":
                                           "Search the documentation",
                                           "parameters": SEARCH}}]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
OLLAMA_TOOLS = [{"type": "function", "function": t["function"]} for t in TOOLS]

# bounded output schemas: the grammar must finish well within max_tokens
OUT_SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10},
                                      "age": {"type": "integer", "minimum": 0,
                                              "maximum": 120}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {
        "ok": {"type": "boolean"},
        "color": {"enum": ["red", "green", "blue"]},
        "scores": {"type": "array", "items": {"type": "number", "minimum": -5, "maximum": 5},
                   "minItems": 1, "maxItems": 3},
        "when": {"type": "string", "format": "date"}},
     "required": ["ok", "color", "scores", "when"], "additionalProperties": False},
    {"type": "object", "properties": {"point": {"$ref": "#/$defs/pt"},
                                      "label": {"anyOf": [{"type": "null"},
                                                          {"type": "string",
                                                           "maxLength": 5}]}},
     "required": ["point", "label"], "additionalProperties": False,
     "$defs": {"pt": {"type": "object",
                      "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9},
                                     "y": {"type": "integer", "minimum": -9, "maximum": 9}},
                      "required": ["x", "y"], "additionalProperties": False}}},
]
SEEDS = [1, 2, 3, 4, 5]




def no_markup(*texts):
    for t in texts:
        if t and any(m in t for m in MARKUP):
            return False
    return True


def valid(schema, value):
    import jsonschema
    try:
        jsonschema.validate(value, schema,
                            format_checker=jsonschema.FormatChecker())
        return True
    except jsonschema.ValidationError:
        return False


def args_ok(name, args_text):
    try:
        args = json.loads(args_text)
    except ValueError:
        return False
    return name in SCHEMAS and isinstance(args, dict) and valid(SCHEMAS[name], args)


def test_required(c, model):
    """tool_choice required / named, parallel_tool_calls false, streaming vs not."""
    user = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = None
    for seed in SEEDS:
        r = c.chat.completions.create(model=model, messages=user, tools=TOOLS,
                                      tool_choice="required", parallel_tool_calls=False,
                                      max_tokens=120, seed=seed, temperature=1.0)
        ch = r.choices[0]
        calls = ch.message.tool_calls or []
        check(len(calls) == 1, "seed %d: required + parallel false -> one call: %r" %
              (seed, calls))
        check(ch.finish_reason == "tool_calls", "seed %d: finish %r" % (seed, ch.finish_reason))
        check(not ch.message.content, "seed %d: content %r" % (seed, ch.message.content))
        for tc in calls:
            check(tc.type == "function" and isinstance(tc.id, str) and tc.id,
                  "seed %d: id/type %r" % (seed, tc))
            check(isinstance(tc.function.arguments, str) and
                  args_ok(tc.function.name, tc.function.arguments),
                  "seed %d: arguments validate: %r" % (seed, tc.function))
            check(no_markup(tc.function.arguments, tc.function.name),
                  "seed %d: no markup in %r" % (seed, tc.function))
        check(no_markup(json.dumps(r.model_dump())), "seed %d: no markup in the response" % seed)
        if first is None and calls:
            first = (seed, calls[0])

        # the same request streamed: fragments, id/type/name on the first only
        chunks = list(c.chat.completions.create(
            model=model, messages=user, tools=TOOLS, tool_choice="required",
            parallel_tool_calls=False, max_tokens=120, seed=seed, temperature=1.0,
            stream=True))
        frags = [tc for k in chunks if k.choices for tc in (k.choices[0].delta.tool_calls or [])]
        fins = [k.choices[0].finish_reason for k in chunks if k.choices and
                k.choices[0].finish_reason]
        content = "".join(k.choices[0].delta.content or "" for k in chunks if k.choices)
        check(len(frags) >= 3, "seed %d: arguments streamed in several fragments (%d)" %
              (seed, len(frags)))
        if frags:
            f0 = frags[0]
            check(f0.index == 0 and f0.id and f0.type == "function" and f0.function.name,
                  "seed %d: first fragment carries index/id/type/name: %r" % (seed, f0))
            check(all(f.index == 0 and f.id is None and f.type is None and
                      f.function.name is None for f in frags[1:]),
                  "seed %d: later fragments carry only arguments" % seed)
            joined = "".join(f.function.arguments or "" for f in frags)
            check(args_ok(f0.function.name, joined),
                  "seed %d: streamed arguments validate: %r" % (seed, joined))
        check(fins == ["tool_calls"], "seed %d: stream finish %r" % (seed, fins))
        check(content == "", "seed %d: stream content %r" % (seed, content))

    # streamed and not, greedy (so float noise from cache reuse cannot change a draw): the
    # fragments concatenate to exactly the non-streamed arguments
    kw = dict(model=model, messages=user, tools=TOOLS, tool_choice="required",
              parallel_tool_calls=False, max_tokens=120, temperature=0)
    r = c.chat.completions.create(**kw)
    calls = r.choices[0].message.tool_calls or []
    frags = [tc for k in c.chat.completions.create(stream=True, **kw) if k.choices
             for tc in (k.choices[0].delta.tool_calls or [])]
    joined = "".join(f.function.arguments or "" for f in frags)
    check(len(calls) == 1 and frags and frags[0].function.name == calls[0].function.name and
          joined == calls[0].function.arguments,
          "greedy stream == non-stream: %r vs %r" % (joined, calls))

    # a named function: every call is to it
    for seed in SEEDS[:3]:
        r = c.chat.completions.create(
            model=model, messages=user, tools=TOOLS, max_tokens=150, seed=seed,
            tool_choice={"type": "function", "function": {"name": "search_docs"}})
        calls = r.choices[0].message.tool_calls or []
        check(len(calls) >= 1 and all(tc.function.name == "search_docs" and
                                      args_ok("search_docs", tc.function.arguments)
                                      for tc in calls),
              "seed %d: named search_docs -> valid calls to it: %r" % (seed, calls))

    # parallel calls allowed: every complete call validates, indices in order
    for seed in SEEDS[:3]:
        chunks = list(c.chat.completions.create(
            model=model, messages=user, tools=TOOLS, tool_choice="required",
            max_tokens=200, seed=seed, stream=True))
        by_index = {}
        for k in chunks:
            for f in (k.choices[0].delta.tool_calls or []) if k.choices else []:
                e = by_index.setdefault(f.index, {"name": f.function.name, "args": ""})
                e["args"] += f.function.arguments or ""
        fins = [k.choices[0].finish_reason for k in chunks if k.choices and
                k.choices[0].finish_reason]
        check(sorted(by_index) == list(range(len(by_index))) and by_index,
              "seed %d: parallel call indices %r" % (seed, sorted(by_index)))
        complete = [e for e in by_index.values()]
        if fins == ["length"]:
            complete = complete[:-1]  # the last one may have been cut
        check(all(args_ok(e["name"], e["args"]) for e in complete),
              "seed %d: parallel calls validate %r" % (seed, by_index))
    return first


def test_none_auto(c, model):
    user = [{"role": "user", "content": "What is the weather in Paris?"}]
    for seed in SEEDS[:3]:
        r = c.chat.completions.create(model=model, messages=user, tools=TOOLS,
                                      tool_choice="none", max_tokens=30, seed=seed)
        m = r.choices[0].message
        check(not m.tool_calls and r.choices[0].finish_reason in ("stop", "length"),
              "seed %d: tool_choice none -> no calls: %r" % (seed, r.choices[0]))
        check(no_markup(m.content), "seed %d: none: no markup in %r" % (seed, m.content))
        r = c.chat.completions.create(model=model, messages=user, tools=TOOLS,
                                      tool_choice="auto", max_tokens=60, seed=seed)
        m = r.choices[0].message
        check(no_markup(m.content), "seed %d: auto: no markup in %r" % (seed, m.content))
        check(all(args_ok(tc.function.name, tc.function.arguments)
                  for tc in (m.tool_calls or [])),
              "seed %d: auto: any call validates %r" % (seed, m.tool_calls))


def test_cut_call(c, model):
    """A call cut short by max_tokens: 200, no broken call, the reason reported."""
    user = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = c.chat.completions.with_raw_response.create(
        model=model, messages=user, tools=TOOLS, tool_choice="required",
        parallel_tool_calls=False, max_tokens=6, seed=1)
    check(r.status_code == 200, "cut call: HTTP %d" % r.status_code)
    body = json.loads(r.text)
    ch = body["choices"][0]
    check(ch["finish_reason"] == "length" and not ch["message"].get("tool_calls"),
          "cut call: finish length, no tool_calls: %r" % ch)
    check(no_markup(ch["message"].get("content") or ""), "cut call: no markup %r" % ch)
    v = body.get("validation") or {}
    check(v.get("valid") is False and v.get("errors") and
          v["errors"][0]["path"] == "/tool_calls", "cut call: validation %r" % v)
    chunks = list(c.chat.completions.create(
        model=model, messages=user, tools=TOOLS, tool_choice="required",
        parallel_tool_calls=False, max_tokens=6, seed=1, stream=True))
    fins = [k.choices[0].finish_reason for k in chunks if k.choices and
            k.choices[0].finish_reason]
    vals = [k.model_extra.get("validation") for k in chunks
            if (k.model_extra or {}).get("validation")]
    check(fins == ["length"] and len(vals) == 1 and vals[0]["valid"] is False and
          vals[0]["errors"][0]["path"] == "/tool_calls",
          "cut call streamed: finish %r, validation %r" % (fins, vals))
    o = __import__("ollama").Client(host=c.base_url.__str__().rsplit("/v1", 1)[0])
    res = o.chat(model=model, messages=user, tools=OLLAMA_TOOLS,
                 options={"num_predict": 6, "seed": 1})
    check(not res.message.tool_calls and no_markup(res.message.content),
          "ollama cut call: clean answer %r" % res.message)


def test_fold_back(c, model, first, env, tmp):
    """The call goes back as an assistant message plus a role:tool result."""
    seed, tc = first
    msgs = [{"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": tc.id, "type": "function",
                 "function": {"name": tc.function.name, "arguments": tc.function.arguments}}]},
            {"role": "tool", "tool_call_id": tc.id, "content": json.dumps({"temp_c": 21})}]
    mf = os.path.join(tmp, "msgs.json")
    tf = os.path.join(tmp, "tools.json")
    with open(mf, "w") as f:
        json.dump(msgs, f)
    with open(tf, "w") as f:
        json.dump(TOOLS, f)
    t = subprocess.run([BIN, "template", os.path.join(tmp, "agent.gguf"), "--messages", mf,
                        "--tools", tf], capture_output=True, text=True, env=env, timeout=60)
    args = json.loads(tc.function.arguments)
    check(t.returncode == 0 and "<|tool_call>call:%s{" % tc.function.name in t.stdout and
          "<|tool_response>response:%s{" % tc.function.name in t.stdout and
          "temp_c" in t.stdout and ("city:<|\"|>" in t.stdout or "city" not in args),
          "role:tool folded into the prompt: %r" % t.stdout[-400:])
    r = c.chat.completions.create(model=model, messages=msgs, tools=TOOLS, max_tokens=20,
                                  seed=seed)
    check(r.choices[0].finish_reason in ("stop", "length", "tool_calls") and
          r.usage.prompt_tokens > 40 and no_markup(r.choices[0].message.content),
          "second turn after the tool result: %r" % r.choices[0])


def test_structured(c, model, o):
    for i, schema in enumerate(OUT_SCHEMAS):
        for seed in SEEDS:
            r = c.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Give me data."}],
                max_tokens=300, seed=seed, temperature=1.0,
                response_format={"type": "json_schema", "json_schema": {
                    "name": "s%d" % i, "strict": True, "schema": schema}})
            txt = r.choices[0].message.content
            try:
                doc = json.loads(txt)
            except (TypeError, ValueError):
                doc = None
            check(r.choices[0].finish_reason == "stop" and doc is not None and
                  valid(schema, doc), "json_schema %d seed %d: %r" % (i, seed, txt))
            v = (r.model_extra or {}).get("validation")
            check(v == {"valid": True, "errors": []},
                  "json_schema %d seed %d: validation extension %r" % (i, seed, v))
            res = o.chat(model=model, messages=[{"role": "user", "content": "Data."}],
                         format=schema, options={"seed": seed, "num_predict": 300})
            try:
                doc = json.loads(res.message.content)
            except ValueError:
                doc = None
            check(res.done_reason == "stop" and doc is not None and valid(schema, doc),
                  "ollama format %d seed %d: %r" % (i, seed, res.message.content))
    # json_object: any object; the grammar allows unbounded output, so only finished
    # answers must parse, and the validation extension must agree with Python
    n_stop = 0
    for seed in SEEDS:
        r = c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "JSON please."}],
            max_tokens=300, seed=seed, response_format={"type": "json_object"})
        txt = r.choices[0].message.content
        try:
            doc = json.loads(txt)
        except (TypeError, ValueError):
            doc = None
        v = (r.model_extra or {}).get("validation") or {}
        if r.choices[0].finish_reason == "stop":
            n_stop += 1
            check(isinstance(doc, dict), "json_object seed %d: %r" % (seed, txt))
        check(v.get("valid") == isinstance(doc, dict),
              "json_object seed %d: validation %r for %r" % (seed, v, txt))
        check(no_markup(txt), "json_object seed %d: no markup" % seed)
    check(n_stop >= 1, "json_object: some answers finish (%d of %d)" % (n_stop, len(SEEDS)))


def ollama_chat_ext(o, body, stream):
    """POST /api/chat through the official client's own request machinery and response
    models (ollama.ChatResponse), with extension fields its chat() cannot send."""
    from ollama import ChatResponse
    return o._request(ChatResponse, "POST", "/api/chat", json=body, stream=stream)


def test_ollama_tools(o, model):
    user = [{"role": "user", "content": "What is the weather in Paris?"}]
    n_calls = 0
    for seed in SEEDS[:3]:
        for stream in (False, True):
            # tools as the client sends them (the model decides: it rarely calls)
            if stream:
                parts = list(o.chat(model=model, messages=user, tools=OLLAMA_TOOLS,
                                    stream=True, options={"seed": seed, "num_predict": 60}))
                content = "".join(p.message.content or "" for p in parts)
                calls = [tc for p in parts for tc in (p.message.tool_calls or [])]
            else:
                res = o.chat(model=model, messages=user, tools=OLLAMA_TOOLS,
                             options={"seed": seed, "num_predict": 60})
                content, calls = res.message.content, res.message.tool_calls or []
            check(no_markup(content), "ollama seed %d: no markup in %r" % (seed, content))
            # tool_choice required (extension): a call always comes out
            body = {"model": model, "messages": user, "tools": OLLAMA_TOOLS,
                    "tool_choice": "required", "stream": stream,
                    "options": {"seed": seed, "num_predict": 150}}
            if stream:
                parts = list(ollama_chat_ext(o, body, True))
                calls += [tc for p in parts for tc in (p.message.tool_calls or [])]
                done = [p for p in parts if p.done]
                # parallel calls are allowed here, so num_predict may end the turn
                check(len(done) == 1 and done[0].done_reason in ("stop", "length"),
                      "ollama stream seed %d: done %r" % (seed, done))
            else:
                res = ollama_chat_ext(o, body, False)
                calls += res.message.tool_calls or []
                check(res.done and not res.message.content,
                      "ollama seed %d: required: no content %r" % (seed, res.message))
            for tc in calls:
                n_calls += 1
                a = tc.function.arguments
                check(isinstance(a, dict) and tc.function.name in SCHEMAS and
                      valid(SCHEMAS[tc.function.name], dict(a)),
                      "ollama seed %d: arguments object validates %r" % (seed, tc))
    check(n_calls >= 6, "ollama: calls came out (%d)" % n_calls)


def test_thinking(c, o, model):
    base = [{"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {
                    "name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"c\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 21}"}]
    ways = [("reasoning_effort", {"reasoning_effort": "low"}),
            ("enable_thinking", {"extra_body": {"chat_template_kwargs":
                                                {"enable_thinking": True}}})]
    for label, kw in ways:
        for seed in SEEDS[:3]:
            extra = dict(kw.get("extra_body", {}), reasoning_budget=6)
            kw2 = {k: v for k, v in kw.items() if k != "extra_body"}
            r = c.chat.completions.create(model=model, messages=base, tools=TOOLS,
                                          max_tokens=30, seed=seed, extra_body=extra, **kw2)
            m = r.choices[0].message
            reasoning = (m.model_extra or {}).get("reasoning_content")
            check(isinstance(reasoning, str) and reasoning.strip(),
                  "%s seed %d: reasoning_content %r" % (label, seed, reasoning))
            check(no_markup(m.content, reasoning),
                  "%s seed %d: no markup %r / %r" % (label, seed, m.content, reasoning))
            check(not reasoning or not m.content or reasoning.strip() not in m.content,
                  "%s seed %d: reasoning not in content" % (label, seed))
            # streamed: reasoning deltas only in reasoning_content
            chunks = list(c.chat.completions.create(
                model=model, messages=base, tools=TOOLS, max_tokens=30, seed=seed,
                stream=True, extra_body=extra, **kw2))
            rs = "".join((k.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                         for k in chunks if k.choices)
            ct = "".join(k.choices[0].delta.content or "" for k in chunks if k.choices)
            check(rs == reasoning and ct == (m.content or ""),
                  "%s seed %d: stream reasoning/content match %r %r" % (label, seed, rs, ct))
        # thinking + tool_choice required: thought unconstrained, then a valid call
        r = c.chat.completions.create(model=model, messages=base, tools=TOOLS,
                                      tool_choice="required", parallel_tool_calls=False,
                                      max_tokens=150, seed=7,
                                      extra_body=dict(kw.get("extra_body", {}),
                                                      reasoning_budget=6),
                                      **{k: v for k, v in kw.items() if k != "extra_body"})
        m = r.choices[0].message
        calls = m.tool_calls or []
        check((m.model_extra or {}).get("reasoning_content") and len(calls) == 1 and
              args_ok(calls[0].function.name, calls[0].function.arguments) and
              r.choices[0].finish_reason == "tool_calls",
              "%s + required: thought then a valid call %r" % (label, r.choices[0]))
    # thinking on, first turn (the prompt does not end inside a thought): a model that answers
    # without opening the thought channel is still held to the tool grammar from its first
    # token, and one that opens it thinks freely first; either way the call validates
    first = [{"role": "user", "content": "What is the weather in Paris?"}]
    for seed in SEEDS[:4]:
        r = c.chat.completions.create(model=model, messages=first, tools=TOOLS,
                                      tool_choice="required", parallel_tool_calls=False,
                                      max_tokens=150, seed=seed, reasoning_effort="low",
                                      extra_body={"reasoning_budget": 6})
        m = r.choices[0].message
        calls = m.tool_calls or []
        check(len(calls) == 1 and args_ok(calls[0].function.name, calls[0].function.arguments)
              and r.choices[0].finish_reason == "tool_calls" and no_markup(m.content),
              "thinking on, first turn, required, seed %d: a valid call %r" %
              (seed, r.choices[0]))
        r = c.chat.completions.create(model=model, messages=first, max_tokens=60, seed=seed,
                                      reasoning_effort="low",
                                      response_format={"type": "json_object"},
                                      extra_body={"reasoning_budget": 6})
        txt = r.choices[0].message.content or ""
        try:
            ok = isinstance(json.loads(txt), dict) or r.choices[0].finish_reason == "length"
        except ValueError:
            ok = r.choices[0].finish_reason == "length" and txt.lstrip().startswith("{")
        check(ok and no_markup(txt), "thinking on, first turn, json_object, seed %d: %r" %
              (seed, txt[:120]))
    # thinking off: nothing opens the channel in the prompt
    r = c.chat.completions.create(model=model, messages=base, tools=TOOLS, max_tokens=20,
                                  seed=1, reasoning_effort="none")
    check(no_markup(r.choices[0].message.content), "effort none: no markup")
    # Ollama think
    obase = [{"role": "user", "content": "What is the weather in Paris?"},
             {"role": "assistant", "content": "", "tool_calls": [
                 {"function": {"name": "get_weather",
                               "arguments": {"city": "Paris", "unit": "c"}}}]},
             {"role": "tool", "tool_name": "get_weather", "content": "{\"temp_c\": 21}"}]
    for seed in SEEDS[:3]:
        res = o.chat(model=model, messages=obase, tools=OLLAMA_TOOLS, think=True,
                     options={"seed": seed, "num_predict": 30})
        th = res.message.thinking
        check(isinstance(th, str) and th.strip() and no_markup(th, res.message.content),
              "ollama think seed %d: thinking %r content %r" % (seed, th, res.message.content))


def main():
    try:
        import jsonschema  # noqa: F401
        import numpy  # noqa: F401
        import gguf  # noqa: F401
        import openai
        import ollama
    except Exception as e:
        print("%s: packages unavailable (%r); skipping" % (NAME, e))
        print("%s: 0 passed, 0 failed" % NAME)
        return 0
    if not os.path.exists(BIN):
        print("%s: %s missing" % (NAME, BIN), file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="lg-agent-")
    env = dict(os.environ, LOCALGEMMA_HOME=os.path.join(tmp, "home"))
    proc = None
    try:
        model = os.path.join(tmp, "agent.gguf")
        g = subprocess.run([sys.executable, GEN, model], capture_output=True, text=True,
                           timeout=120)
        if g.returncode != 0:
            check(False, "make-agent-model: %s" % g.stderr[-500:])
            raise RuntimeError("no model")
        port = free_port()
        proc = subprocess.Popen([BIN, "serve", "--port", str(port), "--model", model,
                                 "--ctx", "2048"], env=env, stderr=subprocess.PIPE, text=True)
        check(wait_up(port, proc, secs=10.0), "server up")
        c = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="none",
                          max_retries=0, timeout=300)
        o = ollama.Client(host="http://127.0.0.1:%d" % port, timeout=300)
        t0 = time.time()
        first = None
        for label, fn in (("required", lambda: test_required(c, model)),
                          ("none_auto", lambda: test_none_auto(c, model)),
                          ("cut_call", lambda: test_cut_call(c, model)),
                          ("fold_back", lambda: first and test_fold_back(c, model, first,
                                                                         env, tmp)),
                          ("ollama_tools", lambda: test_ollama_tools(o, model)),
                          ("structured", lambda: test_structured(c, model, o)),
                          ("thinking", lambda: test_thinking(c, o, model))):
            t = time.time()
            try:
                res = fn()
                if label == "required":
                    first = res
                    check(first is not None, "a call to fold back")
            except Exception as e:  # a client exception is a failure, not a crash
                check(False, "%s raised %r" % (label, e))
            print("%s: %s %.1f s" % (NAME, label, time.time() - t), file=sys.stderr)
        print("%s: total %.1f s" % (NAME, time.time() - t0), file=sys.stderr)
        rc = stop(proc, 30.0)
        check(rc == 0, "serve exit on SIGTERM: %r" % rc)
        if T.failed:
            print(proc.stderr.read()[-2000:], file=sys.stderr)
    except RuntimeError:
        pass
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d passed, %d failed" % (NAME, T.passed, T.failed))
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
