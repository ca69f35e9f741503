# SPDX-License-Identifier: MIT
"""liborphand's calls (through ctypes) against a private daemon, with real processes: bind by
pid, by pidfd and to another parent, unbind, list, status, ping, orphand_bind_child, the socket
rule, and the errors with their reasons; kill scopes through orphand_policy and orphand_list2,
and a caller built with the older 12-byte orphand_policy; pipelined requests
(orphand_send_request, orphand_receive_reply). Against fake daemons, the messages the library
sends and its handling of protocol versions 1 and 2 (orphand_protocol_version)."""

import ctypes
import errno
import os
import signal
import socket
import tempfile
import threading

import orphand
import orphtest as ot

LIB = os.environ["ORPHAND_LIB"]

REASON = {r.name: r for r in orphand.Reason}
FLAG_SIGNAL, FLAG_GRACE = orphand.FLAG_SIGNAL, orphand.FLAG_GRACE
POLICY_SCOPE = orphand.POLICY_SCOPE  # the library's flag: `scope` is set
SCOPES = {s.name.lower(): s for s in orphand.Scope}
PROTOCOL_VERSION = orphand.PROTOCOL_VERSION


class Policy(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32), ("signal", ctypes.c_int),
                ("grace_ms", ctypes.c_uint32), ("scope", ctypes.c_uint32)]


class OldPolicy(ctypes.Structure):
    """struct orphand_policy as liborphand 0.1 declared it, without `scope`."""
    _fields_ = [("flags", ctypes.c_uint32), ("signal", ctypes.c_int),
                ("grace_ms", ctypes.c_uint32)]


class BindingInfo(ctypes.Structure):
    _fields_ = [("parent_pid", ctypes.c_uint32), ("child_pid", ctypes.c_uint32),
                ("registrant_uid", ctypes.c_uint32), ("registrant_pid", ctypes.c_uint32),
                ("signal", ctypes.c_int32), ("grace_ms", ctypes.c_uint32),
                ("age_ms", ctypes.c_uint64), ("parent_comm", ctypes.c_char * 16),
                ("child_comm", ctypes.c_char * 16)]


class BindingInfo2(ctypes.Structure):
    _fields_ = [("info", BindingInfo), ("scope", ctypes.c_uint32),
                ("reserved", ctypes.c_uint32 * 3)]


class Request(ctypes.Structure):
    _fields_ = [("parent", ctypes.c_uint32), ("child", ctypes.c_uint32),
                ("action", ctypes.c_uint32), ("seq", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("signal", ctypes.c_int32),
                ("grace_ms", ctypes.c_uint32), ("scope", ctypes.c_uint32)]


class Reply(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint32), ("action", ctypes.c_uint32),
                ("error", ctypes.c_int32), ("reason", ctypes.c_uint32),
                ("count", ctypes.c_uint32), ("reserved", ctypes.c_uint32 * 3)]


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
        "orphand_list2": (ctypes.c_int, [conn_p, ctypes.POINTER(ctypes.POINTER(BindingInfo2)),
                                         ctypes.POINTER(ctypes.c_size_t), u32p]),
        "orphand_list2_free": (None, [ctypes.POINTER(BindingInfo2)]),
        "orphand_status": (ctypes.c_int, [conn_p, ctypes.POINTER(StatusInfo), u32p]),
        "orphand_ping": (ctypes.c_int, [conn_p, u32p]),
        "orphand_bind_child": (ctypes.c_int, [ctypes.c_int, u32p]),
        "orphand_socket_path": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p,
                                               ctypes.c_size_t]),
        "orphand_reason_text": (ctypes.c_char_p, [ctypes.c_uint32]),
        "orphand_protocol_version": (ctypes.c_uint32, [conn_p]),
        "orphand_send_request": (ctypes.c_int, [conn_p, ctypes.POINTER(Request),
                                                ctypes.POINTER(ctypes.c_int), ctypes.c_size_t]),
        "orphand_receive_reply": (ctypes.c_int, [conn_p, ctypes.POINTER(Reply), u32p]),
    }
    for name, (res, args) in sig.items():
        getattr(lib, name).restype = res
        getattr(lib, name).argtypes = args
    return lib


