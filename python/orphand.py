# SPDX-License-Identifier: MIT
"""orphand's client for Python: bind child processes to their parent, so that orphand kills them
when the parent dies, however it dies.

The same operations as liborphand (orphand(3)), in pure Python over the standard library, and the
Python definition of the wire format of orphand-protocol(7). Every number and every message
layout here is the one of <orphand/orphand.h>; the test suite (tests/lib) checks each against the
C header.

    import subprocess, orphand
    child = subprocess.Popen(["sleep", "600"])
    orphand.bind_popen(child)           # killed by orphand when this process dies

    with orphand.Connection() as conn:  # acknowledged mode, by the one socket rule
        conn.bind(child.pid, signal=2, grace_ms=2000, scope=orphand.Scope.TREE)
        for b in conn.list2():
            print(b.info.parent_pid, b.info.child_pid, orphand.Scope(b.scope).name)

Errors raise `orphand.Error`, an OSError that carries the errno (positive, as in Python; the C
library returns it negated) and the protocol's reason. Sockets are close-on-exec, every send is
MSG_NOSIGNAL (a daemon that went away is an error, never a SIGPIPE), and every wait for the daemon
is bounded by the connection's timeout. There is no global state: a connection belongs to the
process that opened it and is used by one thread at a time.

The lower layer (the message tuples with pack() and unpack(), send_message() with SCM_RIGHTS,
recv_exact(), Connection.send() and Connection.recv_reply()) is public for programs and tests that
need to speak the protocol themselves. Its packers reduce each integer to its field's width, as
the wire carries it, so they can also build the malformed messages a robustness test sends.
"""

from __future__ import annotations

import array
import enum
import errno as _errno
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "Action", "Reason", "Scope", "Feature", "StatusScope", "Error",
    "Record", "Request", "Reply", "BindingInfo", "BindingInfo2", "StatusInfo",
    "Connection", "socket_path", "open_socket", "connect", "bind_child", "bind_popen",
    "reason_text", "pidfd_pid", "send_message", "recv_exact", "pack", "unpack", "sizeof",
    "offsetof",
]

# ---- Numbers (orphand.h: ORPHAND_<NAME> is <NAME> here) ---------------------------------------


class Action(enum.IntEnum):
    """Request actions (ORPHAND_ACTION_*). 1-3 are the original protocol; LIST and STATUS exist
    in acknowledged mode only."""

    REGISTER = 1    #: kill `child` when `parent` is no longer alive
    UNREGISTER = 2  #: forget the binding (parent, child)
    PING = 3        #: legacy: the record echoed back; acknowledged: a reply
    HELLO = 4       #: switch the connection to acknowledged mode
    LIST = 5        #: a reply, then `count` binding records
    STATUS = 6      #: a reply, then one StatusInfo


class Reason(enum.IntEnum):
    """Why a request was refused or, with error 0, how it was accepted (ORPHAND_REASON_*)."""

    OK = 0
    PARENT_ALREADY_DEAD = 1     #: accepted; the child was killed at once
    ALREADY_BOUND = 2           #: accepted; the binding existed already
    UNKNOWN_ACTION = 3          #: EINVAL
    BAD_PID = 4                 #: EINVAL: pid 0, negative or out of range
    SAME_PROCESS = 5            #: EINVAL: parent and child are one process
    PROTECTED_TARGET = 6        #: EPERM: pid 1, orphand or a kernel thread
    NO_SUCH_PROCESS = 7         #: ESRCH: the child does not exist (any more)
    NOT_PERMITTED = 8           #: EPERM: the client may not signal the child
    NOT_PIDFD = 9               #: EBADF: a passed fd is not a pidfd
    PIDFD_MISMATCH = 10         #: EINVAL: a pidfd is not the pid named
    TOO_MANY_FDS = 11           #: E2BIG: more than two fds passed
    FOREIGN_PID_NAMESPACE = 12  #: EXDEV: raw pids from another pid namespace
    LIMIT_USER = 13             #: EDQUOT: bindings per uid exhausted
    LIMIT_PARENT = 14           #: EDQUOT: bindings per parent exhausted
    LIMIT_CONNECTIONS = 15      #: EUSERS: too many connections
    OUT_OF_FDS = 16             #: EMFILE/ENFILE: the daemon has no fd left
    BAD_POLICY = 17             #: EINVAL: bad signal, grace, scope or reserved bits
    NOT_BOUND = 18              #: accepted (UNREGISTER): no such binding
    INTERNAL = 19               #: any other errno
    NOT_A_PROCESS = 20          #: EINVAL: a pid or pidfd names a thread
    SCOPE_REFUSED = 21          #: EPERM: a cgroup scope that reaches too far
    SCOPE_UNSUPPORTED = 22      #: EOPNOTSUPP: no cgroup v2 for a cgroup scope
    CLIENT = 0x100              #: never on the wire: the request failed in this client


