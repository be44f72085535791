"""lgtest.py: what the Python tests share: the pass/fail counter behind check() and a free
loopback port. Each test prints "<name>: N passed, N failed" from T at its end."""
import socket
import sys


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