L = load()
# The ctypes views of liborphand's structs have the wire's sizes (test_python_wire.py checks
# the module's layouts against the header).
for _ct, _wire in ((BindingInfo, orphand.BindingInfo), (BindingInfo2, orphand.BindingInfo2),
                   (StatusInfo, orphand.StatusInfo)):
    assert ctypes.sizeof(_ct) == orphand.sizeof(_wire), _ct


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

    def list2(self):
        """(error, reason, [(parent, child, signal, grace_ms, child_comm, scope, reserved)])."""
        arr = ctypes.POINTER(BindingInfo2)()
        n = ctypes.c_size_t(99)
        e, reason = self._call(L.orphand_list2, ctypes.byref(arr), ctypes.byref(n))
        out = []
        for i in range(n.value):
            b = arr[i].info
            out.append((b.parent_pid, b.child_pid, b.signal, b.grace_ms, b.child_comm.decode(),
                        arr[i].scope, tuple(arr[i].reserved)))
        ot.check(e == 0 or (not arr and n.value == 0), "a failed list2 left an array")
        L.orphand_list2_free(arr)
        return e, reason, out

    def status(self):
        s = StatusInfo()
        e, reason = self._call(L.orphand_status, ctypes.byref(s))
        return e, reason, s

    def version(self):
        return L.orphand_protocol_version(self.c)

    def send(self, request, fds=()):
        """orphand_send_request: its result; request.seq is set by the library."""
        arr = (ctypes.c_int * max(1, len(fds)))(*fds)
        return L.orphand_send_request(self.c, ctypes.byref(request), arr, len(fds))

    def receive(self):
        """orphand_receive_reply: (error, reason, reply)."""
        r = Reply()
        e, reason = self._call(L.orphand_receive_reply, ctypes.byref(r))
        return e, reason, r


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


def scope_of(c, parent, child):
    """The scope orphand_list2 gives the binding (parent, child), or None if it is not listed."""
    e, _, out = c.list2()
    ot.check(e == 0, f"list2 failed: {e}")
    found = [b[5] for b in out if b[:2] == (parent, child)]
    return found[0] if found else None