class Scope(enum.IntEnum):
    """Kill scopes: what a binding signals when its parent dies (ORPHAND_SCOPE_*)."""

    PROCESS = 0  #: the child alone (the default)
    PGROUP = 1   #: every process in the child's process group
    TREE = 2     #: the child and all its descendants
    CGROUP = 3   #: every process in the child's cgroup (v2) and below it


class Feature(enum.IntFlag):
    """Kernel features the daemon uses, as STATUS reports them (ORPHAND_FEATURE_*)."""

    PEER_PIDFD = 0x01     #: SO_PEERPIDFD (Linux 6.5)
    PIDFD_INFO = 0x02     #: PIDFD_GET_INFO (Linux 6.13)
    EXIT_INFO = 0x04      #: PIDFD_INFO_EXIT (Linux 6.15)
    PIDFS_INODE = 0x08    #: unique pidfs inode numbers (Linux 6.9)
    DURABLE = 0x10        #: bindings survive restarts and crashes
    JOURNAL = 0x20        #: logging to the journal
    PGROUP_SIGNAL = 0x40  #: PIDFD_SIGNAL_PROCESS_GROUP (Linux 6.9)
    CGROUP = 0x80         #: cgroup v2 at /sys/fs/cgroup: the cgroup scope


class StatusScope(enum.IntEnum):
    """StatusInfo.scope: the daemon's figures (a privileged client) or the client's own."""

    ALL = 0
    OWN = 1


# The C header's macros by their names minus ORPHAND_, for code that reads like the C.
ACTION_REGISTER = Action.REGISTER
ACTION_UNREGISTER = Action.UNREGISTER
ACTION_PING = Action.PING
ACTION_HELLO = Action.HELLO
ACTION_LIST = Action.LIST
ACTION_STATUS = Action.STATUS

HELLO_MAGIC = 0x4850524F  #: "ORPH" read as little-endian bytes: HELLO's `parent`
PROTOCOL_VERSION = 2      #: the highest version described here; 2 adds the scope to LIST

FLAG_SIGNAL = 0x1  #: Request.signal holds the first signal to send
FLAG_GRACE = 0x2   #: Request.grace_ms holds the grace period

SCOPE_PROCESS = Scope.PROCESS
SCOPE_PGROUP = Scope.PGROUP
SCOPE_TREE = Scope.TREE
SCOPE_CGROUP = Scope.CGROUP
SCOPE_COUNT = len(Scope)  #: the number of scopes; any higher one is refused (BAD_POLICY)

GRACE_NEVER = 0xFFFFFFFF  #: a grace period meaning "never escalate to SIGKILL"

REASON_OK = Reason.OK
REASON_PARENT_ALREADY_DEAD = Reason.PARENT_ALREADY_DEAD
REASON_ALREADY_BOUND = Reason.ALREADY_BOUND
REASON_UNKNOWN_ACTION = Reason.UNKNOWN_ACTION
REASON_BAD_PID = Reason.BAD_PID
REASON_SAME_PROCESS = Reason.SAME_PROCESS
REASON_PROTECTED_TARGET = Reason.PROTECTED_TARGET
REASON_NO_SUCH_PROCESS = Reason.NO_SUCH_PROCESS
REASON_NOT_PERMITTED = Reason.NOT_PERMITTED
REASON_NOT_PIDFD = Reason.NOT_PIDFD
REASON_PIDFD_MISMATCH = Reason.PIDFD_MISMATCH
REASON_TOO_MANY_FDS = Reason.TOO_MANY_FDS
REASON_FOREIGN_PID_NAMESPACE = Reason.FOREIGN_PID_NAMESPACE
REASON_LIMIT_USER = Reason.LIMIT_USER
REASON_LIMIT_PARENT = Reason.LIMIT_PARENT
REASON_LIMIT_CONNECTIONS = Reason.LIMIT_CONNECTIONS
REASON_OUT_OF_FDS = Reason.OUT_OF_FDS
REASON_BAD_POLICY = Reason.BAD_POLICY
REASON_NOT_BOUND = Reason.NOT_BOUND
REASON_INTERNAL = Reason.INTERNAL
REASON_NOT_A_PROCESS = Reason.NOT_A_PROCESS
REASON_SCOPE_REFUSED = Reason.SCOPE_REFUSED
REASON_SCOPE_UNSUPPORTED = Reason.SCOPE_UNSUPPORTED
REASON_CLIENT = Reason.CLIENT

