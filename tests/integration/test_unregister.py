# SPDX-License-Identifier: MIT
"""UNREGISTER: a forgotten child survives its parent's death; unknown bindings are ignored."""

import signal
import time

import itest as it
import orphtest as ot


def main():
    with ot.Daemon() as d:
        parent, parent_fd = it.sleeper("orph-parent")
        kept, kept_fd = it.sleeper("orph-kept")
        freed, freed_fd = it.sleeper("orph-freed")
        d.send(ot.record(parent.pid, kept.pid, ot.REGISTER) +
               ot.record(parent.pid, freed.pid, ot.REGISTER))
        it.wait_bound(d, parent.pid, kept.pid)
        it.wait_bound(d, parent.pid, freed.pid)

        # Legacy UNREGISTER, connect-send-close.
        d.send(ot.record(parent.pid, freed.pid, ot.UNREGISTER))
        it.wait_unbound(d, parent.pid, freed.pid)
        ot.check((parent.pid, kept.pid) in it.pairs(d), "UNREGISTER removed the wrong binding")

        # Legacy UNREGISTER of bindings that do not exist, on a persistent connection: no reply,
        # no log line, the connection stays open (the PING after them is the first reply).
        log_before = d.read_log()
        with d.connect() as s:
            s.sendall(ot.record(parent.pid, 999999, ot.UNREGISTER) +
                      ot.record(12345, kept.pid, ot.UNREGISTER) +
                      ot.record(parent.pid, freed.pid, ot.UNREGISTER))
            time.sleep(0.1)
            ping = ot.record(0xDEADBEEF, 7, ot.PING)
            s.sendall(ping)
            ot.check(ot.recv_exact(s, ot.RECORD_SIZE) == ping,
                     "UNREGISTER of an unknown binding replied")
        ot.check(d.read_log() == log_before,
                 f"unknown UNREGISTER was logged:\n{d.read_log()[len(log_before):]}")
        ot.check(it.pairs(d) == {(parent.pid, kept.pid)}, f"LIST: {d.bindings()}")

        # The parent dies: the still-bound child is killed; once it is, the daemon has handled
        # the death, and the unregistered child must still be alive.
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d, kept, kept_fd, "the still-bound child", sig=signal.SIGTERM)
        it.wait_kill_line(d, kept.pid)
        it.expect_alive(freed, freed_fd, "the unregistered child")
        ot.check(it.kill_line(d, freed.pid) is None, "a kill was logged for the unregistered child")

        # Acknowledged mode says what happened.
        with d.client() as c:
            r = c.unregister(parent.pid, freed.pid)
            ot.check(r["error"] == 0 and r["reason"] == ot.Reason.NOT_BOUND,
                     f"UNREGISTER unknown: {r}")


if __name__ == "__main__":
    ot.run(main)
