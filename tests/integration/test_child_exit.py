# SPDX-License-Identifier: MIT
"""A child that exits on its own: its binding is retired at once, without UNREGISTER."""

import signal
import subprocess

import itest as it
import orphtest as ot


def main():
    with ot.Daemon() as d:
        parent, parent_fd = it.sleeper("orph-parent")
        other, other_fd = it.sleeper("orph-other")
        # `cat` exits with status 0 when its stdin closes: an exit nobody asked orphand for.
        child, child_fd = ot.spawn(["cat"], stdin=subprocess.PIPE)
        d.send(ot.record(parent.pid, child.pid, ot.REGISTER))
        d.send(ot.record(parent.pid, other.pid, ot.REGISTER))
        it.wait_bound(d, parent.pid, child.pid)
        it.wait_bound(d, parent.pid, other.pid)

        child.stdin.close()
        ot.check(ot.wait_pidfd(child_fd), "cat did not exit")
        ot.check(child.wait() == 0, "cat did not exit on its own")
        # Not reaped by anyone but us, and not unregistered: the daemon notices by itself.
        it.wait_unbound(d, parent.pid, child.pid)
        ot.check(it.pairs(d) == {(parent.pid, other.pid)}, f"LIST: {d.bindings()}")
        with d.client() as c:
            s = c.status()
            ot.check((s["parents"], s["children"], s["bindings"]) == (1, 1, 1),
                     f"status after the child's exit: {s}")

        # The parent's death now kills only the child that is still bound, and nothing is
        # logged for the one that left.
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d, other, other_fd, "the remaining child", sig=signal.SIGTERM)
        it.wait_kill_line(d, other.pid)
        ot.check(it.kill_line(d, child.pid) is None, "a kill was logged for the exited child")
        with d.client() as c:
            s = c.status()
            ot.check(s["kills"] == 1 and s["bindings"] == 0, f"status at the end: {s}")


if __name__ == "__main__":
    ot.run(main)
