# SPDX-License-Identifier: MIT
"""As nobody, attacks on the datagram socket (PATH.dgram) that stall the daemon for everyone.

A datagram's fds are taken like a connection's (the ones that are not pidfds go to the
FdCloser), but the datagram socket is throttled only as a whole: reading stops while the
FdCloser holds FdCloser::kMaxPending (512) fds, whoever sent them, and so does accepting
connections. Each uid's fds are closed by one worker in turn, so one close that never returns
keeps every later fd of that uid pending.

D1  nobody blocks its worker on a lingering close (a TCP socket on 127.0.0.1 with SO_LINGER
    whose peer, held by nobody, never reads) and sends 3 datagrams of 253 pipe ends: 759 fds
    pending, or fewer where orphand refuses fds by datagram while its FdCloser is busy (EPERM,
    Linux 6.16; the attacker tries each again for a while, then counts it refused). Checked
    while nobody holds on: a PING on a new connection within BOUND; a root binding registered
    over a new connection, and another user's (OTHER's) registered with a datagram as the shim
    does, each carried out within BOUND of its parent's SIGKILL; and the daemon's fds back to
    their baseline once nobody is gone. (Over connections the same fds leave the daemon serving:
    the worker's uid is throttled at kMaxPendingPerUid, 32.)
D2  D1, then one more datagram carrying a lingering TCP socket, left in the datagram socket's
    queue; then SIGTERM. Checked: orphand exits within BOUND (closing its datagram socket
    releases the fds queued in it, on the loop's thread).
D3  orphand's fd limit is lowered to NOFILE (2,048; prlimit after start, so that max_processes
    keeps its default) and it is stopped (SIGSTOP, as a busy daemon would be late) while nobody
    queues 10 datagrams of 253 fds, the last fd a lingering TCP socket. Read all at once, they
    would bring more fds than orphand has left, and the kernel would release the ones it
    cannot install, the lingering socket among them, in the loop's thread. Checked: a root witness
    bound before is killed within BOUND of its parent's SIGKILL, and a PING within BOUND.

Every figure is printed whether or not it passes; the failures are reported together at the end.
"""

import array
import os
import resource
import signal
import socket
import struct
import subprocess
import time

import orphand
import orphtest as ot
import sectest as st
from sectest import NOBODY, OTHER, duration, report

BOUND = 3.0        # seconds: a kill, a PING, an exit
LINGER = 600       # seconds a lingering close may take (the attacker's exit ends it sooner)
NOFILE = int(os.environ.get("ORPHAND_TEST_DGRAM_NOFILE", "2048"))

class Attacker:
    """dgram_attack.py as nobody: each line it prints is one step done; it holds all it made
    until finish()."""

    def __init__(self, d, *ops):
        self.p, self.pidfd = ot.spawn(
            st.as_user(NOBODY, st.script("dgram_attack.py", d.socket + orphand.DATAGRAM_SUFFIX,
                                         *map(str, ops))),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def line(self, timeout=60):
        line = st.read_line(self.p, timeout)
        if not line:
            self.finish()
            ot.fail(f"attacker failed: {self.p.stderr.read()}")
        print(f"  attacker: {line.strip()}")
        return line

    def finish(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=ot.TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            self.p.wait()


def send_record(sock_type, path, parent, child, child_fd):
    """A legacy REGISTER with the child's pidfd, as the shim sends it: one datagram, or one
    record on a connection of its own; True if sent."""
    with socket.socket(socket.AF_UNIX, sock_type | socket.SOCK_CLOEXEC) as s:
        s.settimeout(BOUND)
        try:
            if sock_type == socket.SOCK_STREAM:
                s.connect(path)
            s.sendmsg([ot.record(parent, child, ot.REGISTER)],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [child_fd]))],
                      0, *([path] if sock_type == socket.SOCK_DGRAM else []))
            return True
        except OSError as e:
            print(f"  send failed: {e}")
            return False


OTHER_REGISTER = """
import array, os, socket, sys, time
path = sys.argv[1]
pid = os.fork()
if pid == 0:
    time.sleep(600)
    os._exit(0)
fd = os.pidfd_open(pid)
rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendmsg([ORPHAND_RECORD], rights, 0, path + ".dgram")
except OSError:  # as the shim: refused (EPERM while the daemon takes no fds), then connect
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendmsg([ORPHAND_RECORD], rights)
print(pid, flush=True)
sys.stdin.read()
"""


