# SPDX-License-Identifier: MIT
"""One attacker of the datagram flood: datagrams as fast as orphand's datagram socket takes them,
most carrying 200 or more fds.

Usage: dgram_flood.py SOCKET SECONDS VICTIM. Run as an unprivileged uid. It makes its pool of
fds, prints "ready", waits for a line on stdin, then for SECONDS sends rounds of datagrams, each
with one of the second kind below and four of each other kind:

  - REGISTER(itself, VICTIM) with the pool: 100 pipe read ends and 100 Unix sockets, each with
    bytes and an fd (a pipe's read end) queued in it; the pool stays open here;
  - REGISTER(itself, VICTIM) with 200 fresh fds of the same kinds, closed here once sent, so
    that orphand holds the last reference to each and its close releases what is queued;
  - 13 bytes (no record) with the pool;
  - REGISTER(itself, VICTIM) without fds (orphand looks the victim up for each);
  - 0 bytes with 253 fds (SCM_MAX_FD) from the pool.

Every one is to be refused. Sends block while the socket's queue is full, for 0.1 s at most. It
prints one JSON line: {"sent": N, "by_kind": [...], "full": timeouts, "errors": {errno: N}}.
"""

import errno
import json
import os
import socket
import struct
import sys
import time

import orphand  # copied beside this script: sectest.shared_dir()
from lingering import raise_fd_limit

REGISTER = orphand.Action.REGISTER


def unix_with_queue():
    """A Unix socket with bytes and an fd (a pipe's read end) queued in it; its peer and the
    pipe's ends are closed here, so the socket alone holds that fd."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    a.sendmsg([b"queued" * 100], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", r))])
    os.close(r)
    os.close(w)
    a.close()
    return b.detach()


def pipe_end():
    """A pipe's read end with bytes in the pipe, its write end closed."""
    r, w = os.pipe()
    os.write(w, b"x" * 512)
    os.close(w)
    return r


def fresh(n):
    return [pipe_end() if i % 2 else unix_with_queue() for i in range(n)]


def main():
    raise_fd_limit()
    path = sys.argv[1] + orphand.DATAGRAM_SUFFIX
    seconds, victim = float(sys.argv[2]), int(sys.argv[3])
    me = os.getpid()
    pool = fresh(200)
    extra = fresh(53)
    reg = orphand.Record(me, victim, REGISTER).pack()
    kinds = [
        lambda: (reg, pool, False),
        lambda: (reg, fresh(200), True),
        lambda: (reg + b"\0", pool, False),
        lambda: (reg, [], False),
        lambda: (b"", pool + extra, False),
    ]
    rounds = [1] + [0, 2, 3, 4] * 4
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    s.settimeout(0.1)
    print("ready", flush=True)
    sys.stdin.readline()
    sent, full, errors = 0, 0, {}
    by_kind = [0] * len(kinds)
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        k = rounds[i % len(rounds)]
        i += 1
        data, fds, close = kinds[k]()
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        try:
            s.sendmsg([data], anc if fds else [], 0, path)
            sent += 1
            by_kind[k] += 1
        except TimeoutError:
            full += 1
        except OSError as e:
            # ETOOMANYREFS: this uid has as many fds in flight as its RLIMIT_NOFILE allows.
            name = errno.errorcode.get(e.errno, str(e.errno))
            errors[name] = errors.get(name, 0) + 1
        finally:
            if close:
                for fd in fds:
                    os.close(fd)
    print(json.dumps({"sent": sent, "by_kind": by_kind, "full": full, "errors": errors}),
          flush=True)


if __name__ == "__main__":
    main()
