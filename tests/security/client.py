# SPDX-License-Identifier: MIT
"""A hostile orphand client: runs the operations a security test gives it and reports replies.

It is started as another user (setpriv), possibly inside other namespaces, and reads one JSON
object on stdin (one line, or all of stdin): {"socket": PATH, "ops": [...]}. It prints one JSON list
on stdout, one result per operation. Operations:

  {"v1": [parent, child, action], "fds": [...], "flags": F, "signal": S, "grace_ms": G,
   "scope": S}                          one request on the shared acknowledged-mode connection
  {"legacy": [parent, child, action], "fds": [...]}
                                        connect, send a legacy record, close (no reply)
  {"raw": HEX, "fds": [...], "hello": bool, "replies": N, "read": B}
                                        a fresh connection, optional HELLO, raw bytes; then N
                                        v1 replies, or B bytes returned as hex
  {"status": true}                      STATUS on the shared acknowledged-mode connection: the
                                        reply, with "status" the parsed struct status_info
  {"getpid": true}                      the client's own pid as it sees it
  {"open": N, "hello": bool}            N fresh connections (with HELLO acknowledged if "hello",
                                        the default), held open until the client exits; returns
                                        {"opened": N}
  {"send": HEX, "repeat": R, "fds": [...], "at": A, "split": K, "hello": bool,
   "nonblocking": bool, "read": B, "settle": S, "shutdown": bool, "keep": bool}
                                        the fds are made first, then a fresh connection (HELLO
                                        acknowledged if "hello", the default) is sent HEX
                                        repeated R times (default 1). The fds go with the K
                                        bytes from offset A (default: from 0, all of them), the
                                        bytes before A being sent first; they are closed here
                                        right after that sendmsg, before the rest is sent, each
                                        on a thread of its own so that a close that blocks does
                                        not stall this client. "nonblocking": send what the socket
                                        takes without waiting and stop at EAGAIN. Then B bytes
                                        are read and returned as hex; with "settle", once the
                                        bytes waiting to be read have not changed for S seconds,
                                        their count is returned as "unread"; shutdown(SHUT_RDWR)
                                        if "shutdown"; and the connection is held open until the
                                        client exits if "keep" (closed otherwise). Returns
                                        {"sent": bytes, "read": hex, "unread": N, and with fds
                                        "closes_returned": whether every close here returned
                                        within 0.5 s (false: this client, not the daemon, held
                                        the last reference to a lingering socket), "stuck":
                                        bytes queued in each "lingering-tcp" socket}
  {"dgram": HEX, "fds": [...], "creds": [pid, uid, gid], "to": PATH}
                                        one datagram of HEX to the datagram socket (the
                                        socket's path + orphand.DATAGRAM_SUFFIX, or PATH), with
                                        the fds, and with "creds" an SCM_CREDENTIALS message
                                        claiming them (the kernel checks the claim); no reply.
                                        The fds are closed here right after the send, as in
                                        "send". Returns {"sent": bytes}, and with fds
                                        "closes_returned" and "stuck" as "send" does
  {"dropcaps": true}                    drops every capability of this client (capset), as a
                                        program that has done its privileged work would;
                                        returns {"dropped": true}
  {"pause": true}                       prints the results so far as one JSON line, then waits
                                        for a line (or EOF) on stdin before going on, holding
                                        every kept connection and socket meanwhile; the final
                                        list is then the last line of stdout

fd specs: "pidfd:PID" (opened here), "tpidfd:PID" (opened here with PIDFD_THREAD: a pidfd of
that thread alone), "inherit:FD" (an fd the test passed down), "devnull",
"socket", "pipe", "memfd", "eventfd", "epoll", "reaped-pidfd" (a pidfd of a reaped child),
"many:N" (N copies of /dev/null), "lingering-tcp:SECONDS" (a TCP socket on 127.0.0.1 with
SO_LINGER {1, SECONDS} whose peer, held here until the client exits, never reads, and whose
send queue is full: its last close() waits up to SECONDS for a FIN that cannot be sent).
"""

import ctypes
import fcntl
import json
import os
import select
import socket
import struct
import sys
import termios
import threading
import time