FEATURE_PEER_PIDFD = Feature.PEER_PIDFD
FEATURE_PIDFD_INFO = Feature.PIDFD_INFO
FEATURE_EXIT_INFO = Feature.EXIT_INFO
FEATURE_PIDFS_INODE = Feature.PIDFS_INODE
FEATURE_DURABLE = Feature.DURABLE
FEATURE_JOURNAL = Feature.JOURNAL
FEATURE_PGROUP_SIGNAL = Feature.PGROUP_SIGNAL
FEATURE_CGROUP = Feature.CGROUP

STATUS_SCOPE_ALL = StatusScope.ALL
STATUS_SCOPE_OWN = StatusScope.OWN

COMM_LEN = 16  #: TASK_COMM_LEN: the size of a command name in BindingInfo, NUL included
MAX_FDS = 2    #: a REGISTER carries the child's pidfd, then the parent's

SYSTEM_SOCKET = "/run/orphand/orphand.sock"  #: the system daemon's socket
USER_SOCKET_NAME = "orphand.sock"            #: a user's daemon's socket, in $XDG_RUNTIME_DIR
DATAGRAM_SUFFIX = ".dgram"  #: the datagram socket beside each socket (legacy REGISTER records)

DEFAULT_TIMEOUT_MS = 10000  #: how long a call waits for the daemon by default

#: liborphand's orphand_policy flag "scope is set"; never on the wire. This module takes a scope
#: as an argument and has no use for it; it is here for code that drives liborphand (ctypes).
POLICY_SCOPE = 0x80000000

_REASON_TEXT = {
    Reason.OK: "ok",
    Reason.PARENT_ALREADY_DEAD: "parent already dead, child killed at once",
    Reason.ALREADY_BOUND: "already bound",
    Reason.UNKNOWN_ACTION: "unknown action",
    Reason.BAD_PID: "invalid pid",
    Reason.SAME_PROCESS: "parent and child are the same process",
    Reason.PROTECTED_TARGET: "protected target (pid 1, orphand or a kernel thread)",
    Reason.NO_SUCH_PROCESS: "no such process",
    Reason.NOT_PERMITTED: "not permitted to signal that child",
    Reason.NOT_PIDFD: "passed fd is not a pidfd",
    Reason.PIDFD_MISMATCH: "passed pidfd does not match the pid in the request",
    Reason.TOO_MANY_FDS: "too many fds passed",
    Reason.FOREIGN_PID_NAMESPACE: "client in another pid namespace must pass pidfds",
    Reason.LIMIT_USER: "too many bindings for this user",
    Reason.LIMIT_PARENT: "too many bindings for this parent",
    Reason.LIMIT_CONNECTIONS: "too many connections",
    Reason.OUT_OF_FDS: "daemon out of file descriptors",
    Reason.BAD_POLICY: "invalid signal, grace period or flags",
    Reason.NOT_BOUND: "no such binding",
    Reason.INTERNAL: "internal error",
    Reason.NOT_A_PROCESS: "names a thread, not a process",
    Reason.SCOPE_REFUSED: "cgroup scope refused: a root cgroup, or it holds the parent or orphand",
    Reason.SCOPE_UNSUPPORTED:
        "scope not supported here (no cgroup version 2 file system is mounted)",
    Reason.CLIENT: "failed in the client, without a reply from the daemon",
}


def reason_text(reason: int) -> str:
    """Human-readable text for a reason, the same as orphand_reason_text()'s; never fails."""
    try:
        return _REASON_TEXT[Reason(reason)]
    except ValueError:
        return "unknown reason"


def reason_name(reason: int) -> str:
    """The reason's name (``"NOT_PERMITTED"``), or its number for one this module does not know."""
    try:
        return Reason(reason).name
    except ValueError:
        return str(reason)


class Error(OSError):
    """A refused request or a failed call: ``errno`` (positive) says what, ``reason`` why.

    ``reason`` is the daemon's Reason, or Reason.CLIENT when the call failed without a reply (no
    socket, a timeout, a broken connection, a bad argument), where the errno alone says what
    happened."""

    def __init__(self, err: int, reason: int, what: str = "") -> None:
        text = f"{os.strerror(err)} ({reason_text(reason)})"
        super().__init__(err, f"{what}: {text}" if what else text)
        self.reason = reason

    @property
    def reason_text(self) -> str:
        """reason_text(self.reason)."""
        return reason_text(self.reason)


def _client_error(e: OSError, what: str = "") -> Error:
    """An OSError of the transport as an Error with Reason.CLIENT (a timeout: ETIMEDOUT)."""
    if isinstance(e, Error):
        return e
    err = e.errno or (_errno.ETIMEDOUT if isinstance(e, TimeoutError) else _errno.EIO)
    return Error(err, Reason.CLIENT, what)


# ---- Messages (orphand.h's structs) ------------------------------------------------------------