def other_user_binding(d):
    """OTHER forks a child and registers it as the shim does (parent: itself): with a datagram,
    or over a connection if the datagram is refused;
    returns (parent Popen, parent pidfd, child pidfd)."""
    code = OTHER_REGISTER.replace(
        "ORPHAND_RECORD", "__import__('struct').pack('III', os.getpid(), pid, 1)")
    p, pfd = ot.spawn(st.as_user(OTHER, st.python("-c", code, d.socket)),
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = int(p.stdout.readline())
    return p, pfd, os.pidfd_open(child)


def dead_within(pidfd, timeout):
    t0 = time.monotonic()
    return time.monotonic() - t0 if ot.wait_pidfd(pidfd, timeout) else None


def closer_fill():
    print("D1: nobody holds the FdCloser full through the datagram socket (a lingering close, "
          "then 759 fds)")
    with st.daemon() as d:
        fds_before = st.settled_fds(d)
        a = Attacker(d, "fill", LINGER, 3)
        a.line()
        time.sleep(0.3)
        ping = st.ping_latency(d, BOUND)
        report(ping is not None, f"D1: PING on a new connection within {BOUND:.0f} s "
                                 f"(took {duration(ping)})")
        # root registers over a new connection
        parent, parent_fd = ot.sleeper()
        child, child_fd = ot.sleeper()
        ot.check(send_record(socket.SOCK_STREAM, d.socket, parent.pid, child.pid, child_fd),
                 "D1: root's registration not sent")
        # another user registers with a datagram, as the shim does
        o, o_fd, o_child_fd = other_user_binding(d)
        time.sleep(0.2)
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        o.stdin.close()
        root_killed = dead_within(child_fd, BOUND)
        other_killed = dead_within(o_child_fd, BOUND)
        report(root_killed is not None, f"D1: root's child, registered over a new connection, "
                                        f"dead within {BOUND:.0f} s of its parent's death "
                                        f"(took {duration(root_killed)})")
        report(other_killed is not None, f"D1: uid {OTHER}'s child, registered with a datagram, "
                                         f"dead within {BOUND:.0f} s of its parent's exit "
                                         f"(took {duration(other_killed)})")
        a.finish()
        late = (dead_within(child_fd, ot.TIMEOUT), dead_within(o_child_fd, ot.TIMEOUT))
        print(f"  once nobody left: root's child dead {late[0] is not None}, "
              f"uid {OTHER}'s child dead {late[1] is not None}")
        if late[1] is None:
            signal.pidfd_send_signal(o_child_fd, signal.SIGKILL)
        ot.reap(o)
        fds = st.wait_fds(d, fds_before)
        report(fds == fds_before, f"D1: daemon fds back to {fds_before} once nobody is gone "
                                  f"(now {fds})")


def exit_with_queued_fd():
    print("D2: SIGTERM while a lingering TCP socket waits in the datagram socket's queue")
    d = st.daemon()
    d.start()
    a = None
    try:
        # While the daemon is stopped, all four are queued; once it runs, it reads the first
        # (whose close then blocks a worker), takes no more fds by datagram, reads the second
        # and stops there: the last, with a lingering socket, is still queued at exit.
        with d.stopped():
            a = Attacker(d, "stall", LINGER)
            a.line()
        d.wait_until(lambda: d.read_log().count(f"uid {NOBODY}:") >= 2,
                     "two of the four datagrams to be read")
        t0 = time.monotonic()
        signal.pidfd_send_signal(d.pidfd, signal.SIGTERM)
        exited = ot.wait_pidfd(d.pidfd, BOUND)
        took = time.monotonic() - t0 if exited else None
        report(exited, f"D2: orphand exits within {BOUND:.0f} s of SIGTERM (took {duration(took)})")
        if not exited:
            print(f"  its main thread: {main_thread(d.pid)}")
    finally:
        if a:
            a.finish()
        d.stop()


def main_thread(pid):
    """Where the daemon's main thread is in the kernel, innermost first."""
    try:
        with open(f"/proc/{pid}/stack") as f:
            return " < ".join(l.split()[1].split("+")[0] for l in f if l.strip())[:120]
    except OSError:
        return "?"


def emfile_on_the_loop():
    print(f"D3: queued datagrams carry more fds than orphand has left (fd limit {NOFILE}); "
          f"the one the kernel cannot install lingers")
    with st.daemon() as d:
        resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
        parent, parent_fd, child, child_fd = st.root_binding(d, "root witness binding")
        with d.stopped():
            a = Attacker(d, "burst", LINGER, 10)
            a.line()
        time.sleep(0.3)
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        killed = dead_within(child_fd, BOUND)
        print(f"  daemon fds {st.open_fds(d.pid)}; its main thread: {main_thread(d.pid)}")
        report(killed is not None, f"D3: witness child dead within {BOUND:.0f} s of its "
                                   f"parent's SIGKILL (took {duration(killed)})")
        ping = st.ping_latency(d, BOUND)
        report(ping is not None, f"D3: PING within {BOUND:.0f} s (took {duration(ping)})")
        a.finish()
        ot.check(dead_within(child_fd, ot.TIMEOUT) is not None, "D3: witness never killed")


def main():
    closer_fill()
    exit_with_queued_fd()
    emfile_on_the_loop()
    st.end_report()


ot.run(main)
