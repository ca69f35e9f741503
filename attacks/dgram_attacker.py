#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Hostile datagram sender (run as an unprivileged user). Usage:

  dgram_attacker.py DGRAM_PATH MODE [ARGS...]

MODE closer-fill LINGER NDGRAMS: passes the daemon, in a datagram, a TCP socket on 127.0.0.1
whose last close() lingers up to LINGER seconds (SO_LINGER, peer never reads, send queue full),
so that the FdCloser's worker for our uid blocks on it; then NDGRAMS datagrams of 253 fds each
(copies of one pipe end). Every datagram carries a 12-byte REGISTER record (which the daemon
refuses: fds not pidfds). Then prints "ready" and holds everything (the lingering socket's
peer) until stdin closes.
MODE stream-fill LINGER NCONNS: the same over NCONNS stream connections (the control).
MODE exit-hang LINGER NDGRAMS [dgram,stream]: closer-fill, then one more lingering socket queued
in the paused datagram socket and/or in an unaccepted connection.
MODE emfile SHORT LONG N: see emfile().
MODE flood NFDS SECONDS PROCS: see flood().
"""

import array
import os
import socket
import struct
import sys
import time
import fcntl
import termios

KEEP = []


def lingering_tcp(seconds):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        a.connect(listener.getsockname())
        b, _ = listener.accept()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    KEEP.append(b)  # the peer: never read
    a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, seconds))
    a.setblocking(False)
    chunk = bytes(1 << 16)
    refused = 0
    while refused < 2:
        try:
            a.send(chunk)
            refused = 0
        except BlockingIOError:
            refused += 1
            time.sleep(0.01)
    queued = bytearray(4)
    fcntl.ioctl(a.fileno(), termios.TIOCOUTQ, queued)
    return a.detach(), struct.unpack("i", queued)[0]


def wrapped_lingering(seconds):
    """A Unix socket whose receive queue holds the only reference to a lingering TCP socket:
    whoever closes it last closes the TCP socket last, and waits. (Passing the TCP socket
    directly races the daemon: if it closes its copy before we close ours, ours is the last.)"""
    lfd, stuck = lingering_tcp(seconds)
    x, y = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    x.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [lfd]))])
    t0 = time.monotonic()
    os.close(lfd)
    x.close()
    took = time.monotonic() - t0
    return y.detach(), stuck, took


def close_aside(fd):
    """Closes fd on a thread; True if the close returned within 0.5 s (else ours was the last
    reference and this attacker, not the daemon, is the one waiting)."""
    import threading
    t = threading.Thread(target=os.close, args=(fd,), daemon=True)
    t.start()
    t.join(0.5)
    return not t.is_alive()


def send_fds(s, path, fds, record=struct.pack("III", os.getpid(), 1, 1)):
    s.sendmsg([record], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))], 0, path)


def pass_lingering(path, linger, attempts=50, stream=False):
    """Passes the daemon a lingering TCP socket, last in a datagram after 252 pipe ends, and
    closes our copy at once (on a thread started beforehand). Our close returning at once means
    the daemon holds the last reference; if the daemon was faster, ours is the last, that thread
    waits instead, and we try again with a fresh socket. Returns (attempts, bytes stuck)."""
    import threading
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    r, w = os.pipe()
    KEEP.extend([r, w])
    for attempt in range(1, attempts + 1):
        lfd, stuck = lingering_tcp(linger)
        go = threading.Event()
        t = threading.Thread(target=lambda: (go.wait(), os.close(lfd)), daemon=True)
        t.start()
        if stream:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(path[:-len(".dgram")])
            c.sendmsg([struct.pack("III", os.getpid(), 1, 1)],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r] * 252 + [lfd]))])
            KEEP.append(c)
        else:
            send_fds(s, path, [r] * 252 + [lfd])
        go.set()
        t.join(0.5)
        if not t.is_alive():
            return attempt, stuck
    raise SystemExit("the daemon always closed the lingering socket first")


def closer_fill(path, linger, ndgrams):
    """Blocks the FdCloser's worker for our uid on a lingering close, then sends ndgrams more
    datagrams of 253 fds each (3: 759 fds pending, the FdCloser is full at 512)."""
    attempts, stuck = pass_lingering(path, linger)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    r, w = os.pipe()
    KEEP.extend([r, w])
    for i in range(ndgrams):
        send_fds(s, path, [r] * 253)
    print(f"ready stuck={stuck} attempts={attempts}", flush=True)


def queued_lingering(path, linger, which=("dgram", "stream")):
    """One more datagram whose only fd is a lingering TCP socket, left in the daemon's queue
    (its reading is paused), and one stream connection with another, left in its backlog."""
    time.sleep(0.3)  # the daemon has read the fill and paused
    if "dgram" in which:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        lfd, _ = lingering_tcp(linger)  # queued while reading is paused: no race
        send_fds(s, path, [lfd])
        os.close(lfd)
    if "stream" not in which:
        print("queued", flush=True)
        return
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path[:-len(".dgram")])
    lfd, _, _ = wrapped_lingering(linger)
    c.sendmsg([struct.pack("III", 1, 2, 1)],
              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [lfd]))])
    os.close(lfd)
    KEEP.append(c)
    print("queued", flush=True)


def flood(path, nfds, seconds, procs):
    """`procs` processes each send datagrams of `nfds` copies of one pipe end (blocking sends)
    for `seconds`; prints how many were sent."""
    kids = []
    for _ in range(procs - 1):
        pid = os.fork()
        if pid == 0:
            kids = None
            break
        kids.append(pid)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    r, w = os.pipe()
    fds = [r] * nfds
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if nfds:
                send_fds(s, path, fds)
            else:
                s.sendto(struct.pack("III", os.getpid(), 1, 1), path)
            n += 1
        except OSError:
            pass
    if kids is None:
        os._exit(0)
    for k in kids:
        os.waitpid(k, 0)
    print(f"sent {n} (this process)", flush=True)


def emfile(path, short, long_, n):
    """Pauses the daemon's reading for `short` seconds (closer-fill with a lingering close that
    ends then), queues `n` datagrams of 253 fds meanwhile, the last fd of the last one a TCP
    socket lingering `long_` seconds, and lets the daemon read them all in one recvmmsg: more fds
    than it has left, so the kernel releases the rest, the lingering socket among them, in the
    daemon's own thread."""
    closer_fill(path, short, 3)
    time.sleep(0.3)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setblocking(False)
    r, w = os.pipe()
    KEEP.append(w)
    lfd, stuck = lingering_tcp(long_)
    sent = 0
    for i in range(n):
        fds = [r] * 253 if i < n - 1 else [r] * 252 + [lfd]
        try:
            send_fds(s, path, fds)
            sent += 1
        except BlockingIOError:
            break
    os.close(lfd)
    print(f"queued {sent} of {n} datagrams while reading is paused", flush=True)


def stream_fill(path, linger, nconns):
    """The same as closer-fill over stream connections (the lingering socket, then `nconns`
    connections with one message of 253 fds each): the control, where the daemon throttles
    each uid at FdCloser::kMaxPendingPerUid."""
    attempts, stuck = pass_lingering(path, linger, stream=True)
    r, w = os.pipe()
    KEEP.extend([r, w])
    for i in range(nconns):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path[:-len(".dgram")])
        c.sendmsg([struct.pack("III", os.getpid(), 1, 1)],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r] * 253))])
        KEEP.append(c)
    print(f"ready stuck={stuck} attempts={attempts}", flush=True)

def main():
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "closer-fill":
        closer_fill(path, int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "flood":
        flood(path, int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        return
    elif mode == "emfile":
        emfile(path, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "stream-fill":
        stream_fill(path, int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "exit-hang":
        closer_fill(path, int(sys.argv[3]), int(sys.argv[4]))
        queued_lingering(path, int(sys.argv[3]),
                         sys.argv[5].split(",") if len(sys.argv) > 5 else ("dgram", "stream"))
    else:
        raise SystemExit(f"unknown mode {mode}")
    sys.stdin.read()  # hold until told


if __name__ == "__main__":
    main()
