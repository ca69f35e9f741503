# SPDX-License-Identifier: MIT
"""liborphand's calls (through ctypes) against a private daemon, with real processes: bind by
pid, by pidfd and to another parent, unbind, list, status, ping, orphand_bind_child, the socket
rule, and the errors with their reasons."""

import ctypes
import errno
import os
import signal
import socket
import tempfile

import orphtest as ot

LIB = os.environ["ORPHAND_LIB"]

REASON = {"OK": 0, "PARENT_ALREADY_DEAD": 1, "ALREADY_BOUND": 2, "BAD_PID": 4,
          "SAME_PROCESS": 5, "PROTECTED_TARGET": 6, "NO_SUCH_PROCESS": 7, "NOT_PIDFD": 9,
          "BAD_POLICY": 17, "NOT_BOUND": 18, "CLIENT": 0x100}
FLAG_SIGNAL, FLAG_GRACE = 1, 2


class Policy(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32), ("signal", ctypes.c_int),
                ("grace_ms", ctypes.c_uint32)]


class BindingInfo(ctypes.Structure):
    _fields_ = [("parent_pid", ctypes.c_uint32), ("child_pid", ctypes.c_uint32),
                ("registrant_uid", ctypes.c_uint32), ("registrant_pid", ctypes.c_uint32),
                ("signal", ctypes.c_int32), ("grace_ms", ctypes.c_uint32),
                ("age_ms", ctypes.c_uint64), ("parent_comm", ctypes.c_char * 16),
                ("child_comm", ctypes.c_char * 16)]


class StatusInfo(ctypes.Structure):
    _fields_ = [("version", ctypes.c_char * 16), ("uptime_ms", ctypes.c_uint64),
                ("kills", ctypes.c_uint64), ("parents", ctypes.c_uint32),
                ("children", ctypes.c_uint32), ("bindings", ctypes.c_uint32),
                ("connections", ctypes.c_uint32), ("features", ctypes.c_uint32),
                ("daemon_pid", ctypes.c_uint32), ("default_signal", ctypes.c_uint32),
                ("default_grace_ms", ctypes.c_uint32), ("scope", ctypes.c_uint32),
                ("reserved", ctypes.c_uint32 * 3)]


def load():
    lib = ctypes.CDLL(LIB)
    conn_p, u32p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)
    sig = {
        "orphand_connect": (ctypes.c_int, [ctypes.POINTER(conn_p), ctypes.c_char_p, ctypes.c_int]),
        "orphand_close": (None, [conn_p]),
        "orphand_bind": (ctypes.c_int, [conn_p, ctypes.c_int, ctypes.c_int,
                                        ctypes.POINTER(Policy), u32p]),
        "orphand_bind_pidfd": (ctypes.c_int, [conn_p, ctypes.c_int, ctypes.c_int,
                                              ctypes.POINTER(Policy), u32p]),
        "orphand_unbind": (ctypes.c_int, [conn_p, ctypes.c_int, ctypes.c_int, u32p]),
        "orphand_list": (ctypes.c_int, [conn_p, ctypes.POINTER(ctypes.POINTER(BindingInfo)),
                                        ctypes.POINTER(ctypes.c_size_t), u32p]),
        "orphand_list_free": (None, [ctypes.POINTER(BindingInfo)]),
        "orphand_status": (ctypes.c_int, [conn_p, ctypes.POINTER(StatusInfo), u32p]),
        "orphand_ping": (ctypes.c_int, [conn_p, u32p]),
        "orphand_bind_child": (ctypes.c_int, [ctypes.c_int, u32p]),
        "orphand_socket_path": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p,
                                               ctypes.c_size_t]),
        "orphand_reason_text": (ctypes.c_char_p, [ctypes.c_uint32]),
    }
    for name, (res, args) in sig.items():
        getattr(lib, name).restype = res
        getattr(lib, name).argtypes = args
    return lib


L = load()


class Conn:
    """An orphand_conn, with each call returning (error, reason)."""

    def __init__(self, path, timeout_ms=0):
        self.c = ctypes.c_void_p()
        self.error = L.orphand_connect(ctypes.byref(self.c), path.encode() if path else None,
                                       timeout_ms)

    def __enter__(self):
        ot.check(self.error == 0, f"orphand_connect: {os.strerror(-self.error)}")
        return self

    def __exit__(self, *exc):
        L.orphand_close(self.c)

    def _call(self, fn, *args):
        reason = ctypes.c_uint32(0xdead)
        e = fn(self.c, *args, ctypes.byref(reason))
        return e, reason.value

    def bind(self, parent, child, policy=None):
        return self._call(L.orphand_bind, parent, child, policy and ctypes.byref(policy))

    def bind_pidfd(self, parent_fd, child_fd, policy=None):
        return self._call(L.orphand_bind_pidfd, parent_fd, child_fd,
                          policy and ctypes.byref(policy))

    def unbind(self, parent, child):
        return self._call(L.orphand_unbind, parent, child)

    def ping(self):
        return self._call(L.orphand_ping)

    def list(self):
        arr = ctypes.POINTER(BindingInfo)()
        n = ctypes.c_size_t(99)
        e, reason = self._call(L.orphand_list, ctypes.byref(arr), ctypes.byref(n))
        out = [(arr[i].parent_pid, arr[i].child_pid, arr[i].signal, arr[i].grace_ms,
                arr[i].child_comm.decode()) for i in range(n.value)]
        ot.check(e == 0 or (not arr and n.value == 0), "a failed list left an array")
        L.orphand_list_free(arr)
        return e, reason, out

    def status(self):
        s = StatusInfo()
        e, reason = self._call(L.orphand_status, ctypes.byref(s))
        return e, reason, s


