# SPDX-License-Identifier: MIT
"""A parent killed with SIGKILL: orphand kills its registered child and logs who, how and when."""

import re
import signal
import subprocess

import itest as it
import orphtest as ot


def main():
    with ot.Daemon() as d:
        # A legacy client: connect, send one REGISTER, close.
        parent, parent_fd = it.sleeper("orph-parent")
        child, child_fd = it.sleeper("orph-child")
        d.send(ot.record(parent.pid, child.pid, ot.REGISTER))
        it.wait_bound(d, parent.pid, child.pid)

        # The same pair registered again (legacy and acknowledged) is still one binding.
        d.send(ot.record(parent.pid, child.pid, ot.REGISTER))
        with d.client() as c:
            r = c.register(parent.pid, child.pid)
            ot.check(r["error"] == 0 and r["reason"] == ot.Reason.ALREADY_BOUND,
                     f"re-REGISTER: {r}")
            listed = [b for b in c.list() if (b["parent"], b["child"]) == (parent.pid, child.pid)]
            ot.check(len(listed) == 1, f"duplicate registration listed {len(listed)} times")
            b = listed[0]
            ot.check(b["parent_comm"] == "orph-parent" and b["child_comm"] == "orph-child",
                     f"LIST names: {b}")
            ot.check(b["signal"] == signal.SIGTERM and b["grace_ms"] == 5000,
                     f"default policy in LIST: {b}")

        it.expect_alive(child, child_fd, "the child before its parent's death")
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d, child, child_fd, "the child", sig=signal.SIGTERM)

        line = it.wait_kill_line(d, child.pid)
        m = re.search(rf"killed orph-child\[{child.pid}\] with SIGTERM: parent "
                      rf"orph-parent\[{parent.pid}\] died \(killed by SIGKILL\), (\d+) us after "
                      r"its death", line)
        ot.check(m, f"kill line does not name both processes, the signal and the cause: {line!r}")
        # A correctness bound, not a speed test: the latency is measured and plausible.
        ot.check(int(m.group(1)) < ot.TIMEOUT * 1e6, f"latency out of bounds: {line!r}")
        it.wait_unbound(d, parent.pid, child.pid)
        with d.client() as c:
            s = c.status()
            ot.check(s["kills"] == 1 and s["bindings"] == 0, f"status after the kill: {s}")

        # The same through acknowledged mode, with a parent that exits with a status.
        parent2, parent2_fd = ot.spawn(["sh", "-c", "read x; exit 3"],
                                       stdin=subprocess.PIPE)
        child2, child2_fd = it.sleeper("orph-child2")
        with d.client() as c:
            r = c.register(parent2.pid, child2.pid)
            ot.check(r["error"] == 0 and r["reason"] == ot.Reason.OK, f"REGISTER: {r}")
        parent2.stdin.close()
        it.expect_dead(d, child2, child2_fd, "the second child", sig=signal.SIGTERM)
        line = it.wait_kill_line(d, child2.pid)
        ot.check(f"parent sh[{parent2.pid}] died (exited with status 3)" in line,
                 f"kill line does not give the parent's exit status: {line!r}")
        ot.check(d.alive(), "orphand died")


if __name__ == "__main__":
    ot.run(main)