class Record(NamedTuple):
    """struct orphand_record: the 12-byte legacy record, also HELLO's form."""

    parent: int = 0
    child: int = 0
    action: int = 0

    def pack(self) -> bytes:
        """The record's wire bytes."""
        return pack(self)


class Request(NamedTuple):
    """struct orphand_request: a 32-byte acknowledged-mode request; its first 12 bytes have the
    layout of Record."""

    parent: int = 0
    child: int = 0
    action: int = 0
    seq: int = 0       #: echoed in the reply
    flags: int = 0     #: FLAG_SIGNAL, FLAG_GRACE
    signal: int = 0    #: with FLAG_SIGNAL: the first signal, 1 to 64
    grace_ms: int = 0  #: with FLAG_GRACE: time to SIGKILL, or GRACE_NEVER
    scope: int = 0     #: REGISTER: a Scope; other actions: 0

    def pack(self) -> bytes:
        """The request's wire bytes."""
        return pack(self)


class Reply(NamedTuple):
    """struct orphand_reply: the 32-byte answer to a request (and to HELLO)."""

    seq: int = 0       #: the request's seq
    action: int = 0    #: the request's action
    error: int = 0     #: 0 or a negative errno
    reason: int = 0    #: a Reason
    count: int = 0     #: HELLO: the version; LIST: the records that follow; STATUS: 1
    reserved: tuple[int, int, int] = (0, 0, 0)

    def pack(self) -> bytes:
        """The reply's wire bytes."""
        return pack(self)


class BindingInfo(NamedTuple):
    """struct orphand_binding_info: one live binding, as LIST gives it on a version 1
    connection. The command names are decoded (up to their NUL)."""

    parent_pid: int = 0
    child_pid: int = 0
    registrant_uid: int = 0
    registrant_pid: int = 0
    signal: int = 0
    grace_ms: int = 0
    age_ms: int = 0
    parent_comm: str = ""
    child_comm: str = ""

    def pack(self) -> bytes:
        """The record's wire bytes."""
        return pack(self)


class BindingInfo2(NamedTuple):
    """struct orphand_binding_info2: one live binding with its scope (version 2 connections)."""

    info: BindingInfo = BindingInfo()
    scope: int = 0  #: a Scope
    reserved: tuple[int, int, int] = (0, 0, 0)

    def pack(self) -> bytes:
        """The record's wire bytes."""
        return pack(self)


class StatusInfo(NamedTuple):
    """struct orphand_status_info: the daemon's state, as STATUS gives it."""

    version: str = ""
    uptime_ms: int = 0
    kills: int = 0
    parents: int = 0
    children: int = 0
    bindings: int = 0
    connections: int = 0
    features: int = 0  #: Feature bits
    daemon_pid: int = 0
    default_signal: int = 0
    default_grace_ms: int = 0
    scope: int = 0     #: a StatusScope
    reserved: tuple[int, int, int] = (0, 0, 0)

    def pack(self) -> bytes:
        """The record's wire bytes."""
        return pack(self)


class _Layout:
    """How one message type lies on the wire: host byte order, no padding (the header's
    static_asserts pin the same sizes and offsets). Members are a struct code ("I", "i", "Q",
    "16s"), an array of one ("3I"), or another message type, nested."""

    def __init__(self, members: Sequence[tuple[str, Any]]) -> None:
        self.members = list(members)
        self.format = "=" + "".join(
            _LAYOUTS[m].format[1:] if isinstance(m, type) else m for _, m in self.members)
        self.struct = struct.Struct(self.format)
        self.size = self.struct.size
        self.items = len(self.struct.unpack(bytes(self.size)))  # after flattening
        self.offsets: dict[str, int] = {}
        prefix = "="
        for name, m in self.members:
            self.offsets[name] = struct.calcsize(prefix)
            prefix += _LAYOUTS[m].format[1:] if isinstance(m, type) else m

    def flatten(self, value: tuple) -> list:
        out: list = []
        for (_, m), v in zip(self.members, value):
            if isinstance(m, type):
                out += _LAYOUTS[m].flatten(v)
            elif m.endswith("s"):
                out.append(v.encode() if isinstance(v, str) else bytes(v))
            elif m[:-1]:  # an array
                out += [_wrap(m[-1], x) for x in v]
            else:
                out.append(_wrap(m, v))
        return out

    def build(self, cls: type, items: list) -> tuple:
        args = []
        for _, m in self.members:
            if isinstance(m, type):
                n = _LAYOUTS[m].items
                args.append(_LAYOUTS[m].build(m, items[:n]))
                items = items[n:]
            elif m.endswith("s"):
                args.append(items.pop(0).split(b"\0")[0].decode(errors="replace"))
            elif m[:-1]:
                n = int(m[:-1])
                args.append(tuple(items[:n]))
                items = items[n:]
            else:
                args.append(items.pop(0))
        return cls(*args)


