# SPDX-License-Identifier: MIT
"""The shim registers a child with one datagram where orphand has a datagram socket, and over
the stream socket where it has none or its queue is full: either way the child dies with its
program.

Usage: test_datagram.py
"""

import contextlib
import os
import socket

import orphand
import orphtest as ot
import shimtest as st

# The program under the shim: two children, reported, then it kills itself on a line of input.
BASH = ["bash", "-c", "sleep 600 & echo pid $!; sleep 600 & echo pid $!; echo ready; read x; "
        "kill -KILL $$"]


def read_children(p):
    """The children the program reports, tracked at once (their parent, alive, has not reaped
    them): if the test fails before they are killed, it still ends them."""
    pids = p.read_pids()
    for pid in pids:
        ot.track(pid)
    return pids


def kill_bash(p):
    def kill():
        p.proc.stdin.write(b"go\n")
        p.proc.stdin.flush()
        p.proc.wait()
    return kill


def by_datagram():
    """With the stream socket's path renamed away, the shim can reach orphand only through the
    datagram socket: the bindings still appear (a stream registration would fail with ENOENT,
    which ORPHAND_DEBUG=1 reports)."""
    with ot.Daemon() as d:
        path, away = d.socket, d.socket + ".away"
        os.rename(path, away)
        try:
            p = st.Parent(BASH, d)  # ORPHAND_SOCKET is the original path
            d.socket = away         # the test's own requests
            pids = read_children(p)
            st.wait_bound(d, pids)
        finally:
            if d.socket == away:
                d.socket = path
            os.rename(away, path)
        for b in d.bindings():
            if b["child"] in pids:
                ot.check(b["parent"] == p.proc.pid and b["registrant"] == p.proc.pid,
                         f"binding not made for bash by bash: {b}")
        st.expect_children_killed(d, p, pids, kill=kill_bash(p))
        print(f"  stream socket renamed away: {len(pids)} children bound by datagram, killed")


def without_datagram_socket():
    """The datagram socket's path is gone: the shim connects to the stream socket."""
    with ot.Daemon() as d:
        os.unlink(d.socket + orphand.DATAGRAM_SUFFIX)
        p = st.Parent(BASH, d)
        pids = read_children(p)
        st.expect_children_killed(d, p, pids, kill=kill_bash(p))
        print(f"  no datagram socket: {len(pids)} children bound over the stream, killed")


def datagram_queue_full():
    """The datagram socket's queue is full (orphand is stopped and the test filled it): the
    shim's datagram meets EAGAIN and it connects instead."""
    with ot.Daemon() as d:
        path = d.socket + orphand.DATAGRAM_SUFFIX
        with d.stopped():
            # Harmless records: UNREGISTER of a binding that does not exist.
            filler = ot.record(os.getpid(), 1, ot.UNREGISTER)
            queued = 0
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                with contextlib.suppress(BlockingIOError):
                    while queued < 10000:
                        s.sendto(filler, socket.MSG_DONTWAIT, path)
                        queued += 1
            ot.check(0 < queued < 10000, f"the datagram queue did not fill: {queued} sent")
            p = st.Parent(BASH, d)
            pids = read_children(p)
        st.expect_children_killed(d, p, pids, kill=kill_bash(p))
        print(f"  datagram queue full ({queued} queued): {len(pids)} children bound over the "
              "stream, killed")


def main():
    st.setup()
    by_datagram()
    without_datagram_socket()
    datagram_queue_full()


if __name__ == "__main__":
    ot.run(main)
