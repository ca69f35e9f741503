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

def malformed(path, victim_pid):
    """A catalogue of odd datagrams; prints what each send did. `victim_pid`: a process of
    another user (root) that nobody may not signal."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    me = os.getpid()
    rec = lambda p, c, a: struct.pack("III", p & 0xffffffff, c & 0xffffffff, a & 0xffffffff)
    kid = os.fork()
    if kid == 0:
        time.sleep(30)
        os._exit(0)
    kid_fd = os.pidfd_open(kid)
    victim_fd = os.pidfd_open(victim_pid)
    thread_fd = -1
    try:
        thread_fd = os.pidfd_open(threading_tid(), os.O_EXCL)  # PIDFD_THREAD
    except OSError:
        pass
    cases = [
        ("empty", [b""], []),
        ("11 bytes", [rec(me, kid, 1)[:11]], []),
        ("13 bytes", [rec(me, kid, 1) + b"x"], []),
        ("64 KiB", [bytes(65000)], []),
        ("two iovecs making 12 bytes", [rec(me, kid, 1)[:6], rec(me, kid, 1)[6:]], []),
        ("PING", [rec(me, kid, 3)], []),
        ("HELLO", [rec(0x4f52504e, 1, 4)], []),
        ("LIST", [rec(0, 0, 5)], []),
        ("STATUS", [rec(0, 0, 6)], []),
        ("action 0", [rec(me, kid, 0)], []),
        ("action ~0", [rec(me, kid, -1)], []),
        ("REGISTER 0 0", [rec(0, 0, 1)], []),
        ("REGISTER self self", [rec(me, me, 1)], []),
        ("REGISTER self -> pid 1", [rec(me, 1, 1)], []),
        ("REGISTER self -> pid 2", [rec(me, 2, 1)], []),
        ("REGISTER self -> victim (root)", [rec(me, victim_pid, 1)], []),
        ("REGISTER self -> victim pidfd", [rec(me, victim_pid, 1)], [victim_fd]),
        ("REGISTER self -> kid pidfd, pid mismatch", [rec(me, kid + 1, 1)], [kid_fd]),
        ("REGISTER victim -> kid, victim pidfd as parent", [rec(victim_pid, kid, 1)],
         [kid_fd, victim_fd]),
        ("REGISTER self -> kid, 3 pidfds", [rec(me, kid, 1)], [kid_fd, kid_fd, kid_fd]),
        ("REGISTER self -> kid, thread pidfd", [rec(me, kid, 1)],
         [thread_fd] if thread_fd >= 0 else []),
        ("REGISTER self -> kid, pipe as child", [rec(me, kid, 1)], [KEEP_PIPE[0]]),
        ("REGISTER 0xffffffff -> kid", [rec(-1, kid, 1)], [kid_fd]),
        ("REGISTER self -> kid with explicit creds", [rec(me, kid, 1)], [kid_fd], True),
        ("UNREGISTER victim -> victim", [rec(victim_pid, victim_pid, 2)], []),
        ("UNREGISTER self -> kid", [rec(me, kid, 2)], []),
        ("UNREGISTER with pidfds", [rec(me, kid, 2)], [kid_fd, victim_fd]),
        ("REGISTER self -> kid (valid)", [rec(me, kid, 1)], [kid_fd]),
        ("REGISTER self -> kid again (already bound)", [rec(me, kid, 1)], [kid_fd]),
        ("253 x kid pidfd", [rec(me, kid, 1)], [kid_fd] * 253),
    ]
    for case in cases:
        name, iov, fds = case[0], case[1], case[2]
        anc = []
        if len(case) > 3:
            anc.append((socket.SOL_SOCKET, socket.SCM_CREDENTIALS,
                        struct.pack("iII", me, os.getuid(), os.getgid())))
        if fds:
            anc.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds)))
        try:
            s.sendmsg(iov, anc, 0, path)
            print(f"{name}: sent", flush=True)
        except OSError as e:
            print(f"{name}: {e}", flush=True)
        time.sleep(0.01)
    print(f"kid {kid}", flush=True)


KEEP_PIPE = os.pipe()


def threading_tid():
    import threading
    tid = []
    ev = threading.Event()
    def run():
        tid.append(threading.get_native_id())
        ev.wait()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    while not tid:
        time.sleep(0.001)
    KEEP.append(ev)
    return tid[0]


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
    elif mode == "malformed":
        malformed(path, int(sys.argv[3]))
    elif mode == "exit-hang":
        closer_fill(path, int(sys.argv[3]), int(sys.argv[4]))
        queued_lingering(path, int(sys.argv[3]),
                         sys.argv[5].split(",") if len(sys.argv) > 5 else ("dgram", "stream"))
    else:
        raise SystemExit(f"unknown mode {mode}")
    sys.stdin.read()  # hold until told


if __name__ == "__main__":
    main()
