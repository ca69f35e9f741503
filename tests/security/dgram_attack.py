# SPDX-License-Identifier: MIT
"""A hostile sender of datagrams to orphand's datagram socket, run as another user by
test_datagram.py. Usage: dgram_attack.py DGRAM_PATH OP [ARGS...]; it prints one line per step
("ready ...", "queued ...") and then holds everything it made (its lingering sockets' peers
above all) until stdin reaches EOF.

  fill LINGER N       Blocks the FdCloser's worker for this uid on a lingering close (a TCP
                      socket on 127.0.0.1 with SO_LINGER {1, LINGER} whose peer never reads and
                      whose send queue is full, sent last in a datagram after 252 pipe ends, our
                      copy closed at once; tried again if the daemon was faster and ours was the
                      last close), then sends N datagrams of 253 pipe ends each: with N = 3, 759
                      fds wait to be closed, over FdCloser::kMaxPending (512), unless the daemon
                      refuses them (EPERM, tried again for a while: "refused K").
  queue LINGER        Then: one more datagram whose one fd is a lingering TCP socket (left in
                      the datagram socket's queue if the daemon reads nothing).
  burst LINGER N      N datagrams of 253 fds each, sent at once without waiting (EAGAIN ends
                      them), the last fd of the last one a lingering TCP socket; our copy closed
                      after the last send ("queued K"). Meant for a stopped daemon.

Every datagram carries a 12-byte REGISTER record naming this process and pid 1, which the
daemon refuses (its fds are not pidfds).
"""

import array
import os
import socket
import struct
import sys
import threading
import time

from lingering import lingering_tcp, raise_fd_limit  # copied beside: sectest.shared_dir()

KEEP = []  # held until the script exits: pipe ends, and lingering sockets' peers (never read)


def record():
    return struct.pack("III", os.getpid(), 1, 1)


def send_fds(s, path, fds):
    s.sendmsg([record()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))], 0,
              path)


def try_send_fds(s, path, fds, tries=20):
    """send_fds, tried again while the daemon refuses fds by datagram (EPERM: SO_PASSRIGHTS,
    Linux 6.16, is off while its FdCloser is busy), as a persistent attacker would; False if
    every try was refused."""
    for _ in range(tries):
        try:
            send_fds(s, path, fds)
            return True
        except PermissionError:
            time.sleep(0.01)
    return False


def pipe_end():
    r, w = os.pipe()
    KEEP.extend([r, w])
    return r


def fill(path, linger, n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    r = pipe_end()
    for attempt in range(1, 51):
        lfd, stuck = lingering_tcp(linger, KEEP)
        go = threading.Event()
        t = threading.Thread(target=lambda: (go.wait(), os.close(lfd)), daemon=True)
        t.start()
        sent = try_send_fds(s, path, [r] * 252 + [lfd])
        go.set()
        t.join(0.5)
        if sent and not t.is_alive():
            break
    else:
        raise SystemExit("the daemon closed the lingering socket before us, or refused it, "
                         "50 times")
    # Once the daemon has read one of these, the lingering close holds its FdCloser busy, and
    # a daemon on Linux 6.16 or later refuses fds by datagram: the rest are then refused.
    refused = sum(not try_send_fds(s, path, [r] * 253) for _ in range(n))
    print(f"ready stuck={stuck} attempts={attempt} refused={refused}", flush=True)


def queue(path, linger):
    time.sleep(0.3)  # the daemon has read what fill sent, and stopped reading
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    lfd, stuck = lingering_tcp(linger, KEEP)
    send_fds(s, path, [lfd])
    os.close(lfd)
    print(f"queued stuck={stuck}", flush=True)


def burst(path, linger, n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setblocking(False)
    r = pipe_end()
    lfd, stuck = lingering_tcp(linger, KEEP)
    sent = 0
    for i in range(n):
        try:
            send_fds(s, path, [r] * 253 if i < n - 1 else [r] * 252 + [lfd])
            sent += 1
        except BlockingIOError:
            break
    os.close(lfd)
    print(f"queued {sent} stuck={stuck}", flush=True)


def stall(path, linger):
    """For a stopped daemon: a datagram whose first fd's close lingers, two of 253 pipe ends,
    and one more with a lingering socket, all queued; the attacker's copies closed."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setblocking(False)
    r = pipe_end()
    stuck = []
    for fds in ("lingering", "pipes", "pipes", "lingering"):
        if fds == "lingering":
            lfd, n = lingering_tcp(linger, KEEP)
            stuck.append(n)
            send_fds(s, path, [lfd] + [r] * 252)
            os.close(lfd)
        else:
            send_fds(s, path, [r] * 253)
    print(f"queued 4 stuck={stuck}", flush=True)


def main():
    raise_fd_limit()
    path, args = sys.argv[1], sys.argv[2:]
    while args:
        op = args.pop(0)
        if op == "fill":
            fill(path, int(args.pop(0)), int(args.pop(0)))
        elif op == "queue":
            queue(path, int(args.pop(0)))
        elif op == "stall":
            stall(path, int(args.pop(0)))
        elif op == "burst":
            burst(path, int(args.pop(0)), int(args.pop(0)))
        else:
            raise SystemExit(f"unknown op {op!r}")
    sys.stdin.read()


if __name__ == "__main__":
    main()
