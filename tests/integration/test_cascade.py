# SPDX-License-Identifier: MIT
"""Three generations: the grandparent dies, orphand kills the parent, and its death the child."""

import signal

import itest as it
import orphtest as ot


def main():
    with ot.Daemon() as d:
        top, top_fd = it.sleeper("orph-gen1")
        mid, mid_fd = it.sleeper("orph-gen2")
        low, low_fd = it.sleeper("orph-gen3")
        with d.client() as c:
            for p, ch in ((top, mid), (mid, low)):
                r = c.register(p.pid, ch.pid)
                ot.check(r["error"] == 0, f"REGISTER {p.pid} {ch.pid}: {r}")
        signal.pidfd_send_signal(top_fd, signal.SIGKILL)
        # Not reaped before their kills are logged: killed before orphand named them (within
        # 50 ms of their binding), they are named from /proc just after their signals.
        it.expect_dead(d, mid, mid_fd, "the second generation", sig=signal.SIGTERM, reap=False)
        it.expect_dead(d, low, low_fd, "the third generation", sig=signal.SIGTERM, reap=False)
        l2 = it.wait_kill_line(d, mid.pid)
        l3 = it.wait_kill_line(d, low.pid)
        mid.wait()
        low.wait()
        ot.check(f"parent orph-gen1[{top.pid}] died (killed by SIGKILL)" in l2, f"line: {l2!r}")
        ot.check(f"killed orph-gen3[{low.pid}] with SIGTERM: parent orph-gen2[{mid.pid}] died "
                 "(killed by SIGTERM)" in l3, f"line: {l3!r}")
        ot.check(d.bindings() == [], "bindings left after the cascade")


if __name__ == "__main__":
    ot.run(main)
