#!/usr/bin/env python3
"""test_server_traversal.py: no request reaches a file outside the store (hardening.md G18).

`localgemma serve` runs under `strace -f -e trace=%file` with a temp LOCALGEMMA_HOME beside a
directory OUTSIDE that holds a valid GGUF, a manifest and a blob. Every route that takes a
model name (/api/show, /api/delete, /api/generate, /api/chat, /v1/chat/completions,
/v1/completions, /v1/models/{id}, /tokenize, /detokenize, /api/pull) gets a traversal corpus:
../ forms, absolute paths, %2e%2e, a backslash form, overlong names and digests, a NUL, and a
symlink planted inside the store (manifests/lnk -> OUTSIDE/m, which holds a manifest).
Checked: each answer is a 4xx
(never a 200 and never a 5xx; /api/pull without a "url" is a registry pull: 501), the trace
shows no syscall naming OUTSIDE, nothing under OUTSIDE changed (the symlink case: paths in
the trace name the link, not OUTSIDE), and the CLI's cp/rm/show/import refuse the symlinked
family too. A control run shows the trace does see a file the server is allowed to read (a
--model path given by the operator), so an empty result is not an empty trace.
Skipped (0 failed) without strace. Prints "test_server_traversal: N passed, N failed"."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse

from lgtest import T, check, free_port, http, wait_up  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, os.environ.get("BUILD", "build"), "localgemma")
NAME = "test_server_traversal"


def tiny_gguf(path):
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(path, "gemma3")
    w.add_string("general.basename", "outside")
    w.add_tensor("blk.0.weight", np.zeros(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def corpus(outside):
    names = [
        "../lg-outside/secret.gguf", "../../lg-outside/secret", "../" * 12 + "etc/passwd",
        os.path.join(outside, "secret.gguf"), outside, "/etc/passwd",
        "%2e%2e/lg-outside/secret.gguf", "%2e%2e%2flg-outside%2fsecret", "..%2f..%2fetc",
        "..\\..\\lg-outside\\secret.gguf", "lnk:latest", "lnk/latest", "lnk",
        "x/../../lg-outside/secret", "sha256:" + "a" * 200, "sha256-../../lg-outside",
        "a" * 5000, "secret\u0000.gguf", "manifests/../../lg-outside/secret", ".", "..",
        "~/lg-outside", "file://" + os.path.join(outside, "secret.gguf"),
    ]
    return names


def requests_for(name, outside):
    chat = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    yield "POST", "/api/show", {"model": name}
    yield "DELETE", "/api/delete", {"model": name}
    yield "POST", "/api/generate", {"model": name, "prompt": "hi", "stream": False,
                                    "options": {"num_predict": 1}}
    yield "POST", "/api/chat", dict(chat, stream=False)
    yield "POST", "/v1/chat/completions", chat
    yield "POST", "/v1/completions", {"model": name, "prompt": "hi", "max_tokens": 1}
    yield "GET", "/v1/models/" + urllib.parse.quote(name, safe=""), None
    yield "POST", "/tokenize", {"model": name, "content": "hi"}
    yield "POST", "/detokenize", {"model": name, "tokens": [1, 2]}
    yield "POST", "/api/pull", {"model": name, "stream": False}
    yield "POST", "/api/pull", {"model": name, "url": "file://" +
                                os.path.join(outside, "secret.gguf"), "stream": False}


def snapshot(root):
    """Every file under root with its size and mtime."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for f in dirs + files:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def stop_traced(proc):
    """SIGTERM to the traced server itself (strace would detach on a signal of its own and
    leave the server running); strace then exits with the server's status."""
    try:
        with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        kids = []
    for k in kids:
        try:
            os.kill(k, signal.SIGTERM)
        except OSError:
            pass
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
        proc.kill()
        proc.wait()
        return -9