import orphand  # copied beside this script: sectest.shared_dir(), as lingering is
from lingering import lingering_tcp, raise_fd_limit
from orphand import recv_exact

PIDFD_THREAD = os.O_EXCL  # pidfd_open(2): the pidfd names the thread, not its process
INHERITED = set()
KEEP = []   # sockets held open until the client exits
STUCK = []  # bytes queued in each lingering socket made by the current operation


def reply(r):
    """A Reply as the JSON object a test reads: seq, action, error, reason, count."""
    return {k: v for k, v in r._asdict().items() if k != "reserved"}


def read_reply(s):
    return reply(orphand.unpack(orphand.Reply, recv_exact(s, orphand.sizeof(orphand.Reply))))


def close_aside(fds):
    """Closes fds (but inherited ones), each on a daemon thread. True if all returned in 0.5 s."""
    threads = []
    for fd in fds:
        if fd not in INHERITED:
            t = threading.Thread(target=os.close, args=(fd,), daemon=True)
            t.start()
            threads.append(t)
    deadline = time.monotonic() + 0.5
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


def settle(s, quiet):
    """Waits until the bytes queued for reading on s have not changed for `quiet` seconds (the
    daemon is done answering; at most 10 s); returns how many there are."""
    last, since, start = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - start < 10:
        queued = bytearray(4)
        fcntl.ioctl(s.fileno(), termios.FIONREAD, queued)
        now = struct.unpack("i", queued)[0]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.01)
    return last


def send_op(path, op):
    """The "send" operation (see above)."""
    STUCK.clear()
    fds = open_fds(op.get("fds"))
    data = bytes.fromhex(op["send"]) * op.get("repeat", 1)
    at = min(op.get("at", 0), len(data)) if fds else 0
    end = min(at + op.get("split", len(data)), len(data)) if fds else 0
    result = {}
    s = connect(path, op.get("hello", True))
    try:
        pos = 0
        if fds:
            s.sendall(data[:at])
            orphand.send_message(s, data[at:end], fds)
            result["closes_returned"] = close_aside(fds)
            result["stuck"] = list(STUCK)
            pos = end
        if op.get("nonblocking"):
            s.setblocking(False)
            while pos < len(data):
                try:
                    pos += s.send(data[pos:pos + (1 << 16)])
                except BlockingIOError:
                    break
            s.settimeout(10)
        else:
            s.sendall(data[pos:])
            pos = len(data)
        result["sent"] = pos
        if "read" in op:
            result["read"] = recv_exact(s, op["read"]).hex()
        if "settle" in op:
            result["unread"] = settle(s, op["settle"])
        if op.get("shutdown"):
            s.shutdown(socket.SHUT_RDWR)
    except BaseException:
        s.close()
        raise
    if op.get("keep"):
        KEEP.append(s)
    else:
        s.close()
    return result


def open_fds(specs):
    fds = []
    for spec in specs or []:
        kind, _, arg = spec.partition(":")
        if kind == "pidfd":
            fds.append(os.pidfd_open(int(arg)))
        elif kind == "tpidfd":
            fds.append(os.pidfd_open(int(arg), PIDFD_THREAD))
        elif kind == "inherit":
            fds.append(int(arg))
            INHERITED.add(int(arg))
        elif kind == "devnull":
            fds.append(os.open("/dev/null", os.O_RDONLY))
        elif kind == "socket":
            fds.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM).detach())
        elif kind == "pipe":
            r, w = os.pipe()
            fds.append(r)
        elif kind == "memfd":
            fds.append(os.memfd_create("orphand-test"))
        elif kind == "eventfd":
            fds.append(os.eventfd(0))
        elif kind == "epoll":
            ep = select.epoll()
            fds.append(os.dup(ep.fileno()))
            ep.close()
        elif kind == "reaped-pidfd":
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            fd = os.pidfd_open(pid)
            os.waitpid(pid, 0)
            fds.append(fd)
        elif kind == "many":
            fds.extend(os.open("/dev/null", os.O_RDONLY) for _ in range(int(arg)))
        elif kind == "lingering-tcp":
            fd, stuck = lingering_tcp(int(arg), KEEP)
            STUCK.append(stuck)
            fds.append(fd)
        else:
            raise ValueError(f"unknown fd spec {spec!r}")
    return fds