_WIDTH = {"I": (32, False), "i": (32, True), "Q": (64, False)}


def _wrap(code: str, v: int) -> int:
    """v reduced to the width of a field of struct code `code`, as the wire carries it."""
    bits, signed = _WIDTH[code]
    v = int(v) & ((1 << bits) - 1)
    return v - (1 << bits) if signed and v >> (bits - 1) else v


_LAYOUTS: dict[type, _Layout] = {}
_LAYOUTS[Record] = _Layout([("parent", "I"), ("child", "I"), ("action", "I")])
_LAYOUTS[Request] = _Layout([("parent", "I"), ("child", "I"), ("action", "I"), ("seq", "I"),
                             ("flags", "I"), ("signal", "i"), ("grace_ms", "I"),
                             ("scope", "I")])
_LAYOUTS[Reply] = _Layout([("seq", "I"), ("action", "I"), ("error", "i"), ("reason", "I"),
                           ("count", "I"), ("reserved", "3I")])
_LAYOUTS[BindingInfo] = _Layout([
    ("parent_pid", "I"), ("child_pid", "I"), ("registrant_uid", "I"), ("registrant_pid", "I"),
    ("signal", "i"), ("grace_ms", "I"), ("age_ms", "Q"), ("parent_comm", f"{COMM_LEN}s"),
    ("child_comm", f"{COMM_LEN}s")])
_LAYOUTS[BindingInfo2] = _Layout([("info", BindingInfo), ("scope", "I"), ("reserved", "3I")])
_LAYOUTS[StatusInfo] = _Layout([
    ("version", "16s"), ("uptime_ms", "Q"), ("kills", "Q"), ("parents", "I"), ("children", "I"),
    ("bindings", "I"), ("connections", "I"), ("features", "I"), ("daemon_pid", "I"),
    ("default_signal", "I"), ("default_grace_ms", "I"), ("scope", "I"), ("reserved", "3I")])

#: The C name of each message type (struct orphand_<name>).
C_NAMES = {Record: "record", Request: "request", Reply: "reply", BindingInfo: "binding_info",
           BindingInfo2: "binding_info2", StatusInfo: "status_info"}

_M = TypeVar("_M", Record, Request, Reply, BindingInfo, BindingInfo2, StatusInfo)


def pack(message: tuple) -> bytes:
    """The wire bytes of a message (Record, Request, Reply, BindingInfo, BindingInfo2,
    StatusInfo). Integers are reduced to their field's width; strings are encoded and cut or
    NUL-padded to their field."""
    layout = _LAYOUTS[type(message)]
    return layout.struct.pack(*layout.flatten(message))


def unpack(cls: type[_M], data: bytes) -> _M:
    """The message of type `cls` in the first sizeof(cls) bytes of data."""
    layout = _LAYOUTS[cls]
    return layout.build(cls, list(layout.struct.unpack_from(data)))  # type: ignore[return-value]


def sizeof(cls: type) -> int:
    """The size of a message type on the wire, in bytes."""
    return _LAYOUTS[cls].size


def offsetof(cls: type, field: str) -> int:
    """The offset of a message type's field on the wire, in bytes."""
    return _LAYOUTS[cls].offsets[field]


def hello(version: int = PROTOCOL_VERSION) -> bytes:
    """The HELLO record asking for acknowledged mode at `version`."""
    return Record(HELLO_MAGIC, version, Action.HELLO).pack()


# ---- The socket --------------------------------------------------------------------------------

_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), NUL included


def socket_path(path: str | None = None) -> str:
    """The socket path by the one rule of orphand, orphanctl, the shim and liborphand: `path` if
    not None or empty, else $ORPHAND_SOCKET if not empty, else, for a user other than root,
    $XDG_RUNTIME_DIR/orphand.sock if XDG_RUNTIME_DIR is absolute and that socket exists, else
    SYSTEM_SOCKET."""
    if path:
        return path
    env = os.environ.get("ORPHAND_SOCKET")
    if env:
        return env
    if os.geteuid() != 0:
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        if runtime.startswith("/"):
            user = runtime + "/" + USER_SOCKET_NAME
            if os.path.lexists(user):
                return user
    return SYSTEM_SOCKET


def open_socket(path: str | None = None, timeout: float | None = None) -> socket.socket:
    """A stream socket connected to orphand (socket_path(path)), close-on-exec, each operation
    bounded by `timeout` seconds (None: DEFAULT_TIMEOUT_MS). Still in legacy mode: no HELLO.
    Raises Error (Reason.CLIENT): ENAMETOOLONG, ENOENT, ECONNREFUSED, EAGAIN (the daemon's
    backlog is full), ETIMEDOUT, ..."""
    where = socket_path(path)
    if len(os.fsencode(where)) >= _SUN_PATH_MAX:
        raise Error(_errno.ENAMETOOLONG, Reason.CLIENT, where)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(DEFAULT_TIMEOUT_MS / 1000 if timeout is None else timeout)
    try:
        s.connect(where)
    except OSError as e:
        s.close()
        raise _client_error(e, where) from None
    return s