def main():
    if not os.path.exists(BIN):
        print("%s: %s missing" % (NAME, BIN), file=sys.stderr)
        print("%s: 0 passed, 1 failed" % NAME)
        return 1
    if not shutil.which("strace"):
        print("%s: strace missing; skipping" % NAME)
        print("%s: 0 passed, 0 failed" % NAME)
        return 0
    try:
        import gguf  # noqa: F401
    except ImportError:
        print("%s: gguf package missing; skipping" % NAME)
        print("%s: 0 passed, 0 failed" % NAME)
        return 0
    tmp = tempfile.mkdtemp(prefix="lg-trav-")
    outside = os.path.join(tmp, "lg-outside")
    home = os.path.join(tmp, "home")
    os.makedirs(outside)
    secret = os.path.join(outside, "secret.gguf")
    tiny_gguf(secret)
    env = dict(os.environ, LOCALGEMMA_HOME=home, ASAN_OPTIONS="detect_leaks=0")
    # a real model in the store, and a symlink planted in it that points outside
    r = subprocess.run([BIN, "import", "--copy", secret, "inside:latest"], env=env,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "import: %s" % r.stderr)
    man = json.load(open(os.path.join(home, "manifests", "inside", "latest")))
    os.makedirs(os.path.join(outside, "m"), exist_ok=True)
    with open(os.path.join(outside, "m", "latest"), "w") as f:
        json.dump(man, f)
    os.symlink(os.path.join(outside, "m"), os.path.join(home, "manifests", "lnk"))
    before = snapshot(outside)
    trace = os.path.join(tmp, "trace")
    ctl = os.path.join(tmp, "control.gguf")
    shutil.copy(secret, ctl)
    port = free_port()
    proc = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, "-e", "trace=%file,%desc",
                             BIN, "serve", "--port", str(port), "--model", ctl],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        check(wait_up(port, proc, secs=30.0), "serve up under strace")
        r = http(port, "POST", "/api/show", {"model": ctl})
        check(r.status == 200, "control: the operator's --model path is shown: %d" % r.status)
        n = 0
        bad = []
        for name in corpus(outside):
            for method, path, body in requests_for(name, outside):
                try:
                    r = http(port, method, path, body, timeout=30)
                    st = r.status
                except OSError as e:
                    st = repr(e)
                n += 1
                # /api/pull without a "url" is a registry pull: 501, before any name use
                ok = isinstance(st, int) and (400 <= st < 500 or (
                    st == 501 and path == "/api/pull" and "url" not in body))
                if not ok:
                    bad.append((method, path, name[:60], st, r.body[:120] if isinstance(st, int)
                                else ""))
        check(not bad, "%d of %d traversal requests not answered 4xx: %r" % (len(bad), n,
                                                                              bad[:5]))
        r = http(port, "GET", "/api/tags")
        names = sorted(m.get("name") for m in (r.json() or {}).get("models", []))
        check("inside:latest" in names, "the store's own model still listed: %r" % names)
    finally:
        rc = stop_traced(proc)
    check(rc == 0, "serve exit %d" % rc)
    # the CLI goes through the same store code: the symlinked family is never followed
    for args in (["cp", "inside:latest", "lnk:new"], ["rm", "lnk:latest"],
                 ["show", "lnk:latest"], ["import", "--copy", ctl, "lnk:imp"]):
        r = subprocess.run([BIN] + args, env=env, capture_output=True, text=True, timeout=60)
        check(r.returncode != 0 and r.stderr.strip(), "%s through the symlink refused: rc %d %r"
              % (" ".join(args), r.returncode, r.stderr))
    after = snapshot(outside)
    check(after == before, "nothing outside the store changed: before %r after %r"
          % (before, after))
    with open(trace, errors="replace") as f:
        lines = f.read().splitlines()
    seen_ctl = [l for l in lines if ctl in l]
    check(seen_ctl, "control: the trace records opening the --model file")
    leaks = [l for l in lines if "lg-outside" in l]
    check(not leaks, "syscalls naming a path outside the store: %d, e.g. %r" % (len(leaks),
                                                                                 leaks[:5]))
    shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d passed, %d failed" % (NAME, T.passed, T.failed))
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
