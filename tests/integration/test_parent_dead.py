# SPDX-License-Identifier: MIT
"""A REGISTER whose parent is already dead (reaped, or a zombie): the child is killed at once."""

import signal

import itest as it
import orphtest as ot


def main():
    with ot.Daemon() as d:
        # Legacy: a pid that just died and was reaped, sent connect-send-close.
        gone = it.dead_pid()
        child, child_fd = it.sleeper("orph-child")
        d.send(ot.record(gone, child.pid, ot.REGISTER))
        it.expect_dead(d, child, child_fd, "the child of a reaped parent", sig=signal.SIGTERM)
        line = it.wait_kill_line(d, child.pid)
        ot.check(f"killed orph-child[{child.pid}] with SIGTERM: parent " in line and
                 f"[{gone}] was already dead when the binding was registered" in line,
                 f"not logged as already dead: {line!r}")

        # Acknowledged: a zombie parent (exited with status 7, not reaped) is named in the log
        # with its exit status, and the reply says what happened.
        zombie, zombie_fd = ot.spawn(["sh", "-c", "exit 7"])
        ot.check(ot.wait_pidfd(zombie_fd), "the parent did not exit")
        ot.check(ot.proc_state(zombie.pid) == "Z", "the parent is not a zombie")
        child2, child2_fd = it.sleeper("orph-child2")
        with d.client() as c:
            r = c.register(zombie.pid, child2.pid)
            ot.check(r["error"] == 0 and r["reason"] == ot.Reason.PARENT_ALREADY_DEAD,
                     f"expected accepted with kParentAlreadyDead: {r}")
            it.expect_dead(d, child2, child2_fd, "the child of a zombie parent",
                           sig=signal.SIGTERM)
            ot.check(c.list() == [], "a binding to a dead parent was kept")
        line = it.wait_kill_line(d, child2.pid)
        ot.check(f"parent sh[{zombie.pid}] was already dead when the binding was registered "
                 "(exited with status 7)" in line, f"not logged as already dead: {line!r}")
        ot.check(d.alive(), "orphand died")


if __name__ == "__main__":
    ot.run(main)
