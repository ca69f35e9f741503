# SPDX-License-Identifier: MIT
"""Protected targets: pid 1 and orphand itself are refused as children and never signalled."""

import errno
import signal

import itest as it
import orphtest as ot


def starttime(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2:].split()[19]


def main():
    init_start = starttime(1)
    with ot.Daemon() as d:
        targets = {"pid 1": 1, "orphand": d.pid}
        parent, parent_fd = it.sleeper("orph-parent")

        # Acknowledged mode: refused with the reason.
        with d.client() as c:
            for what, pid in targets.items():
                r = c.register(parent.pid, pid)
                ot.check(r["error"] == -errno.EPERM and r["reason"] == ot.Reason.PROTECTED_TARGET,
                         f"REGISTER of {what} not refused as protected: {r}")
                r = c.register(it.dead_pid(), pid)
                ot.check(r["error"] == -errno.EPERM and r["reason"] == ot.Reason.PROTECTED_TARGET,
                         f"REGISTER of {what} to a dead parent not refused: {r}")
            ot.check(c.list() == [], "a refused binding is listed")

        # orphanctl: non-zero exit and the reason.
        for what, pid in targets.items():
            r = d.ctl("register", str(parent.pid), str(pid), check_rc=False)
            ot.check(r.returncode != 0 and "protected target" in r.stderr,
                     f"orphanctl register of {what}: rc {r.returncode}, {r.stderr!r}")

        # Legacy records, including a dead parent (the kill-at-once path): logged, not acted on.
        for pid in targets.values():
            d.send(ot.record(parent.pid, pid, ot.REGISTER))
            d.send(ot.record(it.dead_pid(), pid, ot.REGISTER))
        ot.check(d.wait_log(f"refused REGISTER (parent {parent.pid}, child {d.pid})"),
                 f"legacy refusal not logged:\n{d.read_log()}")
        ot.check(d.bindings() == [], "a refused binding is listed")

        # The parent dies; nothing may happen to either target.
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        parent.wait()
        ot.check(d.ping(), "orphand stopped answering")
        ot.check(d.alive() and not ot.pidfd_dead(d.pidfd), "orphand was killed")
        with d.client() as c:
            ot.check(c.status()["kills"] == 0, "orphand counted a kill")
        ot.check("killed" not in d.read_log(), f"a kill was logged:\n{d.read_log()}")
    ot.check(ot.proc_state(1) not in (None, "Z") and starttime(1) == init_start, "pid 1 changed")


if __name__ == "__main__":
    ot.run(main)
