# SPDX-License-Identifier: MIT
"""As nobody, datagrams whose first passed fd's last close() blocks: only nobody's own later
closes may wait for it (fd_closer.hpp), everyone else is served.

The fd is test_freeze's F1 socket: a TCP socket on 127.0.0.1 with SO_LINGER {1, LINGER s} whose
peer, held by the attacker, never reads, and whose send queue is full. The attacker sends it in
a datagram with 252 other fds, then three datagrams of 253 fds (SCM_MAX_FD), closing its own
copies at once, so that the daemon's close of the socket is the last. The daemon is stopped
(SIGSTOP) while the attacker sends, as a busy daemon would be late, so that this holds on any
machine.

While the attacker holds its ground, root must be served within BOUND seconds: a PING over the
stream socket, an acknowledged REGISTER, a REGISTER sent as the shim sends it (by datagram, which
the kernel refuses with EPERM while the daemon takes no fds by datagram, then over a connection;
its parent killed at once, its child must die), and a binding made before (its parent killed,
its child must die). Every figure
is printed; the failures are reported together at the end. Once the attacker is gone, the
daemon's fds are back to their baseline.
"""

import json
import signal
import socket
import struct
import subprocess
import time

import orphand
import orphtest as ot
import sectest as st
from sectest import NOBODY, OK, duration, report

BOUND = 3.0   # seconds: each thing root asks for
LINGER = 30   # seconds the attacker's lingering close may take

def timed(fn):
    """Runs fn(); returns (its result or the exception it raised, seconds taken)."""
    start = time.monotonic()
    try:
        result = fn()
    except (OSError, AssertionError) as e:
        result = e
    return result, time.monotonic() - start


def register(d, parent, child):
    with orphand.Connection(d.socket, BOUND) as c:
        r = c.call(ot.REGISTER, parent, child)
        return r.error, r.reason


def paused(p):
    """The attacker's results up to its next pause."""
    line = st.read_line(p)
    if not line:
        ot.fail("the attacker stopped answering")
    return json.loads(line)


def kill_parent(parent_fd, child_fd, what):
    """SIGKILLs a bound parent; reports whether its child dies within BOUND."""
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    start = time.monotonic()
    died = ot.wait_pidfd(child_fd, BOUND)
    report(died, f"{what}: child {'dead' if died else 'alive'} after "
           f"{time.monotonic() - start:.2f} s (bound {BOUND} s)")


def main():
    with st.daemon() as d:
        fds_before = st.baseline_fds(d)  # with no binding, as at the end
        guard_parent, guard_parent_fd, guard_child, guard_child_fd = st.root_binding(d)

        junk = ot.record(1, 2, ot.PING).hex()  # refused: PING needs a connection
        ops = [{"pause": True},
               {"dgram": junk, "fds": [f"lingering-tcp:{LINGER}", "many:252"]},
               {"dgram": junk, "fds": ["many:253"]},
               {"dgram": junk, "fds": ["many:253"]},
               {"dgram": junk, "fds": ["many:253"]},
               {"pause": True}]
        p, p_fd = ot.spawn(st.as_user(NOBODY, st.script("client.py")), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
        p.stdin.write(json.dumps({"socket": d.socket, "ops": ops}) + "\n")
        p.stdin.flush()
        paused(p)

        with d.stopped():
            p.stdin.write("go\n")
            p.stdin.flush()
            res = paused(p)
        sent = res[1:5]
        ot.check(all(r.get("sent") == 12 and r.get("closes_returned") for r in sent),
                 f"the attacker's datagrams: {sent}")
        ot.check(sent[0]["stuck"][0] > 0, f"the lingering socket's send queue is empty: {sent}")
        print(f"nobody sent 4 datagrams with 1,012 fds, the first a TCP socket lingering "
              f"{LINGER} s with {sent[0]['stuck'][0]} bytes stuck; its own closes returned")
        # Once the first is read, its fds wait to be closed: from then on no sender may pass
        # fds by datagram (SO_PASSRIGHTS), and what is queued is read only while the daemon's
        # limit of fds waiting (FdCloser::kMaxPending) stays out of reach: two of the four.
        d.wait_until(lambda: d.read_log().count(f"from pid {p.pid} uid {NOBODY}") >= 2,
                     "two of the attacker's datagrams to be refused")

        print("while the attacker holds its ground, root asks:")
        took = st.ping_latency(d, BOUND)
        report(took is not None and took <= BOUND,
               f"a PING over the stream socket: answered after {duration(took)} (bound {BOUND} s)")

        parent, parent_fd = ot.sleeper()
        child, child_fd = ot.sleeper()
        registered, took = timed(lambda: register(d, parent.pid, child.pid))
        report(registered == (0, OK) and took <= BOUND,
               f"an acknowledged REGISTER: {registered!r} after {took:.2f} s (bound {BOUND} s)")

        parent2, parent2_fd = ot.sleeper()
        child2, child2_fd = ot.sleeper()
        # As the shim does: by datagram, or over a connection when the datagram is refused
        # (here: EPERM, fds are not taken by datagram for now).
        refused = None
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            try:
                s.sendmsg([ot.record(parent2.pid, child2.pid, ot.REGISTER)],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", child2_fd))],
                          0, d.socket + orphand.DATAGRAM_SUFFIX)
            except OSError as e:
                refused = e
        report(isinstance(refused, PermissionError),
               f"a datagram with an fd while fds wait to be closed: {refused!r}, not EPERM")
        if refused is not None:
            registered2, took = timed(lambda: register(d, parent2.pid, child2.pid))
            report(registered2 == (0, OK) and took <= BOUND,
                   f"the same REGISTER over a connection: {registered2!r} after {took:.2f} s")
        kill_parent(parent2_fd, child2_fd,
                    "a REGISTER (by datagram, else connected), its parent then killed")
        kill_parent(guard_parent_fd, guard_child_fd, "a binding made before, its parent killed")

        # The attacker goes: its TCP peer is closed, which ends the lingering close.
        p.stdin.write("\n")
        p.stdin.close()
        p.wait(timeout=ot.TIMEOUT)
        ot.check(d.alive() and d.ping(), "orphand is not serving once the attacker is gone")
        if registered == (0, OK):
            signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
            ot.check(ot.wait_pidfd(child_fd), "the binding acknowledged during the attack is "
                     "not enforced")
        for proc in (guard_parent, guard_child, parent, child, parent2, child2):
            ot.reap(proc)
        d.wait_until(lambda: not d.bindings(), "every binding to go")
        d.wait_until(lambda: st.settled_fds(d) == fds_before, f"daemon fds back to {fds_before}")
        print(f"  daemon fds back to {fds_before} once the attacker is gone")
        st.end_report()


ot.run(main)
