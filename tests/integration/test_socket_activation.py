# SPDX-License-Identifier: MIT
"""Socket activation: systemd-socket-activate listens, the first client starts orphand with the
socket in LISTEN_FDS, and bindings made through it are enforced."""

import os
import signal
import time

import itest as it
import orphtest as ot

ACTIVATE = "/usr/bin/systemd-socket-activate"


def main():
    ot.check(os.access(ACTIVATE, os.X_OK), f"{ACTIVATE} is missing (Debian's systemd package)")
    d = ot.Daemon()  # its private directory, log and client helpers; started by the activator
    unused = os.path.join(d.dir, "not-bound.sock")
    d.log = open(d.log_path, "ab")
    d.proc, d.pidfd = ot.spawn([ACTIVATE, "--listen", d.socket, "--fdname=orphand", ot.DAEMON,
                                "--log-target=stderr", "--socket", unused],
                               stdout=d.log, stderr=d.log, env=d.env)
    try:
        deadline = time.monotonic() + ot.TIMEOUT
        while not os.path.exists(d.socket):
            ot.check(d.alive(), f"systemd-socket-activate exited:\n{d.read_log()}")
            ot.check(time.monotonic() < deadline, f"no socket at {d.socket}:\n{d.read_log()}")
            time.sleep(0.01)

        with open(f"/proc/{d.pid}/comm") as f:
            ot.check(f.read().startswith("systemd-socket"), "orphand started before a client")

        # The first connection starts orphand; a legacy client is served through it.
        parent, parent_fd = it.sleeper("orph-parent")
        child, child_fd = it.sleeper("orph-child")
        d.send(ot.record(parent.pid, child.pid, ot.REGISTER))
        ot.check(d.ping(), "PING through the activated socket failed")
        it.wait_bound(d, parent.pid, child.pid)
        with d.client() as c:
            pid = c.status()["pid"]
        if pid != d.pid:
            ot.track(pid)  # started as a child of the activator: stop it too
        ot.check(ot.proc_state(pid) not in (None, "Z"), "the daemon is not running")
        with open(f"/proc/{pid}/comm") as f:
            ot.check(f.read().strip() == "orphand", f"pid {pid} is not orphand")
        # Only a stream socket is passed: clients find no datagram socket and connect.
        ot.check(d.wait_log("the sockets systemd passed (socket-activated; no datagram socket)"),
                 f"orphand did not use the passed socket:\n{d.read_log()}")
        ot.check(not os.path.exists(unused), "orphand bound --socket despite LISTEN_FDS")

        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d, child, child_fd, "the child", sig=signal.SIGTERM)
        ot.check(f"parent orph-parent[{parent.pid}] died" in it.wait_kill_line(d, child.pid),
                 "kill not logged")
        r = d.ctl("list")
        ot.check("no bindings" in r.stdout, f"orphanctl list: {r.stdout}")

        # A clean stop on SIGTERM.
        pidfd = os.pidfd_open(pid)
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        ot.check(ot.wait_pidfd(pidfd), "orphand did not stop on SIGTERM")
        os.close(pidfd)
        if pid == d.pid:
            ot.check(d.proc.wait(timeout=ot.TIMEOUT) == 0, "orphand did not exit with 0")
    finally:
        d.stop()


if __name__ == "__main__":
    ot.run(main)