def guarded_old_policy(flags, sig, grace_ms):
    """A liborphand 0.1 policy (12 bytes) that ends where readable memory ends, as a pointer to
    the current struct: a library that read `scope` without ORPHAND_POLICY_SCOPE would fault."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = os.sysconf("SC_PAGE_SIZE")
    prot_none, prot_rw, map_private_anon = 0, 3, 0x22
    base = libc.mmap(None, 2 * page, prot_rw, map_private_anon, -1, 0)
    ot.check(base not in (None, ctypes.c_void_p(-1).value), "mmap failed")
    ot.check(libc.mprotect(base + page, page, prot_none) == 0, "mprotect failed")
    old = OldPolicy.from_address(base + page - ctypes.sizeof(OldPolicy))
    old.flags, old.signal, old.grace_ms = flags, sig, grace_ms
    return ctypes.cast(ctypes.addressof(old), ctypes.POINTER(Policy))


def check_scopes(c):
    """Each scope through orphand_policy, as orphand_list2 lists it; the errors; the old struct."""
    for name, scope in SCOPES.items():
        # Its own session and process group: whatever the scope, a kill could reach nothing of
        # the test's.
        child, _ = ot.sleeper(start_new_session=True)
        got = c.bind(0, child.pid, Policy(POLICY_SCOPE, 0, 0, scope))
        if name == "cgroup" and got != (0, REASON["OK"]):
            # The child shares the test's cgroup, which holds the parent (this process): the
            # daemon refuses that, or has no cgroup v2 to work with. Either way the scope
            # reached it, unlike an unknown one (BAD_POLICY).
            ot.check(got in ((-errno.EPERM, REASON["SCOPE_REFUSED"]),
                             (-errno.EOPNOTSUPP, REASON["SCOPE_UNSUPPORTED"])),
                     f"bind with scope cgroup: {got}")
            ot.check(scope_of(c, os.getpid(), child.pid) is None, "a refused scope was bound")
            continue
        expect(got, 0, "OK", f"bind with scope {name}")
        listed = scope_of(c, os.getpid(), child.pid)
        ot.check(listed == scope, f"scope {name} ({scope}) listed by orphand_list2 as {listed}")
        # orphand_list, on the same version 2 connection, still gives the 64-byte records.
        ot.check((os.getpid(), child.pid) in pairs(c), f"scope {name}: orphand_list lost it")
        expect(c.unbind(0, child.pid), 0, "OK", f"unbind the {name} binding")

    child, cfd = ot.sleeper(start_new_session=True)
    for bad in (len(SCOPES), 0xFFFFFFFF):
        expect(c.bind(0, child.pid, Policy(POLICY_SCOPE, 0, 0, bad)), -errno.EINVAL,
               "BAD_POLICY", f"scope {bad}")
    ot.check(scope_of(c, os.getpid(), child.pid) is None, "a bad scope was bound")
    # `scope` without ORPHAND_POLICY_SCOPE is not read: scope process.
    expect(c.bind(0, child.pid, Policy(FLAG_SIGNAL, signal.SIGINT, 0, SCOPES["tree"])), 0, "OK",
           "scope without its flag")
    ot.check(scope_of(c, os.getpid(), child.pid) == SCOPES["process"], "unflagged scope used")
    expect(c.unbind(0, child.pid), 0, "OK", "unbind")

    # A program built against liborphand 0.1 passes 12 bytes, followed here by a page the
    # library may not read: it binds with the daemon's default scope, process.
    old = guarded_old_policy(FLAG_SIGNAL | FLAG_GRACE, signal.SIGINT, 700)
    got = c._call(L.orphand_bind, 0, child.pid, old)
    expect(got, 0, "OK", "bind with a 0.1 orphand_policy")
    e, _, out = c.list2()
    mine = [b for b in out if b[:2] == (os.getpid(), child.pid)]
    ot.check(mine and mine[0][2:4] == (signal.SIGINT, 700) and mine[0][5] == SCOPES["process"]
             and mine[0][6] == (0, 0, 0), f"0.1 policy listed as {mine}")
    expect(c.unbind(0, child.pid), 0, "OK", "unbind the 0.1 policy's binding")
    signal.pidfd_send_signal(cfd, signal.SIGKILL)
    ot.reap(child)


def reply(seq, action, error=0, reason=0, count=0):
    return orphand.Reply(seq, action, error, reason, count).pack()


def info(i, scope=None):
    """The i-th fake binding, as a v1 record (scope None) or a v2 record."""
    v1 = orphand.BindingInfo(1000 + i, 2000 + i, 7, 3000 + i, 1 + i % 64, 10 * i, 123456789 + i,
                             f"parent{i}", f"child{i}")
    if scope is None:
        return v1.pack()
    return orphand.BindingInfo2(v1, scope, (0xA0 + i, 0, 0)).pack()


class FakeDaemon:
    """Answers one connection as a daemon of protocol `version` would: HELLO, then LIST with
    `records` and any other request with error 0. Keeps what it was sent."""

    def __init__(self, tmp, version, records=(), record_scopes=False):
        self.path = os.path.join(tmp, f"fake-{version}-{len(records)}.sock")
        self.version, self.records, self.record_scopes = version, records, record_scopes
        self.hello, self.requests = None, []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(1)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.srv.accept()
        with conn:
            conn.settimeout(ot.TIMEOUT)
            self.hello = orphand.unpack(orphand.Record, ot.recv_exact(
                conn, orphand.sizeof(orphand.Record)))
            conn.sendall(reply(0, ot.HELLO, count=self.version))
            while True:
                size = orphand.sizeof(orphand.Request)
                data, fds, _, _ = socket.recv_fds(conn, size, orphand.MAX_FDS + 2)
                for fd in fds:
                    os.close(fd)
                if len(data) < size:
                    return
                q = orphand.unpack(orphand.Request, data)
                self.requests.append((q, len(fds)))
                if q[2] == ot.LIST:
                    conn.sendall(reply(q[3], q[2], count=len(self.records)) +
                                 b"".join(self.records))
                else:
                    conn.sendall(reply(q[3], q[2]))

    def close(self):
        self.thread.join(ot.TIMEOUT)
        self.srv.close()


def check_wire(tmp):
    """The library against fake daemons: what it sends, and LIST in both protocol versions."""
    want = [(1000 + i, 2000 + i, 1 + i % 64, 10 * i, f"child{i}") for i in range(5)]
    for version in (1, 2):
        scopes = [SCOPES["tree"], SCOPES["cgroup"], 0, 1, 2]
        records = [info(i, scopes[i] if version == 2 else None) for i in range(5)]
        fake = FakeDaemon(tmp, version, records)
        with Conn(fake.path) as c:
            ot.check(fake.hello == (ot.HELLO_MAGIC, PROTOCOL_VERSION, ot.HELLO),
                     f"HELLO sent as {fake.hello}")
            ot.check(c.version() == version, f"orphand_protocol_version {c.version()}, "
                     f"the daemon answered {version}")
            e, _, out = c.list()
            ot.check(e == 0 and out == want, f"v{version} orphand_list: {e} {out}")
            e, _, out = c.list2()
            got = [(b[:5], b[5], b[6]) for b in out]
            expected = [(w, scopes[i] if version == 2 else SCOPES["process"],
                         (0xA0 + i, 0, 0) if version == 2
                         else (0, 0, 0)) for i, w in enumerate(want)]
            ot.check(e == 0 and got == expected, f"v{version} orphand_list2: {e} {got}")
            # The library's flag is not sent; the scope is.
            child, _ = ot.sleeper()
            expect(c.bind(0, child.pid, Policy(POLICY_SCOPE | FLAG_SIGNAL, signal.SIGINT, 0,
                                               SCOPES["tree"])), 0, "OK", "bind to a fake")
            expect(c.bind(0, child.pid, Policy(FLAG_GRACE, 0, 5, SCOPES["tree"])), 0, "OK",
                   "bind to a fake")
        fake.close()
        registers = [(q[4:], nfds) for q, nfds in fake.requests if q[2] == ot.REGISTER]
        ot.check(registers == [((FLAG_SIGNAL, signal.SIGINT, 0, SCOPES["tree"]), 1),
                               ((FLAG_GRACE, 0, 5, 0), 1)],
                 f"v{version}: REGISTER sent as (flags, signal, grace_ms, scope), fds: "
                 f"{registers}")

    # A daemon that answers a version above the one asked for is out of step.
    fake = FakeDaemon(tmp, PROTOCOL_VERSION + 1)
    ot.check(Conn(fake.path).error == -errno.EPROTO, "HELLO answered with a higher version")
    fake.close()


def check_pipeline(c):
    """A batch of requests sent before any reply is read, then the replies in order."""
    parent, pfd = ot.sleeper()
    kids = [ot.sleeper() for _ in range(3)]
    sent = []
    for i, (kid, kfd) in enumerate(kids):
        q = Request(parent.pid, kid.pid, ot.REGISTER, 0xdead, FLAG_SIGNAL | FLAG_GRACE,
                    signal.SIGKILL, 0xffffffff, 0)
        # The first with both pidfds, the child's first; the others by pid alone.
        e = c.send(q, (kfd, pfd) if i == 0 else ())
        ot.check(e == 0, f"orphand_send_request REGISTER {i}: {e}")
        sent.append(q.seq)
    q = Request(0, 0, ot.PING)
    ot.check(c.send(q) == 0, "orphand_send_request PING")
    sent.append(q.seq)
    q = Request(os.getpid(), kids[0][0].pid, ot.UNREGISTER)
    ot.check(c.send(q) == 0, "orphand_send_request UNREGISTER")
    sent.append(q.seq)
    ot.check(sent == list(range(sent[0], sent[0] + 5)), f"seqs set {sent}")
    expect(c.ping(), -errno.EBUSY, "CLIENT", "a call while replies are owed")
    ot.check(c.send(Request(0, 0, ot.LIST)) == -errno.EINVAL, "LIST pipelined")
    ot.check(c.send(Request(parent.pid, kids[0][0].pid, ot.REGISTER), (pfd, pfd, pfd))
             == -errno.EINVAL, "three fds sent")
    got = [c.receive() for _ in sent]
    ot.check([(e, reason, r.seq) for e, reason, r in got] ==
             [(0, 0, seq) for seq in sent[:4]] + [(0, REASON["NOT_BOUND"], sent[4])],
             f"pipelined replies {[(e, reason, r.seq, r.action) for e, reason, r in got]}")
    expect(c.receive()[:2], -errno.ENOMSG, "CLIENT", "a reply that is not owed")
    ot.check({(parent.pid, kid.pid) for kid, _ in kids} <= pairs(c), "pipelined bindings")
    signal.pidfd_send_signal(pfd, signal.SIGKILL)
    for kid, kfd in kids:
        ot.check(ot.wait_pidfd(kfd), "a pipelined binding's child outlived its parent")
        ot.reap(kid)
    ot.reap(parent)


def main():
    check_socket_rule()
    for r, text in ((REASON["OK"], "ok"), (REASON["NO_SUCH_PROCESS"], "no such process"),
                    (REASON["CLIENT"], "failed in the client"),
                    (12345, "unknown reason")):
        ot.check(L.orphand_reason_text(r).decode().startswith(text), f"reason text {r}")

    missing = os.path.join(tempfile.gettempdir(), "orphand-lib-no-such.sock")
    ot.check(Conn(missing).error == -errno.ENOENT, "connect to nowhere is not ENOENT")

    # A listener that never answers HELLO, as a daemon too old for acknowledged mode.
    with tempfile.TemporaryDirectory(prefix="orphand-lib-") as tmp:
        check_wire(tmp)
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
            ot.check(c.version() == PROTOCOL_VERSION, f"protocol version {c.version()}")

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

            check_scopes(c)
            check_pipeline(c)

            # Status.
            e, reason, s = c.status()
            ot.check(e == 0 and reason == REASON["OK"] and s.daemon_pid == d.pid and
                     s.version.decode() and s.kills >= 2, f"status: {e} {reason} {s.kills}")

        # The one-call bind, by the socket rule (ORPHAND_SOCKET).
        child, cfd = ot.sleeper()
        os.environ["ORPHAND_SOCKET"] = d.socket
        reason = ctypes.c_uint32(0xdead)
        e = L.orphand_bind_child(child.pid, ctypes.byref(reason))
        ot.check((e, reason.value) == (0, REASON["OK"]), f"orphand_bind_child: {e} {reason.value}")
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
    print("bind by pid, by pidfd, to self and another parent, with each scope and with a 0.1 "
          "policy, unbind, list, list2, status, ping, orphand_bind_child, socket rule, errors "
          "with reasons, pipelined requests, and protocol versions 1 and 2: all as documented")


if __name__ == "__main__":
    ot.run(main)
