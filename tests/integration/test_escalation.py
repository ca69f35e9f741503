# SPDX-License-Identifier: MIT
"""SIGTERM then SIGKILL: a child that ignores its first signal is killed after the grace period."""

import signal
import time

import itest as it
import orphtest as ot


def ignores(pid, sig):
    with open(f"/proc/{pid}/status") as f:
        mask = int(next(l for l in f if l.startswith("SigIgn:")).split()[1], 16)
    return bool(mask & (1 << (sig - 1)))


def main():
    # The daemon-wide policy: --grace 0.5.
    with ot.Daemon("--grace", "0.5") as d:
        parent, parent_fd = it.sleeper("orph-parent")
        child, child_fd = it.sleeper("orph-stubborn", ignore=(signal.SIGTERM,))
        ot.check(ignores(child.pid, signal.SIGTERM), "the child does not ignore SIGTERM")
        d.send(ot.record(parent.pid, child.pid, ot.REGISTER))
        it.wait_bound(d, parent.pid, child.pid)
        killed_at = time.monotonic()
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        line = it.wait_kill_line(d, child.pid)
        ot.check(f"killed orph-stubborn[{child.pid}] with SIGTERM" in line, f"kill line: {line!r}")
        it.expect_dead(d, child, child_fd, "the child that ignores SIGTERM", sig=signal.SIGKILL)
        # SIGKILL comes only once the grace period is over (a lower bound: never flaky).
        ot.check(time.monotonic() - killed_at >= 0.45, "SIGKILL came before the grace period")
        ot.check(d.wait_log(f"killed orph-stubborn[{child.pid}] with SIGKILL: it outlived its "
                            "grace period"), f"escalation not logged:\n{d.read_log()}")

    # A per-binding policy through orphanctl; the daemon's own default never escalates, so
    # only the binding's --grace can bring the SIGKILL.
    with ot.Daemon("--grace", "never") as d:
        parent, parent_fd = it.sleeper("orph-parent")
        stubborn, stubborn_fd = it.sleeper("orph-stubborn",
                                           ignore=(signal.SIGTERM, signal.SIGHUP))
        plain, plain_fd = it.sleeper("orph-plain")
        default, default_fd = it.sleeper("orph-default", ignore=(signal.SIGTERM,))
        d.ctl("register", str(parent.pid), str(stubborn.pid), "--signal", "HUP", "--grace", "0.5")
        d.ctl("register", str(parent.pid), str(plain.pid), "--signal=SIGHUP")
        d.ctl("register", str(parent.pid), str(default.pid))
        by_child = {b["child"]: b for b in d.bindings()}
        ot.check(by_child[stubborn.pid]["signal"] == signal.SIGHUP and
                 by_child[stubborn.pid]["grace_ms"] == 500, f"policy: {by_child[stubborn.pid]}")
        ot.check(by_child[default.pid]["signal"] == signal.SIGTERM and
                 by_child[default.pid]["grace_ms"] == ot.GRACE_NEVER,
                 f"default policy: {by_child[default.pid]}")
        listed = d.ctl("list").stdout
        ot.check("SIGHUP" in listed and "500ms" in listed and "never" in listed,
                 f"orphanctl list does not show the policies:\n{listed}")

        killed_at = time.monotonic()
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d, plain, plain_fd, "the child killed with SIGHUP", sig=signal.SIGHUP)
        it.expect_dead(d, stubborn, stubborn_fd, "the child that ignores SIGHUP",
                       sig=signal.SIGKILL)
        ot.check(time.monotonic() - killed_at >= 0.45, "SIGKILL came before the grace period")
        ot.check("with SIGHUP" in it.wait_kill_line(d, stubborn.pid), "first signal not SIGHUP")
        ot.check("with SIGTERM" in it.wait_kill_line(d, default.pid), "default signal not used")
        # The default policy (--grace never) leaves the one that ignores SIGTERM alive.
        time.sleep(1.0)
        it.expect_alive(default, default_fd, "the child under --grace never")
        ot.check("orph-default" not in "".join(l for l in d.read_log().splitlines(True)
                                               if "outlived" in l),
                 "the child under --grace never was escalated")


if __name__ == "__main__":
    ot.run(main)