def expect(got, error, reason, what):
    ot.check(got == (error, REASON[reason]),
             f"{what}: got {got}, expected ({error}, {reason}={REASON[reason]})")


def pairs(c):
    e, _, out = c.list()
    ot.check(e == 0, f"list failed: {e}")
    return {(p, ch) for p, ch, *_ in out}


def dead_pid():
    """A pid that existed a moment ago and is reaped now."""
    p, _ = ot.spawn(["true"])
    p.wait()
    return p.pid


def socket_path(path=None, size=256):
    buf = ctypes.create_string_buffer(size)
    n = L.orphand_socket_path(path.encode() if path else None, buf, size)
    return n, buf.value.decode() if n >= 0 else None


def check_socket_rule():
    os.environ.pop("ORPHAND_SOCKET", None)
    ot.check(socket_path("/x/y.sock") == (9, "/x/y.sock"), "explicit path not used")
    if os.geteuid() == 0:  # root ignores XDG_RUNTIME_DIR
        ot.check(socket_path() == (25, "/run/orphand/orphand.sock"), f"default {socket_path()}")
    os.environ["ORPHAND_SOCKET"] = "/env/orphand.sock"
    ot.check(socket_path()[1] == "/env/orphand.sock", "ORPHAND_SOCKET not used")
    ot.check(socket_path("/x/y.sock")[1] == "/x/y.sock", "explicit path does not win over env")
    ot.check(socket_path("")[1] == "/env/orphand.sock", "an empty path is not 'no path'")
    ot.check(socket_path(size=10)[0] == -errno.ENAMETOOLONG, "no ENAMETOOLONG")
    os.environ["ORPHAND_SOCKET"] = ""
    ot.check(socket_path()[1] in ("/run/orphand/orphand.sock",
                                  f"{os.environ.get('XDG_RUNTIME_DIR')}/orphand.sock"),
             "empty ORPHAND_SOCKET not ignored")
    os.environ.pop("ORPHAND_SOCKET")


