# SPDX-License-Identifier: MIT
"""Out of file descriptors: excess registrations are refused, earlier bindings still hold, and
orphand keeps serving (and accepts again once fds are free)."""

import errno
import resource
import signal
import socket

import itest as it
import orphtest as ot

LIMIT = 48


def nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        line = next(l for l in f if l.startswith("Max open files"))
    return int(line.split()[3]), int(line.split()[4])


def main():
    it.raise_nofile()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    # Started with a low soft limit, orphand raises it to the hard limit.
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        d = ot.Daemon().start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        ot.check(nofile(d.pid) == (hard, hard), f"soft limit not raised: {nofile(d.pid)}")
    finally:
        d.stop()

    # Started under a hard limit of 64: orphand keeps a reserve of fds for connections, so
    # registrations beyond it are refused while new clients are still served.
    with it.nofile_limit(64):
        d = ot.Daemon().start()
    try:
        ot.check(nofile(d.pid) == (64, 64), f"limit: {nofile(d.pid)}")
        exercise(d, expect_backlog=False)
    finally:
        d.stop()

    # A limit lowered under a running orphand: the kernel refuses the fds, and new clients wait
    # in the backlog until exited processes free some.
    with ot.Daemon() as d:
        resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (LIMIT, LIMIT))
        exercise(d, expect_backlog=True)


def exercise(d, expect_backlog):
    parent, parent_fd = it.sleeper("orph-parent")
    bound, refused = [], []
    with d.client() as c:
        while len(refused) < 3:
            ot.check(len(bound) < 64, f"{len(bound)} bindings under a limit of 64 fds")
            child = it.sleeper("orph-child")
            r = c.register(parent.pid, child[0].pid)
            if r["error"] == 0:
                ot.check(not refused, f"accepted after a refusal: {r}")
                bound.append(child)
            else:
                ot.check(r["error"] == -errno.EMFILE and r["reason"] == ot.Reason.OUT_OF_FDS,
                         f"expected EMFILE/kOutOfFds: {r}")
                refused.append(child)
        ot.check(len(bound) >= 10, f"only {len(bound)} bindings before running out")
        # Still serving this connection.
        ot.check(c.call(0, 0, ot.PING)["error"] == 0, "PING refused")
        ot.check(len(c.list()) == len(bound), "LIST lost bindings")

        # New clients: with a reserve they are served at once; without, they wait in the
        # backlog while there is no fd to accept them with...
        waiting = [d.connect() for _ in range(3)]
        for w in waiting:
            w.sendall(ot.record(ot.HELLO_MAGIC, 1, ot.HELLO))
        if expect_backlog:
            # ...until processes exit and free theirs: two for each waiting client (its socket
            # and its pidfd), however many the daemon finds freed at once.
            for p, fd in bound[:6]:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                it.expect_dead(d, p, fd, "a bound child")
            del bound[:6]
            d.wait_until(lambda: len(c.list()) == len(bound), "exited children retired")
        # No connection closes before all are answered: only freed pidfds can make room.
        for w in waiting:
            try:
                reply = ot.recv_reply(w)
            except socket.timeout:
                ot.fail("a waiting client was never accepted\n"
                        f"--- daemon log ---\n{d.read_log()}")
            ot.check(reply["error"] == 0, f"HELLO: {reply}")
        for w in waiting:
            w.close()

    # Earlier bindings are enforced; refused children were never bound.
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    for p, fd in bound:
        it.expect_dead(d, p, fd, "a child bound before the fds ran out", sig=signal.SIGTERM)
    for p, fd in bound:
        it.wait_kill_line(d, p.pid)
    for p, fd in refused:
        it.expect_alive(p, fd, "a child whose REGISTER was refused")
        ot.check(it.kill_line(d, p.pid) is None, "a refused child was killed")
    ot.check(d.alive(), "orphand died")
    for p, fd in refused:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        p.wait()

if __name__ == "__main__":
    ot.run(main)
