#!/usr/bin/env python3
"""test_pull.py: `localgemma pull` against a local HTTP server on 127.0.0.1 (never the
internet): a normal pull with --sha256, a wrong hash, 404, connection refused, an interrupted
transfer (the server closes mid-body) then a resume with Range + If-Range, a pull stopped by
SIGINT/SIGTERM (exits within a second, partial kept, resumed), injected fsync/rename/link
failures while publishing (strace; the store stays consistent), an ETag change
between the two (restart from zero), redirects (followed, and a bounded loop), a non-GGUF
body, and refused URLs/names. Every case also checks the store afterwards: no half model in
`list`, no stray partials.

The same transfer started by `localgemma serve` (POST /api/pull, streamed and stream:false):
a client that hangs up mid-download stops it within about a second (the origin sees its
connection closed long before the file is through), no model appears in /api/tags, the
partial stays, and the next pull of the URL resumes it with Range.

Binary: build/localgemma (LG_BIN overrides). Run from the repo root.
"""
import hashlib
import http.server as hserver
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from lgtest import T, check, free_port, http, stop, wait_up  # noqa: E402  (tests/py is on sys.path)

BIN = os.environ.get("LG_BIN", "build/localgemma")


def make_gguf(path, basename, seed):
    import gguf

    w = gguf.GGUFWriter(path, "gemma3")
    w.add_string("general.basename", basename)
    w.add_string("general.size_label", "1M")
    rng = np.random.default_rng(seed)
    w.add_tensor("blk.0.weight", rng.standard_normal(400_000).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(path, "rb") as f:
        return f.read()


class State:
    files = {}        # path -> (bytes, etag)
    cut = {}          # path -> close the connection after this many body bytes (once)
    log = []          # (path, range header, if-range header, status)
    slow = set()      # paths served slowly
    pace = {}         # path -> seconds between 64 KiB chunks when slow (default 0.05)
    sent = {}         # path -> body bytes written by the last slow response
    aborted = {}      # path -> time.time() when a slow response found the client gone
    finished = {}     # path -> time.time() when a slow response was written whole


class Handler(hserver.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        path = self.path
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
            State.log.append((path, rng, if_range, 302))
            return
        if path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/model.gguf")
            self.send_header("Content-Length", "0")
            self.end_headers()
            State.log.append((path, rng, if_range, 302))
            return
        if path not in State.files:
            body = b"not found"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            State.log.append((path, rng, if_range, 404))
            return
        data, etag = State.files[path]
        start = 0
        status = 200
        if rng and rng.startswith("bytes=") and (if_range is None or if_range == etag):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                State.log.append((path, rng, if_range, 416))
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.end_headers()
        State.log.append((path, rng, if_range, status))
        cut = State.cut.pop(path, None)
        if path in State.slow:
            # trickle: 64 KiB every 50 ms, so a client can be killed mid-transfer
            State.sent[path] = 0
            try:
                for i in range(0, len(body), 65536):
                    self.wfile.write(body[i:i + 65536])
                    self.wfile.flush()
                    State.sent[path] += len(body[i:i + 65536])
                    time.sleep(State.pace.get(path, 0.05))
                State.finished[path] = time.time()
            except (BrokenPipeError, ConnectionResetError):
                State.aborted[path] = time.time()
            return
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def run(home, *args, env_extra=None):
    env = dict(os.environ, LOCALGEMMA_HOME=home, LG_PULL_LOW_SPEED_TIME="5")
    if env_extra:
        env.update(env_extra)
    p = subprocess.run([BIN, *args], capture_output=True, text=True, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr


def listing(home):
    rc, out, _ = run(home, "list")
    return [line.split()[0] for line in out.splitlines()[1:] if line.strip()] if rc == 0 else None


def tmp_files(home):
    d = os.path.join(home, "tmp")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def blobs(home):
    d = os.path.join(home, "blobs")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def store_problems(home):
    """Manifests whose blob is missing or fails its sha256."""
    bad = []
    mroot = os.path.join(home, "manifests")
    for dirpath, _, files in os.walk(mroot):
        for f in files:
            path = os.path.join(dirpath, f)
            try:
                d = json.load(open(path)).get("digest", "")
            except (OSError, ValueError):
                bad.append((path, "unreadable"))
                continue
            blob = os.path.join(home, "blobs", "sha256-" + d[7:])
            if not d.startswith("sha256:") or not os.path.isfile(blob):
                bad.append((path, "no blob"))
            elif hashlib.sha256(open(blob, "rb").read()).hexdigest() != d[7:]:
                bad.append((path, "sha256 mismatch"))
    return bad


def hangup_pull(port, base, path, stream):
    """Starts POST /api/pull of base+path on a raw socket, waits until the download is under
    way, hangs up. Returns the time of the hang-up, or None if it never got going."""
    body = {"model": "hang", "url": base + path}
    if not stream:
        body["stream"] = False
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /api/pull HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
              b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (port, len(data), data))
    got = b""
    t_end = time.time() + 15
    while time.time() < t_end:
        if stream:  # the progress lines say the transfer has begun
            s.settimeout(max(0.1, t_end - time.time()))
            try:
                d = s.recv(65536)
            except OSError:
                break
            if not d:
                break
            got += d
            if got.count(b'"completed"') >= 2:
                break
        else:  # nothing comes back before the end: watch the origin instead
            if State.sent.get(path, 0) >= 3 * 65536:
                break
            time.sleep(0.02)
    else:
        s.close()
        return None
    t = time.time()
    s.close()
    return t


def test_cli_signal(work, base, data, digest):
    """`localgemma pull` stopped by SIGINT (Ctrl-C) or SIGTERM mid-transfer: exits 128+sig
    within about a second, says so, lists nothing, keeps partial + sidecar, and the next pull
    of the URL resumes with Range."""
    import signal
    for sig, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
        home = os.path.join(work, "hsig-" + name)
        path = "/sig-%s.gguf" % name
        State.files[path] = (data, '"sig"')
        State.slow.add(path)
        State.pace[path] = 0.25  # the whole file would take several seconds
        State.aborted.pop(path, None)
        State.finished.pop(path, None)
        env = dict(os.environ, LOCALGEMMA_HOME=home, LG_PULL_LOW_SPEED_TIME="10")
        proc = subprocess.Popen([BIN, "pull", base + path, "sig"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        partial = None
        for _ in range(500):
            tf = [f for f in tmp_files(home) if f.endswith(".partial.json")]
            if tf:
                partial = os.path.join(home, "tmp", tf[0][:-5])
                if os.path.exists(partial) and os.path.getsize(partial) >= 2 * 65536:
                    break
            time.sleep(0.02)
        check(partial is not None and proc.poll() is None, "%s: pull under way" % name)
        t_sig = time.time()
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        t_exit = time.time() - t_sig
        print("test_pull: %s stopped the pull in %.2f s" % (name, t_exit))
        check(t_exit < 1.5, "%s: pull exited %.2f s after the signal" % (name, t_exit))
        check(proc.returncode == 128 + sig, "%s: exit %d (want %d) %r"
              % (name, proc.returncode, 128 + sig, err))
        check("interrupted by " + name in err and "resume" in err,
              "%s: message %r" % (name, err))
        check(path not in State.finished, "%s: the file was not sent whole" % name)
        check(listing(home) == [] and blobs(home) == [],
              "%s: nothing published: %r %r" % (name, listing(home), blobs(home)))
        tf = tmp_files(home)
        have = os.path.getsize(partial) if partial and os.path.exists(partial) else 0
        check(len(tf) == 2 and tf[1].endswith(".partial.json") and 0 < have < len(data),
              "%s: partial (%d bytes) + sidecar kept: %r" % (name, have, tf))
        State.slow.discard(path)
        State.log.clear()
        rc, out, err = run(home, "pull", base + path, "sig", "--sha256", digest)
        check(rc == 0 and "resumed at byte" in out, "%s: resumed: %r %r" % (name, out, err))
        check(any(l[0] == path and l[1] and l[1] != "bytes=0-" and l[3] == 206
                  for l in State.log), "%s: Range sent: %r" % (name, State.log))
        check(listing(home) == ["sig:latest"] and blobs(home) == ["sha256-" + digest] and
              tmp_files(home) == [], "%s: store after resume: %r %r %r"
              % (name, listing(home), blobs(home), tmp_files(home)))


def test_serve_hangup(work, base, data, digest):
    home = os.path.join(work, "h9")
    env = dict(os.environ, LOCALGEMMA_HOME=home, LG_PULL_LOW_SPEED_TIME="10")
    port = free_port()
    log = open(os.path.join(work, "serve.log"), "w")
    proc = subprocess.Popen([BIN, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        check(wait_up(port, proc), "serve up for /api/pull")
        for stream in (True, False):
            label = "stream" if stream else "stream:false"
            path = "/hang-%s.gguf" % ("s" if stream else "d")
            # 0.25 s a 64 KiB chunk: the whole file would take several seconds
            State.files[path] = (data, '"hang"')
            State.slow.add(path)
            State.pace[path] = 0.25
            t_close = hangup_pull(port, base, path, stream)
            check(t_close is not None, "%s: the pull got under way" % label)
            t_end = time.time() + 5
            while path not in State.aborted and path not in State.finished and \
                    time.time() < t_end:
                time.sleep(0.02)
            t_stop = State.aborted.get(path)
            check(t_stop is not None and t_close is not None and t_stop - t_close < 2.0,
                  "%s: hang-up stopped the transfer (origin saw the close %s s after it; "
                  "%d of %d bytes sent)" % (label, "%.2f" % (t_stop - t_close)
                                            if t_stop and t_close else "never",
                                            State.sent.get(path, 0), len(data)))
            check(path not in State.finished, "%s: the file was not sent whole" % label)
            time.sleep(0.5)  # the worker winds down
            tags = (http(port, "GET", "/api/tags").json() or {}).get("models", [])
            check(tags == [], "%s: no model after the hang-up: %r" % (label, tags))
            tf = tmp_files(home)
            check(len(tf) == 2 and tf[1].endswith(".partial.json"),
                  "%s: the partial stays for a resume: %r" % (label, tf))
            check(blobs(home) == [], "%s: no blob: %r" % (label, blobs(home)))
            # the same URL again, at full speed: resumed from the partial, then listed
            State.slow.discard(path)
            State.log.clear()
            r = http(port, "POST", "/api/pull", {"model": "hang", "url": base + path,
                                                 "stream": False, "sha256": digest})
            check(r.status == 200 and (r.json() or {}).get("status") == "success",
                  "%s: pull after the hang-up: %d %s" % (label, r.status, r.body[:200]))
            check(any(l[0] == path and l[1] and l[1] != "bytes=0-" and l[3] == 206
                      for l in State.log), "%s: resumed with Range: %r" % (label, State.log))
            tags = (http(port, "GET", "/api/tags").json() or {}).get("models", [])
            check([m.get("name") for m in tags] == ["hang:latest"] and
                  tags[0].get("digest") == digest, "%s: listed after the resume: %r"
                  % (label, tags))
            check(tmp_files(home) == [], "%s: tmp empty: %r" % (label, tmp_files(home)))
            r = http(port, "DELETE", "/api/delete", {"model": "hang"})
            check(r.status == 200, "delete hang: %d %s" % (r.status, r.body))
    finally:
        rc = stop(proc)
        log.close()
        check(rc == 0, "serve exit %d after SIGTERM" % rc)
        if T.failed:
            with open(os.path.join(work, "serve.log")) as f:
                print(f.read()[-2000:], file=sys.stderr)


def main():
    if not os.access(BIN, os.X_OK):
        print("test_pull: binary %s missing" % BIN, file=sys.stderr)
        print("test_pull: 0 passed, 1 failed")
        return 1
    work = tempfile.mkdtemp(prefix="lg_test_pull_")
    server = hserver.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % port
    try:
        v1 = make_gguf(os.path.join(work, "v1.gguf"), "tiny-test", 1)
        v2 = make_gguf(os.path.join(work, "v2.gguf"), "tiny-test", 2)
        h1 = hashlib.sha256(v1).hexdigest()
        h2 = hashlib.sha256(v2).hexdigest()
        State.files["/model.gguf"] = (v1, '"v1"')
        State.files["/noetag.gguf"] = (v1, None)
        State.files["/text.gguf"] = (b"this is not a gguf file at all" * 10, '"t"')

        # 1. normal pull, pinned hash; default name from general.basename/size_label
        home = os.path.join(work, "h1")
        rc, out, err = run(home, "pull", base + "/model.gguf", "--sha256", h1.upper())
        check(rc == 0, "normal pull: rc %d %s" % (rc, err))
        check("pulled tiny-test:1m" in out, "normal pull output: %r" % out)
        check(listing(home) == ["tiny-test:1m"], "list after pull: %r" % listing(home))
        check(blobs(home) == ["sha256-" + h1], "blob named by hash: %r" % blobs(home))
        with open(os.path.join(home, "blobs", "sha256-" + h1), "rb") as f:
            check(hashlib.sha256(f.read()).hexdigest() == h1, "blob content")
        check(tmp_files(home) == [], "tmp empty after pull: %r" % tmp_files(home))
        man = json.load(open(os.path.join(home, "manifests", "tiny-test", "1m")))
        check(man["digest"] == "sha256:" + h1 and man["size"] == len(v1), "manifest digest/size")
        check(man["source"] == base + "/model.gguf", "manifest source")
        check(man.get("gguf", {}).get("architecture") == "gemma3", "manifest gguf facts")
        # same again under another name: dedup, no new blob
        rc, out, err = run(home, "pull", base + "/model.gguf", "again")
        check(rc == 0 and blobs(home) == ["sha256-" + h1], "dedup pull: %s %r" % (err, blobs(home)))
        check(sorted(listing(home)) == ["again:latest", "tiny-test:1m"], "two names")

        # 2. wrong hash: error, nothing kept
        home = os.path.join(work, "h2")
        rc, out, err = run(home, "pull", base + "/model.gguf", "m", "--sha256", "0" * 64)
        check(rc == 1 and "sha256 mismatch" in err, "wrong hash: rc %d %r" % (rc, err))
        check(listing(home) == [], "no model after wrong hash")
        check(blobs(home) == [] and tmp_files(home) == [], "no files after wrong hash: %r %r"
              % (blobs(home), tmp_files(home)))
        rc, out, err = run(home, "pull", base + "/model.gguf", "m", "--sha256", "xyz")
        check(rc == 1 and "64 hex" in err, "malformed --sha256: %r" % err)

        # 3. 404 and connection refused
        rc, out, err = run(home, "pull", base + "/missing.gguf", "m")
        check(rc == 1 and "404" in err, "404: rc %d %r" % (rc, err))
        check(tmp_files(home) == [], "no partial after 404: %r" % tmp_files(home))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()
        rc, out, err = run(home, "pull", "http://127.0.0.1:%d/x.gguf" % dead, "m")
        check(rc == 1 and "connect" in err, "refused: %r" % err)
        check(tmp_files(home) == [] and listing(home) == [], "nothing after refused")

        # 4. interrupted mid-body, then resumed with Range + If-Range
        home = os.path.join(work, "h4")
        State.log.clear()
        State.cut["/model.gguf"] = len(v1) // 3
        rc, out, err = run(home, "pull", base + "/model.gguf", "resumable", "--sha256", h1)
        check(rc == 1 and "interrupted" in err and "resume" in err,
              "interrupted: rc %d %r" % (rc, err))
        check(listing(home) == [], "no model after interruption")
        tf = tmp_files(home)
        check(len(tf) == 2 and tf[0].endswith(".partial") and tf[1].endswith(".partial.json"),
              "partial + sidecar kept: %r" % tf)
        if len(tf) == 2:
            side = json.load(open(os.path.join(home, "tmp", tf[1])))
            check(side.get("url") == base + "/model.gguf" and side.get("etag") == '"v1"'
                  and side.get("length") == len(v1), "sidecar: %r" % side)
            check(os.path.getsize(os.path.join(home, "tmp", tf[0])) == len(v1) // 3,
                  "partial size")
        # a later process (the store's startup scan) must not delete a resumable partial
        run(home, "list")
        check(len(tmp_files(home)) == 2, "scan keeps a resumable partial")
        State.log.clear()
        rc, out, err = run(home, "pull", base + "/model.gguf", "resumable", "--sha256", h1)
        check(rc == 0, "resume: rc %d %r" % (rc, err))
        check(("resumed at byte %d" % (len(v1) // 3)) in out, "resume offset: %r" % out)
        check(any(l[1] == "bytes=%d-" % (len(v1) // 3) and l[2] == '"v1"' and l[3] == 206
                  for l in State.log), "Range + If-Range sent, 206 served: %r" % State.log)
        check(listing(home) == ["resumable:latest"], "model listed after resume")
        check(blobs(home) == ["sha256-" + h1], "resumed blob has the right hash")
        check(tmp_files(home) == [], "tmp empty after resume: %r" % tmp_files(home))

        # 5. ETag changed between the attempts: If-Range fails, the server sends 200 with the
        #    new file, which must be taken whole (not spliced onto the old prefix)
        home = os.path.join(work, "h5")
        State.cut["/model.gguf"] = len(v1) // 2
        rc, out, err = run(home, "pull", base + "/model.gguf", "changing")
        check(rc == 1, "first half: rc %d" % rc)
        State.files["/model.gguf"] = (v2, '"v2"')
        State.log.clear()
        rc, out, err = run(home, "pull", base + "/model.gguf", "changing")
        check(rc == 0, "etag change: rc %d %r" % (rc, err))
        check("resumed" not in out, "etag change restarts from zero: %r" % out)
        check(any(l[2] == '"v1"' and l[3] == 200 for l in State.log),
              "If-Range with the old ETag got 200: %r" % State.log)
        check(blobs(home) == ["sha256-" + h2], "new content stored whole: %r" % blobs(home))
        State.files["/model.gguf"] = (v1, '"v1"')

        # 5b. the client itself is killed (-9) mid-transfer: nothing listed, the partial stays
        #     locked-free and resumable; a second pull meanwhile is refused (busy), then resumes
        home = os.path.join(work, "h5b")
        State.files["/slow.gguf"] = (v1, '"s1"')
        State.slow.add("/slow.gguf")
        env = dict(os.environ, LOCALGEMMA_HOME=home)
        proc = subprocess.Popen([BIN, "pull", base + "/slow.gguf", "slow"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        partial = None
        for _ in range(200):
            tf = [f for f in tmp_files(home) if f.endswith(".partial.json")]
            if tf:
                partial = os.path.join(home, "tmp", tf[0][:-5])
                if os.path.exists(partial) and os.path.getsize(partial) > 200000:
                    break
            time.sleep(0.02)
        check(partial is not None, "slow pull started writing")
        rc, out, err = run(home, "pull", base + "/slow.gguf", "slow")
        check(rc == 1 and "already being downloaded" in err, "concurrent pull is busy: %r" % err)
        proc.kill()
        proc.wait()
        have = os.path.getsize(partial) if partial and os.path.exists(partial) else 0
        check(0 < have < len(v1), "killed pull left a partial (%d bytes)" % have)
        check(listing(home) == [], "killed pull: nothing listed")
        check(blobs(home) == [], "killed pull: no blob")
        State.slow.discard("/slow.gguf")
        rc, out, err = run(home, "pull", base + "/slow.gguf", "slow", "--sha256", h1)
        check(rc == 0 and "resumed at byte" in out, "resume after kill -9: %r %r" % (out, err))
        check(blobs(home) == ["sha256-" + h1] and tmp_files(home) == [], "resumed blob intact")

        # 5c0. Ctrl-C / SIGTERM: clean stop within a second, partial kept, resumed
        test_cli_signal(work, base, v1, h1)

        # 5c. disk full while downloading (write fails with ENOSPC, injected with strace)
        if shutil.which("strace"):
            home = os.path.join(work, "h5c")
            for when in (1, 2, 3):
                env = dict(os.environ, LOCALGEMMA_HOME=home, ASAN_OPTIONS="detect_leaks=0")
                p = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e",
                                    "inject=write:error=ENOSPC:when=%d" % when, BIN, "pull",
                                    base + "/model.gguf", "full"],
                                   capture_output=True, text=True, env=env, timeout=120)
                check(p.returncode == 1 and "disk full" in p.stderr,
                      "ENOSPC #%d: rc %d %r" % (when, p.returncode, p.stderr))
                check(listing(home) == [] and tmp_files(home) == [] and blobs(home) == [],
                      "ENOSPC #%d leaves nothing: %r %r" % (when, tmp_files(home), blobs(home)))

        # 5d. injected failures of fsync / rename / link while publishing a pull (hardening.md
        #     G15): a failed pull lists nothing; afterwards no manifest dangles, every listed
        #     blob has its sha256, tmp/ holds nothing but a resumable pair; a clean pull then
        #     works. At least some injections must hit (else the test proves nothing).
        if shutil.which("strace"):
            home = os.path.join(work, "h5d")
            hit = 0
            for spec in ("fsync:error=EIO", "rename,renameat,renameat2:error=EIO",
                         "link,linkat:error=EIO", "fdatasync,fsync:error=ENOSPC"):
                for when in range(1, 6):
                    env = dict(os.environ, LOCALGEMMA_HOME=home, ASAN_OPTIONS="detect_leaks=0")
                    p = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e",
                                        "inject=%s:when=%d" % (spec, when), BIN, "pull",
                                        base + "/model.gguf", "inj"],
                                       capture_output=True, text=True, env=env, timeout=120)
                    what = "%s #%d" % (spec, when)
                    names = listing(home)
                    if p.returncode != 0:
                        hit += 1
                        check(p.returncode == 1 and p.stderr.startswith("localgemma pull: "),
                              "%s: clean error: rc %d %r" % (what, p.returncode, p.stderr))
                        check(names == [], "%s failed but listed %r" % (what, names))
                    else:
                        check(names == ["inj:latest"], "%s: rc 0 but list %r" % (what, names))
                    problems = store_problems(home)
                    check(problems == [], "%s: store inconsistent: %r" % (what, problems))
                    tf = tmp_files(home)
                    check(tf == [] or (len(tf) == 2 and tf[1] == tf[0] + ".json"),
                          "%s: tmp leftovers %r" % (what, tf))
                    run(home, "rm", "inj")
                    run(home, "list")  # startup scan
                    check(blobs(home) == [], "%s: blob left after rm %r" % (what, blobs(home)))
                    # whatever is left must not spoil the next pull
                    rc, out, err = run(home, "pull", base + "/model.gguf", "inj", "--sha256", h1)
                    check(rc == 0 and blobs(home) == ["sha256-" + h1] and tmp_files(home) == [],
                          "%s: clean pull afterwards: %r %r" % (what, err, tmp_files(home)))
                    run(home, "rm", "inj")
            check(hit >= 8, "injected failures made only %d pulls fail" % hit)

        # 6. no ETag: an interrupted download is not kept (cannot be resumed safely)
        home = os.path.join(work, "h6")
        State.cut["/noetag.gguf"] = 1000
        rc, out, err = run(home, "pull", base + "/noetag.gguf", "n")
        check(rc == 1 and tmp_files(home) == [], "no-etag partial dropped: %r" % tmp_files(home))
        rc, out, err = run(home, "pull", base + "/noetag.gguf", "n")
        check(rc == 0 and listing(home) == ["n:latest"], "no-etag full pull: %r" % err)

        # 7. redirects: followed; a loop is bounded
        home = os.path.join(work, "h7")
        rc, out, err = run(home, "pull", base + "/redirect", "redir", "--sha256", h1)
        check(rc == 0 and listing(home) == ["redir:latest"], "redirect: %r" % err)
        rc, out, err = run(home, "pull", base + "/loop", "loop")
        check(rc == 1 and "redirect" in err, "redirect loop: %r" % err)

        # 8. not a GGUF; refused URLs and names
        rc, out, err = run(home, "pull", base + "/text.gguf", "text")
        check(rc == 1 and "GGUF" in err, "non-GGUF body: %r" % err)
        check(listing(home) == ["redir:latest"] and tmp_files(home) == [],
              "nothing kept from a non-GGUF body")
        for bad in ["file:///etc/passwd", "ftp://127.0.0.1/x", "127.0.0.1/x", "http://a b/"]:
            rc, out, err = run(home, "pull", bad, "x")
            check(rc == 1 and "http" in err, "refused URL %s: %r" % (bad, err))
        for bad in ["../evil", "/abs", "a/b", "x:y:z"]:
            rc, out, err = run(home, "pull", base + "/model.gguf", bad)
            check(rc == 1 and not os.path.exists(os.path.join(work, "evil")),
                  "refused name %s: %r" % (bad, err))
        check(listing(home) == ["redir:latest"], "store unchanged by refused pulls")
        rc, out, err = run(home, "pull")
        check(rc == 2, "usage error without URL")

        # 9. the server's /api/pull: a client that hangs up stops the transfer
        test_serve_hangup(work, base, v1, h1)
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print("test_pull: %d passed, %d failed" % (T.passed, T.failed))
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
