# SPDX-License-Identifier: MIT
"""Shared helpers for orphand's Python tests: a private daemon, real processes, outcome checks.

Every process a test starts is tracked and ended by pid (through a pidfd) when the test ends, so
nothing outlives the test. Liveness is checked through pidfds and /proc/PID/stat: a zombie counts
as dead, because PID 1 on a test machine may not reap.
"""

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import orphand

BUILD = os.environ.get("ORPHAND_BUILD_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "build"))
DAEMON = os.path.join(BUILD, "daemon", "orphand")
CTL = os.path.join(BUILD, "ctl", "orphanctl")
SHIM = os.path.join(BUILD, "shim", "orphand-forkwait.so")

# The wire format is the orphand module's (python/orphand.py); these names are the tests' own.
REGISTER, UNREGISTER, PING, HELLO, LIST, STATUS = orphand.Action
HELLO_MAGIC = orphand.HELLO_MAGIC
FLAG_SIGNAL, FLAG_GRACE = orphand.FLAG_SIGNAL, orphand.FLAG_GRACE
GRACE_NEVER = orphand.GRACE_NEVER
Reason = orphand.Reason
Scope = orphand.Scope
recv_exact = orphand.recv_exact
RECORD_SIZE, REPLY_SIZE = orphand.sizeof(orphand.Record), orphand.sizeof(orphand.Reply)

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
    """A legacy record's bytes (any integers, cut to 32 bits)."""
    return orphand.Record(parent, child, action).pack()


def request(parent, child, action, seq=0, flags=0, sig=0, grace_ms=0, scope=0):
    """An acknowledged-mode request's bytes (any integers, cut to their field's width)."""
    return orphand.Request(parent, child, action, seq, flags, sig, grace_ms, scope).pack()


def reply_dict(r):
    """A Reply as the dict the tests check: seq, action, error, reason, count."""
    return {k: v for k, v in r._asdict().items() if k != "reserved"}


def parse_reply(data):
    return reply_dict(orphand.unpack(orphand.Reply, data))


def recv_reply(s):
    """The next reply on socket s, as a dict."""
    return parse_reply(recv_exact(s, REPLY_SIZE))


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

    @contextlib.contextmanager
    def stopped(self):
        """The daemon stopped (SIGSTOP) for the body, as a busy daemon would be late, and
        continued (SIGCONT) after it, whether or not the body raised."""
        signal.pidfd_send_signal(self.pidfd, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + TIMEOUT
            while proc_state(self.pid) != "T":
                check(time.monotonic() < deadline, "orphand did not stop")
                time.sleep(0.001)
            yield
        finally:
            signal.pidfd_send_signal(self.pidfd, signal.SIGCONT)

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
            return recv_exact(s, RECORD_SIZE) == rec

    def send(self, data, fds=None):
        """connect, send, close: the legacy client pattern."""
        with self.connect() as s:
            orphand.send_message(s, data, fds or ())

    def client(self, version=1):
        return Client(self.socket, version)

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


class Client:
    """An acknowledged-mode connection (protocol version 1 unless asked for another) on the
    orphand module's Connection, answering with dicts. Refusals are returned, not raised."""

    def __init__(self, path, version=1):
        self.conn = orphand.Connection(path, TIMEOUT, version)
        self.sock = self.conn.sock
        check(self.conn.version == version, f"HELLO version {version} answered with "
              f"{self.conn.version}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()

    @property
    def seq(self):
        """The seq of the last request; a test that sends requests itself advances it."""
        return self.conn.seq

    @seq.setter
    def seq(self, value):
        self.conn.seq = value

    def call(self, parent, child, action, fds=None, flags=0, sig=0, grace_ms=0, scope=0):
        return reply_dict(self.conn.call(action, parent, child, flags=flags, signal=sig,
                                         grace_ms=grace_ms, scope=scope, fds=fds or ()))

    def register(self, parent, child, fds=None, sig=None, grace_ms=None, scope=0):
        flags = (FLAG_SIGNAL if sig is not None else 0) | (FLAG_GRACE if grace_ms is not None
                                                           else 0)
        return self.call(parent, child, REGISTER, fds=fds, flags=flags, sig=sig or 0,
                         grace_ms=grace_ms or 0, scope=scope)

    def unregister(self, parent, child):
        return self.call(parent, child, UNREGISTER)

    def list(self):
        """Each binding as a dict; on a version 2 connection with its scope and reserved words."""
        r = self.call(0, 0, LIST)
        check(r["error"] == 0, f"LIST failed: {r}")
        out = []
        for _ in range(r["count"]):
            if self.conn.version >= 2:
                b2 = orphand.unpack(orphand.BindingInfo2,
                                    self.conn.recv(orphand.sizeof(orphand.BindingInfo2)))
                b, extra = b2.info, {"scope": b2.scope, "reserved": list(b2.reserved)}
            else:
                b = orphand.unpack(orphand.BindingInfo,
                                   self.conn.recv(orphand.sizeof(orphand.BindingInfo)))
                extra = {}
            out.append({"parent": b.parent_pid, "child": b.child_pid, "uid": b.registrant_uid,
                        "registrant": b.registrant_pid, "signal": b.signal,
                        "grace_ms": b.grace_ms, "age_ms": b.age_ms,
                        "parent_comm": b.parent_comm, "child_comm": b.child_comm, **extra})
        return out

    def status(self):
        r = self.call(0, 0, STATUS)
        check(r["error"] == 0, f"STATUS failed: {r}")
        s = orphand.unpack(orphand.StatusInfo, self.conn.recv(orphand.sizeof(orphand.StatusInfo)))
        out = s._asdict()
        out["pid"] = s.daemon_pid
        return out


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