def send(s, data, fds):
    """Sends data (with fds, which are then closed here unless inherited)."""
    try:
        orphand.send_message(s, data, fds)
    finally:
        for fd in fds:
            if fd not in INHERITED:
                os.close(fd)


def dgram_op(path, op):
    """The "dgram" operation (see above)."""
    STUCK.clear()
    fds = open_fds(op.get("fds"))
    anc = []
    if fds:
        anc.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds)))
    if "creds" in op:
        anc.append((socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("iII", *op["creds"])))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(10)
            n = s.sendmsg([bytes.fromhex(op["dgram"])], anc, 0,
                          op.get("to", path + orphand.DATAGRAM_SUFFIX))
    except BaseException:
        close_aside(fds)
        raise
    if not fds:
        return {"sent": n}
    return {"sent": n, "closes_returned": close_aside(fds), "stuck": list(STUCK)}


def connect(path, hello):
    """A fresh connection; in acknowledged mode (version 1) if `hello`."""
    s = orphand.open_socket(path, 10)
    if hello:
        s.sendall(orphand.hello(1))
        recv_exact(s, orphand.sizeof(orphand.Reply))
    return s


def drop_caps():
    """Empties this process's effective, permitted and inheritable sets (capset(2), version 3),
    and its ambient set."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()                  # two __user_cap_data_struct, all zero
    ulong = ctypes.c_ulong  # prctl's arguments are unsigned longs
    if libc.prctl(47, ulong(4), ulong(0), ulong(0), ulong(0)) != 0:  # PR_CAP_AMBIENT, CLEAR_ALL
        raise OSError(ctypes.get_errno(), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def main():
    raise_fd_limit()
    job = json.loads(sys.stdin.readline())
    path = job["socket"]
    v1 = None
    seq = 0
    out = []
    for op in job["ops"]:
        try:
            if "v1" in op:
                if v1 is None:
                    v1 = connect(path, True)
                seq += 1
                parent, child, action = op["v1"]
                data = orphand.Request(parent, child, action, seq, op.get("flags", 0),
                                       op.get("signal", 0), op.get("grace_ms", 0),
                                       op.get("scope", 0)).pack()
                send(v1, data, open_fds(op.get("fds")))
                out.append(read_reply(v1))
            elif "status" in op:
                if v1 is None:
                    v1 = connect(path, True)
                seq += 1
                v1.sendall(orphand.Request(action=orphand.Action.STATUS, seq=seq).pack())
                r = read_reply(v1)
                if r["error"] == 0 and r["count"] == 1:
                    info = recv_exact(v1, orphand.sizeof(orphand.StatusInfo))
                    r["status"] = orphand.unpack(orphand.StatusInfo, info)._asdict()
                out.append(r)
            elif "legacy" in op:
                parent, child, action = op["legacy"]
                with connect(path, False) as s:
                    send(s, orphand.Record(parent, child, action).pack(),
                         open_fds(op.get("fds")))
                out.append({"sent": True})
            elif "raw" in op:
                with connect(path, op.get("hello", True)) as s:
                    send(s, bytes.fromhex(op["raw"]), open_fds(op.get("fds")))
                    if "read" in op:
                        out.append(recv_exact(s, op["read"]).hex())
                    else:
                        out.append([read_reply(s) for _ in range(op.get("replies", 0))])
            elif "getpid" in op:
                out.append(os.getpid())
            elif "open" in op:
                for _ in range(op["open"]):
                    KEEP.append(connect(path, op.get("hello", True)))
                out.append({"opened": op["open"]})
            elif "send" in op:
                out.append(send_op(path, op))
            elif "dgram" in op:
                out.append(dgram_op(path, op))
            elif "dropcaps" in op:
                drop_caps()
                out.append({"dropped": True})
            elif "pause" in op:
                print(json.dumps(out), flush=True)
                sys.stdin.readline()
                out.append({"resumed": True})
            else:
                out.append({"exception": f"unknown op {op!r}"})
        except (OSError, ValueError) as e:
            out.append({"exception": repr(e)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
