#!/usr/bin/env python3
"""test_chat_differential.py: random conversations rendered by `localgemma template` and by
Python jinja2 from the official templates (tools/make-chat-golden.py's environment and input
normalisation) must be byte-identical, and must fail together where the template raises.

A fixed seed makes the run reproducible; the generator mixes every feature the templates touch:
system/developer prompts, content parts, thought blocks in history, reasoning_content, tool
calls with string or object arguments, role:tool messages (matched, unmatched, named), the
llama.cpp fold, random JSON-schema tools (nested, enums, list types, odd keys) and values with
Python-sensitive formatting (floats, -0.0, None, unicode keys). Uses only jinja2 (scripts/setup).
$LG_BIN overrides the binary (default $BUILD/localgemma, BUILD default build).
"""
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("LG_BIN", os.path.join(ROOT, os.environ.get("BUILD", "build"), "localgemma"))
N_CONVERSATIONS = 150

spec = importlib.util.spec_from_file_location("golden", os.path.join(ROOT, "tools", "make-chat-golden.py"))
g = importlib.util.module_from_spec(spec)
spec.loader.exec_module(g)

R = random.Random(20261123)
WORDS = ["hello", " spaced ", "\n", "émoji 😀", "quote\"s", "back\\slash", "<|channel>thought\nx<channel|>", "<channel|>", "tab\t", "\u00a0nb", "Ωmega", "", "  ", "ß", "日本"]
def text(): return "".join(R.choice(WORDS) for _ in range(R.randint(0, 4)))
def value(d=0):
    c = R.randint(0, 9 if d < 3 else 5)
    if c == 0: return R.randint(-1000, 10**12)
    if c == 1: return R.choice([0.5, 3.0, 1e-5, -0.0, 1e16, 1e15, 2.5e-7, 123.456, 1/3, 1e300])
    if c == 2: return R.choice([True, False, None])
    if c in (3, 4, 5): return text()
    if c in (6, 7): return [value(d+1) for _ in range(R.randint(0, 3))]
    return {R.choice(["a", "B", "c_d", "Zed", "é", "type", "description", "x y"]): value(d+1) for _ in range(R.randint(0, 3))}
def schema(d=0):
    t = R.choice(["string", "integer", "number", "boolean", "array", "object", "STRING", ["string", "null"], None])
    s = {}
    if t is not None: s["type"] = t
    if R.random() < 0.5: s["description"] = text()
    if R.random() < 0.3: s["enum"] = [text() for _ in range(R.randint(0, 3))]
    if R.random() < 0.2: s["nullable"] = R.choice([True, False])
    if t in ("array",) and d < 3 and R.random() < 0.8: s["items"] = schema(d+1)
    if t in ("object",) and d < 3 and R.random() < 0.8:
        s["properties"] = {R.choice(["p", "Q", "r_s", "type", "描述"]) + str(i): schema(d+1) for i in range(R.randint(0, 3))}
        if R.random() < 0.5: s["required"] = list(s["properties"])[:1]
    return s
def tool(i):
    f = {"name": "tool%d" % i}
    if R.random() < 0.8: f["description"] = text()
    if R.random() < 0.8:
        p = schema()
        p["type"] = R.choice(["object", "object", None])
        if p["type"] is None: del p["type"]
        p.setdefault("properties", {"arg%d" % k: schema(1) for k in range(R.randint(0, 3))})
        if R.random() < 0.5: p["required"] = list(p["properties"])[:2]
        f["parameters"] = p
    if R.random() < 0.1: f["response"] = {"type": "object", "description": text()}
    return {"type": "function", "function": f}
def content():
    c = R.randint(0, 5)
    if c == 0: return None
    if c <= 3: return text()
    parts = []
    for _ in range(R.randint(0, 3)):
        t = R.choice(["text", "text", "image_url", "input_audio", "image", "video"])
        parts.append({"type": t, "text": text()} if t == "text" else {"type": t})
    return parts
def conv():
    msgs = []
    if R.random() < 0.4: msgs.append({"role": R.choice(["system", "developer"]), "content": content() if R.random() < 0.3 else text()})
    ncall = 0
    for _ in range(R.randint(0, 6)):
        r = R.choice(["user", "assistant", "assistant", "tool"])
        m = {"role": r, "content": content()}
        if r == "assistant":
            if R.random() < 0.4:
                m["tool_calls"] = []
                for _ in range(R.randint(1, 3)):
                    ncall += 1
                    args = {k: value() for k in R.sample(["a", "B", "c", "Zz", "é"], R.randint(0, 3))}
                    m["tool_calls"].append({"id": "c%d" % ncall, "type": "function", "function": {"name": "tool%d" % R.randint(0, 2), "arguments": json.dumps(args) if R.random() < 0.5 else args}})
            if R.random() < 0.3: m["reasoning_content"] = text() or "r"
        if r == "tool":
            m["tool_call_id"] = "c%d" % R.randint(0, ncall + 1)
            if R.random() < 0.3: m["name"] = "named"
            if R.random() < 0.5: m["content"] = json.dumps(value())
        msgs.append(m)
    case = {"messages": msgs}
    if R.random() < 0.5: case["tools"] = [tool(i) for i in range(R.randint(0, 3))]
    case["options"] = {"enable_thinking": R.random() < 0.4, "add_generation_prompt": R.random() < 0.8, "tool_response_json": R.random() < 0.3}
    return case


def main():
    if not os.access(BIN, os.X_OK):
        print("test_chat_differential: %s not built" % BIN, file=sys.stderr)
        print("test_chat_differential: 0 passed, 1 failed")
        return 1
    env = g.make_env()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "case.json")
        for _ in range(N_CONVERSATIONS):
            with open(path, "w", encoding="utf-8") as f:
                json.dump(conv(), f, ensure_ascii=False)
            with open(path, encoding="utf-8") as f:
                case = json.load(f)
            o = case["options"]
            flags = (["--think"] if o["enable_thinking"] else []) + \
                    ([] if o["add_generation_prompt"] else ["--no-generation-prompt"]) + \
                    (["--tool-response-json"] if o["tool_response_json"] else [])
            for fl in ("gemma4-small", "gemma4-large", "gemma3"):
                want, err = g.render(env, fl, case)
                p = subprocess.run([BIN, "template", "--flavour", fl, "--messages", path] + flags,
                                   capture_output=True)
                if err is not None:
                    good = p.returncode == 1 and not p.stdout
                else:
                    good = p.returncode == 0 and p.stdout == want.encode("utf-8")
                if good:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL %s: %s\n  case: %s\n  want: %r\n  got: %r %s" % (
                        fl, err or "", json.dumps(case, ensure_ascii=False)[:400],
                        (want or "")[:300], p.stdout[:300], p.stderr[:200]), file=sys.stderr)
    print("test_chat_differential: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
