# SPDX-License-Identifier: MIT
"""Shared helpers for orphand's Python tests: a private daemon, real processes, outcome checks.

Every process a test starts is tracked and ended by pid (through a pidfd) when the test ends, so
nothing outlives the test. Liveness is checked through pidfds and /proc/PID/stat: a zombie counts
as dead, because PID 1 on a test machine may not reap.
"""

import contextlib
import errno
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("ORPHAND_BUILD_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "build"))
DAEMON = os.path.join(BUILD, "daemon", "orphand")
CTL = os.path.join(BUILD, "ctl", "orphanctl")
SHIM = os.path.join(BUILD, "shim", "orphand-forkwait.so")

REGISTER, UNREGISTER, PING, HELLO, LIST, STATUS = 1, 2, 3, 4, 5, 6
HELLO_MAGIC = 0x4850524F
FLAG_SIGNAL, FLAG_GRACE = 1, 2
GRACE_NEVER = 0xFFFFFFFF

# Generous correctness bound for "eventually" checks; speed is measured in bench/.
TIMEOUT = float(os.environ.get("ORPHAND_TEST_TIMEOUT", "10"))

_tracked = []  # (pid, pidfd) of every process started through this module


def skip(why):
    """Exit with meson's skip status. Only for a capability the machine really lacks."""
    print(f"SKIP: {why}")
    sys.exit(77)


def fail(msg):
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def record(parent, child, action):
    return struct.pack("=III", parent & 0xFFFFFFFF, child & 0xFFFFFFFF, action & 0xFFFFFFFF)


def request(parent, child, action, seq=0, flags=0, sig=0, grace_ms=0, scope=0):
    return struct.pack("=IIIIIiII", parent & 0xFFFFFFFF, child & 0xFFFFFFFF, action, seq,
                       flags, sig, grace_ms, scope)


def parse_reply(data):
    seq, action, error, reason, count = struct.unpack("=IIiII", data[:20])
    return {"seq": seq, "action": action, "error": error, "reason": reason, "count": count}


def proc_state(pid):
    """The state letter from /proc/PID/stat, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2:].split()[0].decode()


def pidfd_dead(pidfd):
    """True once the process behind pidfd has exited (zombie or reaped)."""
    return bool(select.select([pidfd], [], [], 0)[0])


def wait_pidfd(pidfd, timeout=TIMEOUT):
    """Wait until the process behind pidfd exits. Returns True if it did within timeout."""
    return bool(select.select([pidfd], [], [], timeout)[0])


def track(pid):
    """Track a pid started by this test (returns its pidfd, owned by the tracker)."""
    fd = os.pidfd_open(pid)
    _tracked.append((pid, fd))
    return fd


def spawn(argv, **kw):
    """Start a process (a direct child of the test) and track it. Returns (Popen, pidfd)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(argv, **kw)
    return p, track(p.pid)


def sleeper(seconds=600, **kw):
    """A `sleep`, returned once it runs sleep: Popen may return before the exec, while the
    child is still named after python3."""
    p, fd = spawn(["sleep", str(seconds)], **kw)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{p.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    break
        except OSError:
            break
        time.sleep(0.001)
    return p, fd


def reap(p):
    with contextlib.suppress(Exception):
        p.wait(timeout=0)


def cleanup():
    """SIGKILL every tracked process still alive, through its pidfd (never by a reused pid)."""
    while _tracked:
        pid, fd = _tracked.pop()
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, os.WNOHANG)
        os.close(fd)


class Daemon:
    """The real orphand on a private socket in a temporary directory."""

    def __init__(self, *args, env=None, socket_path=None):
        self.dir = tempfile.mkdtemp(prefix="orphand-test-")
        self.socket = socket_path or os.path.join(self.dir, "orphand.sock")
        self.log_path = os.path.join(self.dir, "orphand.log")
        self.args = list(args)
        self.env = dict(os.environ if env is None else env)
        self.env.pop("LD_PRELOAD", None)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("LISTEN_FDS", None)
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc, self.pidfd = spawn([DAEMON, "--socket", self.socket, "--log-target=stderr",
                                       *self.args], stdout=self.log, stderr=self.log, env=self.env)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, f"orphand exited at start-up:\n{self.read_log()}")
            with contextlib.suppress(OSError):
                if self.ping():
                    return self
            time.sleep(0.01)
        fail(f"orphand did not answer PING within {TIMEOUT}s:\n{self.read_log()}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            signal.pidfd_send_signal(self.pidfd, signal.SIGTERM)
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        if os.path.exists(self.log_path):
            self.final_log = self.read_log()  # still readable once the directory is gone
        shutil.rmtree(self.dir, ignore_errors=True)

    def read_log(self):
        if not os.path.exists(self.log_path):
            return getattr(self, "final_log", "")
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, needle, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.read_log():
                return True
            time.sleep(0.02)
        return False

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(TIMEOUT)
        s.connect(self.socket)
        return s

    def ping(self):
        with self.connect() as s:
            rec = record(0x11223344, 0x55667788, PING)
            s.sendall(rec)
            return recv_exact(s, 12) == rec

    def send(self, data, fds=None):
        """connect, send, close: the legacy client pattern."""
        with self.connect() as s:
            if fds:
                socket.send_fds(s, [data], fds)
            else:
                s.sendall(data)

    def client(self):
        return Client(self.connect())

    def ctl(self, *args, check_rc=True, **kw):
        r = subprocess.run([CTL, "--socket", self.socket, *args], capture_output=True, text=True,
                           timeout=TIMEOUT, **kw)
        if check_rc and r.returncode != 0:
            fail(f"orphanctl {' '.join(args)} exited {r.returncode}: {r.stderr}")
        return r

    def bindings(self):
        with self.client() as c:
            return c.list()

    def wait_until(self, pred, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.01)
        fail(f"timed out waiting for {what}\n--- daemon log ---\n{self.read_log()}")


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


class Client:
    """An acknowledged-mode (v1) connection."""

    def __init__(self, sock):
        self.sock = sock
        self.seq = 0
        sock.sendall(record(HELLO_MAGIC, 1, HELLO))
        r = parse_reply(recv_exact(sock, 32))
        check(r["error"] == 0 and r["count"] >= 1, f"HELLO refused: {r}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def call(self, parent, child, action, fds=None, **kw):
        self.seq += 1
        data = request(parent, child, action, seq=self.seq, **kw)
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)
        r = parse_reply(recv_exact(self.sock, 32))
        check(r["seq"] == self.seq, f"reply out of order: {r}")
        return r

    def register(self, parent, child, fds=None, sig=None, grace_ms=None):
        flags = 0
        kw = {}
        if sig is not None:
            flags |= FLAG_SIGNAL
            kw["sig"] = sig
        if grace_ms is not None:
            flags |= FLAG_GRACE
            kw["grace_ms"] = grace_ms
        return self.call(parent, child, REGISTER, fds=fds, flags=flags, **kw)

    def unregister(self, parent, child):
        return self.call(parent, child, UNREGISTER)

    def list(self):
        r = self.call(0, 0, LIST)
        check(r["error"] == 0, f"LIST failed: {r}")
        out = []
        for _ in range(r["count"]):
            d = recv_exact(self.sock, 64)
            ppid, cpid, uid, rpid, sig, grace, age = struct.unpack("=IIIIiIQ", d[:32])
            out.append({"parent": ppid, "child": cpid, "uid": uid, "registrant": rpid,
                        "signal": sig, "grace_ms": grace, "age_ms": age,
                        "parent_comm": d[32:48].split(b"\0")[0].decode(errors="replace"),
                        "child_comm": d[48:64].split(b"\0")[0].decode(errors="replace")})
        return out

    def status(self):
        r = self.call(0, 0, STATUS)
        check(r["error"] == 0, f"STATUS failed: {r}")
        d = recv_exact(self.sock, 80)
        version = d[:16].split(b"\0")[0].decode()
        uptime, kills, parents, children, bindings, conns, features, dpid = struct.unpack(
            "=QQIIIIII", d[16:56])
        return {"version": version, "uptime_ms": uptime, "kills": kills, "parents": parents,
                "children": children, "bindings": bindings, "connections": conns,
                "features": features, "pid": dpid}


def run(main):
    """Run a test's main(), always cleaning up tracked processes; exit 1 on failure."""
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        cleanup()
        sys.exit(1)
    finally:
        cleanup()
    print("PASS")