def main():
    check_socket_rule()
    for r, text in ((0, "ok"), (7, "no such process"), (0x100, "failed in the client"),
                    (12345, "unknown reason")):
        ot.check(L.orphand_reason_text(r).decode().startswith(text), f"reason text {r}")

    missing = os.path.join(tempfile.gettempdir(), "orphand-lib-no-such.sock")
    ot.check(Conn(missing).error == -errno.ENOENT, "connect to nowhere is not ENOENT")

    # A listener that never answers HELLO, as a daemon too old for acknowledged mode.
    with tempfile.TemporaryDirectory(prefix="orphand-lib-") as tmp:
        mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mute.bind(os.path.join(tmp, "mute.sock"))
        mute.listen(4)
        c = Conn(os.path.join(tmp, "mute.sock"), timeout_ms=200)
        ot.check(c.error == -errno.ETIMEDOUT, f"mute daemon: {c.error}, not ETIMEDOUT")
        mute.close()

    with ot.Daemon() as d:
        before = set(os.listdir("/proc/self/fd"))
        with Conn(d.socket) as c:
            for fd in set(os.listdir("/proc/self/fd")) - before:
                if os.path.exists(f"/proc/self/fd/{fd}"):
                    ot.check(not os.get_inheritable(int(fd)), f"fd {fd} is not close-on-exec")
            expect(c.ping(), 0, "OK", "ping")

            # By pid, to another parent: the child dies with it.
            parent, pfd = ot.sleeper()
            child, cfd = ot.sleeper()
            expect(c.bind(parent.pid, child.pid), 0, "OK", "bind by pid")
            ot.check((parent.pid, child.pid) in pairs(c), "binding not listed")
            expect(c.bind(parent.pid, child.pid), 0, "ALREADY_BOUND", "bind twice")
            signal.pidfd_send_signal(pfd, signal.SIGKILL)
            ot.check(ot.wait_pidfd(cfd), f"child outlived its parent\n{d.read_log()}")
            ot.reap(parent)
            ot.reap(child)

            # To the caller, with a policy; then unbound.
            child, cfd = ot.sleeper()
            policy = Policy(FLAG_SIGNAL | FLAG_GRACE, signal.SIGINT, 1500)
            expect(c.bind(0, child.pid, policy), 0, "OK", "bind to self")
            e, _, out = c.list()
            mine = [b for b in out if b[:2] == (os.getpid(), child.pid)]
            ot.check(mine and mine[0][2:4] == (signal.SIGINT, 1500) and mine[0][4] == "sleep",
                     f"policy not listed: {out}")
            expect(c.unbind(0, child.pid), 0, "OK", "unbind")
            expect(c.unbind(0, child.pid), 0, "NOT_BOUND", "unbind again")
            ot.check((os.getpid(), child.pid) not in pairs(c), "unbound binding listed")

            # By pidfd, to another parent and to the caller.
            parent, pfd = ot.sleeper()
            expect(c.bind_pidfd(pfd, cfd), 0, "OK", "bind by pidfd")
            ot.check((parent.pid, child.pid) in pairs(c), "pidfd binding not listed")
            expect(c.bind_pidfd(-1, cfd), 0, "OK", "bind by pidfd to self")
            ot.check((os.getpid(), child.pid) in pairs(c), "pidfd binding to self not listed")
            expect(c.unbind(0, child.pid), 0, "OK", "unbind the pidfd binding to self")
            signal.pidfd_send_signal(pfd, signal.SIGKILL)
            ot.check(ot.wait_pidfd(cfd), f"child outlived its pidfd parent\n{d.read_log()}")
            ot.reap(parent)
            ot.reap(child)

            # Errors and their reasons.
            child, cfd = ot.sleeper()
            r, w = os.pipe()
            expect(c.bind_pidfd(-1, r), -errno.EBADF, "NOT_PIDFD", "a pipe as pidfd")
            os.close(r)
            os.close(w)
            gone, gone_fd = ot.spawn(["true"])
            gone.wait()
            expect(c.bind_pidfd(gone_fd, cfd), -errno.ESRCH, "NO_SUCH_PROCESS", "reaped parent")
            expect(c.bind(0, dead_pid()), -errno.ESRCH, "NO_SUCH_PROCESS", "reaped child")
            expect(c.bind(0, -5), -errno.EINVAL, "BAD_PID", "negative child")
            expect(c.bind(child.pid, child.pid), -errno.EINVAL, "SAME_PROCESS", "same process")
            expect(c.bind(0, 1), -errno.EPERM, "PROTECTED_TARGET", "pid 1")
            expect(c.bind(0, child.pid, Policy(FLAG_SIGNAL, 99, 0)), -errno.EINVAL,
                   "BAD_POLICY", "signal 99")
            expect(c.bind(0, child.pid, Policy(0x80, 0, 0)), -errno.EINVAL, "BAD_POLICY",
                   "unknown flag")
            expect(c.bind(dead_pid(), child.pid), 0, "PARENT_ALREADY_DEAD", "dead parent")
            ot.check(ot.wait_pidfd(cfd), "child of a dead parent not killed")
            ot.reap(child)

            # Status.
            e, reason, s = c.status()
            ot.check(e == 0 and reason == 0 and s.daemon_pid == d.pid and
                     s.version.decode() and s.kills >= 2, f"status: {e} {reason} {s.kills}")

        # The one-call bind, by the socket rule (ORPHAND_SOCKET).
        child, cfd = ot.sleeper()
        os.environ["ORPHAND_SOCKET"] = d.socket
        reason = ctypes.c_uint32(0xdead)
        e = L.orphand_bind_child(child.pid, ctypes.byref(reason))
        ot.check((e, reason.value) == (0, 0), f"orphand_bind_child: {e} {reason.value}")
        with Conn(None) as c:
            ot.check((os.getpid(), child.pid) in pairs(c), "orphand_bind_child not listed")
            expect(c.unbind(0, child.pid), 0, "OK", "unbind orphand_bind_child's binding")
        del os.environ["ORPHAND_SOCKET"]
        e = L.orphand_bind_child(child.pid, ctypes.byref(reason))
        ot.check(reason.value == REASON["CLIENT"] and e < 0 or os.path.exists(
            "/run/orphand/orphand.sock"), f"bind_child with no daemon: {e} {reason.value}")

        # The daemon goes away under an open connection: an error, never SIGPIPE.
        c = Conn(d.socket)
        ot.check(c.error == 0, "connect")
        d.stop()
        old = signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        try:
            e, reason = c.ping()
            ot.check(e in (-errno.EPIPE, -errno.ECONNRESET) and reason == REASON["CLIENT"],
                     f"ping to a stopped daemon: {e} {reason}")
            expect(c.ping(), -errno.ENOTCONN, "CLIENT", "a call on a broken connection")
        finally:
            signal.signal(signal.SIGPIPE, old)
            L.orphand_close(c.c)
    print("bind by pid, by pidfd, to self and another parent, unbind, list, status, ping, "
          "orphand_bind_child, socket rule and errors with reasons: all as documented")


if __name__ == "__main__":
    ot.run(main)