def send_message(sock: socket.socket, data: bytes, fds: Iterable[int] = ()) -> None:
    """Sends all of data on sock; the fds (borrowed, any kind and any number) travel as one
    SCM_RIGHTS message with its first byte, as orphand-protocol(7) asks. MSG_NOSIGNAL: a peer
    that went away raises BrokenPipeError, never SIGPIPE. Raises OSError."""
    fds = list(fds)
    view = memoryview(data)
    while True:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        n = sock.sendmsg([view], ancillary if fds else [], socket.MSG_NOSIGNAL)
        view = view[n:]
        fds = []  # sent with the first byte
        if not view:
            return


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes from sock. Raises ConnectionResetError if the peer closes first,
    TimeoutError after the socket's timeout, or another OSError."""
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionResetError(_errno.ECONNRESET,
                                       f"closed after {len(buf)} of {size} bytes")
        buf += chunk
    return bytes(buf)


def pidfd_pid(pidfd: int) -> int:
    """The pid of the process behind a pidfd, from /proc/self/fdinfo. Raises Error: EBADF
    (Reason.NOT_PIDFD) for an fd that is not a pidfd, ESRCH (Reason.NO_SUCH_PROCESS) for a
    process already reaped, EXDEV for one outside this pid namespace."""
    try:
        with open(f"/proc/self/fdinfo/{pidfd}", encoding="ascii", errors="replace") as f:
            info = f.read()
    except FileNotFoundError:
        raise Error(_errno.EBADF, Reason.NOT_PIDFD, f"fd {pidfd}") from None
    except OSError as e:
        raise _client_error(e) from None
    for line in info.splitlines():
        if line.startswith("Pid:"):
            pid = int(line.split()[1])
            if pid == -1:
                raise Error(_errno.ESRCH, Reason.NO_SUCH_PROCESS, f"pidfd {pidfd}")
            if pid == 0:
                raise Error(_errno.EXDEV, Reason.CLIENT, f"pidfd {pidfd}")
            return pid
    raise Error(_errno.EBADF, Reason.NOT_PIDFD, f"fd {pidfd}")


# ---- The connection ----------------------------------------------------------------------------


def _checked(reply: Reply, what: str) -> int:
    """A reply's reason if it was accepted; raises Error if it was refused."""
    if reply.error < 0:
        raise Error(-reply.error, reply.reason, what)
    try:
        return Reason(reply.reason)
    except ValueError:
        return reply.reason


