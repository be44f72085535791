"""lgtest.py: what the Python tests share: the pass/fail counter behind check(), a free
loopback port, one HTTP request to a local server (http()), waiting for a server to answer
(wait_up()) and stopping it (stop()). Each test prints "<name>: N passed, N failed" from T
at its end."""
import http.client as hclient
import json
import signal
import socket
import subprocess
import sys
import time


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0


T = Tally()


def check(cond, msg):
    if cond:
        T.passed += 1
    else:
        T.failed += 1
        print("FAIL:", msg, file=sys.stderr)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Resp:
    """An HTTP answer: status, headers (lower-case names), body (text)."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def http(port, method, path, body=None, key=None, headers=None, timeout=120, tls_ctx=None):
    """One request to 127.0.0.1:port on a connection of its own (HTTPS with tls_ctx, to
    "localhost"). body: dict or list (sent as JSON), str or bytes (sent as is) or None; key
    adds "Authorization: Bearer KEY". Returns a Resp whatever the status; OSError and
    http.client.HTTPException when the server cannot be reached or answers garbage."""
    if tls_ctx:
        c = hclient.HTTPSConnection("localhost", port, timeout=timeout, context=tls_ctx)
    else:
        c = hclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if key:
        h["Authorization"] = "Bearer " + key
    data = None
    if body is not None:
        data = json.dumps(body) if isinstance(body, (dict, list)) else body
        data = data.encode() if isinstance(data, str) else data
        h.setdefault("Content-Type", "application/json")
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()},
                    r.read().decode("utf-8", "replace"))
    finally:
        c.close()


def wait_up(port, proc=None, path="/health", secs=20.0, ok=(200,), tls_ctx=None):
    """Polls GET path until it answers a status in ok: True; False once proc (a Popen, may
    be None) has exited or secs have passed."""
    t0 = time.time()
    while time.time() - t0 < secs:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if http(port, "GET", path, timeout=2, tls_ctx=tls_ctx).status in ok:
                return True
        except (OSError, hclient.HTTPException):
            pass
        time.sleep(0.05)
    return False


def stop(proc, secs=15.0):
    """SIGTERM to proc (a Popen) unless it has exited, then waits up to secs and kills it
    after that. Returns its exit code, -9 when it had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=secs)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9
