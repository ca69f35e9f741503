# SPDX-License-Identifier: MIT
"""A hostile orphand client: runs the operations a security test gives it and reports replies.

It is started as another user (setpriv), possibly inside other namespaces, and reads one JSON
object on stdin: {"socket": PATH, "ops": [...]}. It prints one JSON list on stdout, one result per
operation. Operations:

  {"v1": [parent, child, action], "fds": [...], "flags": F, "signal": S, "grace_ms": G,
   "reserved": R}                       one request on the shared acknowledged-mode connection
  {"legacy": [parent, child, action], "fds": [...]}
                                        connect, send a legacy record, close (no reply)
  {"raw": HEX, "fds": [...], "hello": bool, "replies": N, "read": B}
                                        a fresh connection, optional HELLO, raw bytes; then N
                                        v1 replies, or B bytes returned as hex
  {"getpid": true}                      the client's own pid as it sees it

fd specs: "pidfd:PID" (opened here), "inherit:FD" (an fd the test passed down), "devnull",
"socket", "pipe", "memfd", "eventfd", "epoll", "reaped-pidfd" (a pidfd of a reaped child),
"many:N" (N copies of /dev/null).
"""

import json
import os
import select
import socket
import struct
import sys

from orphtest import recv_exact  # tests/ is on PYTHONPATH (meson test_env)

REGISTER, PING, HELLO = 1, 3, 4
HELLO_MAGIC = 0x4850524F
INHERITED = set()


def reply(data):
    seq, action, error, reason, count = struct.unpack("=IIiII", data[:20])
    return {"seq": seq, "action": action, "error": error, "reason": reason, "count": count}


def open_fds(specs):
    fds = []
    for spec in specs or []:
        kind, _, arg = spec.partition(":")
        if kind == "pidfd":
            fds.append(os.pidfd_open(int(arg)))
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
        else:
            raise ValueError(f"unknown fd spec {spec!r}")
    return fds


def send(s, data, fds):
    """Sends data (with fds, which are then closed here unless inherited)."""
    if fds:
        socket.send_fds(s, [data], fds)
        for fd in fds:
            if fd not in INHERITED:
                os.close(fd)
    else:
        s.sendall(data)


def connect(path, hello):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    if hello:
        s.sendall(struct.pack("=III", HELLO_MAGIC, 1, HELLO))
        recv_exact(s, 32)
    return s


def main():
    job = json.load(sys.stdin)
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
                data = struct.pack("=IIIIIiII", parent & 0xFFFFFFFF, child & 0xFFFFFFFF,
                                   action & 0xFFFFFFFF, seq, op.get("flags", 0),
                                   op.get("signal", 0), op.get("grace_ms", 0),
                                   op.get("reserved", 0))
                send(v1, data, open_fds(op.get("fds")))
                out.append(reply(recv_exact(v1, 32)))
            elif "legacy" in op:
                parent, child, action = op["legacy"]
                with connect(path, False) as s:
                    send(s, struct.pack("=III", parent & 0xFFFFFFFF, child & 0xFFFFFFFF,
                                        action & 0xFFFFFFFF), open_fds(op.get("fds")))
                out.append({"sent": True})
            elif "raw" in op:
                with connect(path, op.get("hello", True)) as s:
                    send(s, bytes.fromhex(op["raw"]), open_fds(op.get("fds")))
                    if "read" in op:
                        out.append(recv_exact(s, op["read"]).hex())
                    else:
                        out.append([reply(recv_exact(s, 32))
                                    for _ in range(op.get("replies", 0))])
            elif "getpid" in op:
                out.append(os.getpid())
            else:
                out.append({"exception": f"unknown op {op!r}"})
        except (OSError, ValueError) as e:
            out.append({"exception": repr(e)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