class Connection:
    """An acknowledged-mode connection to orphand, by the socket rule of socket_path(path).

    `timeout` (seconds; None: DEFAULT_TIMEOUT_MS) bounds each wait for the daemon. `version` is
    the protocol version asked for in HELLO; the connection speaks the lower of it and the
    daemon's (`self.version`). The connection belongs to the process that opened it (the daemon
    knows the caller as the connection's peer): after fork() a child opens its own. Use it from
    one thread at a time; close() it, or use it as a context manager.

    Raises Error (Reason.CLIENT) as open_socket() does, ETIMEDOUT when HELLO gets no reply (a
    daemon too old for acknowledged mode) and EPROTO for an unexpected one."""

    def __init__(self, path: str | None = None, timeout: float | None = None,
                 version: int = PROTOCOL_VERSION) -> None:
        self.sock = open_socket(path, timeout)
        #: The seq of the last request sent; a caller that sends requests with send() sets it.
        self.seq = 0
        self.broken = False
        try:
            send_message(self.sock, hello(version))
            r = unpack(Reply, recv_exact(self.sock, sizeof(Reply)))
        except OSError as e:
            self.sock.close()
            raise _client_error(e, "HELLO") from None
        # The daemon speaks the lower of its version and ours: a higher one is out of step.
        if r.action != Action.HELLO or r.error != 0 or not 1 <= r.count <= version:
            self.sock.close()
            raise Error(_errno.EPROTO, Reason.CLIENT, f"HELLO answered with {r}")
        self.version: int = r.count

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection. Calling it again does nothing."""
        self.sock.close()

    def fileno(self) -> int:
        """The socket's fd (owned by the connection)."""
        return self.sock.fileno()

    # -- The lower layer: raw requests and replies, for callers that speak the protocol. --

    def send(self, data: bytes, fds: Iterable[int] = ()) -> None:
        """Sends raw bytes (with the fds, borrowed, on the first byte): no framing, no check."""
        try:
            send_message(self.sock, data, fds)
        except OSError as e:
            self.broken = True
            raise _client_error(e, "send") from None

    def recv(self, size: int) -> bytes:
        """Exactly `size` raw bytes from the daemon."""
        try:
            return recv_exact(self.sock, size)
        except OSError as e:
            self.broken = True
            raise _client_error(e, "receive") from None

    def send_request(self, action: int, parent: int = 0, child: int = 0, *, flags: int = 0,
                     signal: int = 0, grace_ms: int = 0, scope: int = 0,
                     fds: Iterable[int] = ()) -> int:
        """Sends one request with the next seq (and the fds) without waiting; returns its seq.
        Requests may be sent ahead: their replies come in order (recv_reply)."""
        if self.broken:
            raise Error(_errno.ENOTCONN, Reason.CLIENT, "the connection is broken")
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        self.send(Request(parent, child, action, self.seq, flags, signal, grace_ms,
                          scope).pack(), fds)
        return self.seq

    def recv_reply(self) -> Reply:
        """The next reply, whatever it says."""
        return unpack(Reply, self.recv(sizeof(Reply)))

    def call(self, action: int, parent: int = 0, child: int = 0, *, flags: int = 0,
             signal: int = 0, grace_ms: int = 0, scope: int = 0,
             fds: Iterable[int] = ()) -> Reply:
        """Sends one request and returns its reply, accepted or refused: raises only when there
        is no reply (Error with Reason.CLIENT), or EPROTO for a reply out of step. A transport
        failure leaves the connection broken: what comes next on the stream is unknown."""
        seq = self.send_request(action, parent, child, flags=flags, signal=signal,
                                grace_ms=grace_ms, scope=scope, fds=fds)
        r = self.recv_reply()
        if r.seq != seq or r.action != action or r.error > 0:
            self.broken = True
            raise Error(_errno.EPROTO, Reason.CLIENT, f"reply {r} to request {seq}")
        return r

    # -- The operations of liborphand. --

    def _register(self, parent: int, child: int, fds: list[int], signal: int | None,
                  grace_ms: int | None, scope: int | None) -> int:
        flags = (FLAG_SIGNAL if signal is not None else 0) | \
            (FLAG_GRACE if grace_ms is not None else 0)
        r = self.call(Action.REGISTER, parent, child, flags=flags, signal=signal or 0,
                      grace_ms=grace_ms or 0, scope=scope or 0, fds=fds)
        return _checked(r, f"bind {child} to {parent}")

    def bind(self, child: int, parent: int = 0, *, signal: int | None = None,
             grace_ms: int | None = None, scope: int | None = None) -> int:
        """Binds `child` to `parent` (0: the calling process): orphand signals the child with
        `signal` (None: the daemon's default), then SIGKILL after `grace_ms` (None: the default;
        GRACE_NEVER: never), reaching `scope` (None: Scope.PROCESS), when the parent dies.

        Both are opened as pidfds and passed with the request, so that the daemon holds the
        processes named here even if one exits first; a parent that cannot be opened is sent by
        pid, and one that no longer exists counts as already dead (the child is killed at once:
        Reason.PARENT_ALREADY_DEAD). Returns the reason the daemon accepted it with (Reason.OK,
        Reason.ALREADY_BOUND, ...). Raises Error: the daemon's refusals (orphand-protocol(7),
        REASONS), ESRCH (Reason.NO_SUCH_PROCESS) for a child that does not exist, EINVAL
        (Reason.BAD_PID) for a pid below 1."""
        if child <= 0 or parent < 0:
            raise Error(_errno.EINVAL, Reason.BAD_PID, f"bind {child} to {parent}")
        self_pid = os.getpid()
        parent = parent or self_pid
        try:
            fds = [os.pidfd_open(child)]
        except OSError as e:
            raise Error(e.errno or _errno.EIO, Reason.NO_SUCH_PROCESS
                        if e.errno == _errno.ESRCH else Reason.CLIENT, f"pidfd of {child}") \
                from None
        try:
            # The caller needs no fd: the daemon knows its peer (SO_PEERPIDFD).
            if parent != self_pid:
                try:
                    fds.append(os.pidfd_open(parent))
                except OSError:
                    pass
            return self._register(parent, child, fds, signal, grace_ms, scope)
        finally:
            for fd in fds:
                os.close(fd)

    def bind_pidfd(self, child_pidfd: int, parent_pidfd: int | None = None, *,
                   signal: int | None = None, grace_ms: int | None = None,
                   scope: int | None = None) -> int:
        """As bind(), with the processes given as pidfds (borrowed, not closed), which the daemon
        checks against their pids: no pid race at all. parent_pidfd None (or -1) means the
        calling process. Raises Error: ESRCH (Reason.NO_SUCH_PROCESS) for a pidfd whose process
        has been reaped, parent or child (nothing is bound); EBADF (Reason.NOT_PIDFD) for an fd
        that is not a pidfd; the daemon's refusals."""
        child = pidfd_pid(child_pidfd)
        if parent_pidfd is None or parent_pidfd < 0:
            return self._register(os.getpid(), child, [child_pidfd], signal, grace_ms, scope)
        parent = pidfd_pid(parent_pidfd)
        return self._register(parent, child, [child_pidfd, parent_pidfd], signal, grace_ms,
                              scope)

    def bind_popen(self, proc: Any, *, signal: int | None = None, grace_ms: int | None = None,
                   scope: int | None = None) -> int:
        """Binds the process of a subprocess.Popen to the calling process, through a pidfd, with
        bind()'s policy. Raises Error ESRCH (Reason.NO_SUCH_PROCESS) if Popen has already reaped
        it (its pid may then name another process), and as bind_pidfd()."""
        pidfd = _popen_pidfd(proc)
        try:
            return self.bind_pidfd(pidfd, None, signal=signal, grace_ms=grace_ms, scope=scope)
        finally:
            os.close(pidfd)

    def unbind(self, child: int, parent: int = 0) -> int:
        """Forgets the binding (parent, child); parent 0 is the calling process. Returns
        Reason.OK, or Reason.NOT_BOUND when there was none. Once it returns the binding is
        gone."""
        if child <= 0 or parent < 0:
            raise Error(_errno.EINVAL, Reason.BAD_PID, f"unbind {child} from {parent}")
        r = self.call(Action.UNREGISTER, parent or os.getpid(), child)
        return _checked(r, f"unbind {child} from {parent}")

    def _list(self) -> list[BindingInfo2]:
        r = self.call(Action.LIST)
        _checked(r, "list")
        if self.version >= 2:
            return [unpack(BindingInfo2, self.recv(sizeof(BindingInfo2)))
                    for _ in range(r.count)]
        return [BindingInfo2(unpack(BindingInfo, self.recv(sizeof(BindingInfo))))
                for _ in range(r.count)]

    def list(self) -> list[BindingInfo]:
        """The live bindings the caller may see (all of them for a privileged client, its own
        user's otherwise), in no particular order."""
        return [b.info for b in self._list()]

    def list2(self) -> list[BindingInfo2]:
        """As list(), with each binding's scope: Scope.PROCESS for each from a daemon older
        than protocol version 2, which has no scopes."""
        return self._list()

    def status(self) -> StatusInfo:
        """The daemon's state: its figures for a privileged client, the client's own otherwise
        (StatusInfo.scope)."""
        r = self.call(Action.STATUS)
        _checked(r, "status")
        if r.count != 1:
            self.broken = True
            raise Error(_errno.EPROTO, Reason.CLIENT, f"STATUS answered with {r}")
        return unpack(StatusInfo, self.recv(sizeof(StatusInfo)))

    def ping(self) -> None:
        """Checks that the daemon answers; raises Error if it does not."""
        _checked(self.call(Action.PING), "ping")


