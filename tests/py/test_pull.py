#!/usr/bin/env python3
"""test_pull.py: `localgemma pull` against a local HTTP server on 127.0.0.1 (never the
internet): a normal pull with --sha256, a wrong hash, 404, connection refused, an interrupted
transfer (the server closes mid-body) then a resume with Range + If-Range, an ETag change
between the two (restart from zero), redirects (followed, and a bounded loop), a non-GGUF
body, and refused URLs/names. Every case also checks the store afterwards: no half model in
`list`, no stray partials.

Binary: build/localgemma (LG_BIN overrides). Run from the repo root.
"""
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

BIN = os.environ.get("LG_BIN", "build/localgemma")
passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


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


class Handler(http.server.BaseHTTPRequestHandler):
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
            try:
                for i in range(0, len(body), 65536):
                    self.wfile.write(body[i:i + 65536])
                    self.wfile.flush()
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                pass
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


def main():
    if not os.access(BIN, os.X_OK):
        print("test_pull: binary %s missing" % BIN, file=sys.stderr)
        print("test_pull: 0 passed, 1 failed")
        return 1
    work = tempfile.mkdtemp(prefix="lg_test_pull_")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
        import socket
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
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print("test_pull: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