def connect(path: str | None = None, timeout: float | None = None) -> Connection:
    """Connection(path, timeout): an acknowledged-mode connection by the socket rule."""
    return Connection(path, timeout)


def bind_child(child: int, path: str | None = None, *, signal: int | None = None,
               grace_ms: int | None = None, scope: int | None = None) -> int:
    """For a program that has just created `child`: connects to the daemon (socket_path(path)),
    binds the child to the calling process, and closes. Returns and raises as Connection and
    Connection.bind() do."""
    with Connection(path) as conn:
        return conn.bind(child, signal=signal, grace_ms=grace_ms, scope=scope)


def _popen_pidfd(proc: Any) -> int:
    """A pidfd of a Popen's process, if Popen has not reaped it (then its pid is still its)."""
    if proc.returncode is None:
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError as e:
            raise Error(e.errno or _errno.EIO, Reason.NO_SUCH_PROCESS
                        if e.errno == _errno.ESRCH else Reason.CLIENT, f"pidfd of {proc.pid}") \
                from None
        if proc.returncode is None:
            return pidfd
        os.close(pidfd)  # reaped meanwhile: the pidfd may name another process
    raise Error(_errno.ESRCH, Reason.NO_SUCH_PROCESS, f"process {proc.pid} already reaped")


def bind_popen(proc: Any, path: str | None = None, *, signal: int | None = None,
               grace_ms: int | None = None, scope: int | None = None) -> int:
    """Binds a subprocess.Popen's process to the calling process (through a pidfd) over a
    connection of its own: bind_child() for a Popen. See Connection.bind_popen()."""
    with Connection(path) as conn:
        return conn.bind_popen(proc, signal=signal, grace_ms=grace_ms, scope=scope)
