# SPDX-License-Identifier: MIT
"""sd_notify under a service manager: READY=1 once, then STATUS= at most once a second however
busy orphand is (each one is a datagram PID 1 must handle), always ending on the current figures,
and nothing at all while idle."""

import os
import re
import signal
import socket
import threading
import time

import itest as it
import orphtest as ot

STATUS = re.compile(r"STATUS=watching (\d+) parents, (\d+) children; (\d+) killed since start")


class Notify:
    """The NOTIFY_SOCKET end: every datagram orphand sends, with its arrival time (read as it
    comes, on a thread of its own)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done:
            try:
                text = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            with self.lock:
                self.messages.append((time.monotonic(), text))

    def read(self, quiet):
        """Waits until nothing has come for `quiet` seconds (from now, or from the last
        datagram if one comes meanwhile)."""
        start = time.monotonic()
        while True:
            with self.lock:
                last = max(self.messages[-1][0] if self.messages else 0.0, start)
            wait = last + quiet - time.monotonic()
            if wait <= 0:
                return
            time.sleep(wait)

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()

    def statuses(self, since=0.0):
        with self.lock:
            return [(t, tuple(map(int, m.groups()))) for t, text in self.messages if t >= since
                    for m in [STATUS.search(text)] if m]


def main():
    d = ot.Daemon("--no-state")
    notify = Notify(os.path.join(d.dir, "notify"))
    d.env["NOTIFY_SOCKET"] = notify.sock.getsockname()
    d.start()
    try:
        notify.read(1.5)
        ot.check(any("READY=1" in m for _, m in notify.messages),
                 f"no READY=1: {notify.messages}")
        ot.check(notify.statuses() and notify.statuses()[-1][1] == (0, 0, 0),
                 f"first STATUS=: {notify.messages}")

        # 300 registrations and 100 exits, as fast as the client can: a few STATUS= at most.
        parent, parent_fd = it.sleeper("notify-parent")
        kids = []
        t0 = time.monotonic()
        with d.client() as c:
            for _ in range(300):
                kids.append(it.sleeper("notify-child"))
                ot.check(c.register(parent.pid, kids[-1][0].pid)["error"] == 0, "REGISTER")
        for p, fd in kids[:100]:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            p.wait()
        # Nothing watches a process that is only a child: its exit is retired on orphand's next
        # sweep, such as the one a STATUS request makes, and STATUS= then follows.
        with d.client() as c:
            ot.check(c.status()["children"] == 200, "STATUS after 100 exits")
        busy = time.monotonic() - t0
        notify.read(1.5)
        burst = notify.statuses(since=t0)
        ot.check(burst, "no STATUS= after 300 registrations")
        ot.check(len(burst) <= busy + 2,
                 f"{len(burst)} STATUS= in {busy:.2f} s of registrations: {burst}")
        gaps = [b[0] - a[0] for a, b in zip(burst, burst[1:])]
        ot.check(all(g >= 0.9 for g in gaps), f"STATUS= closer than a second apart: {gaps}")
        ot.check(burst[-1][1] == (1, 200, 0), f"last STATUS= is not current: {burst[-1]}")

        # Idle: nothing is sent.
        n = len(notify.messages)
        time.sleep(2.5)
        ot.check(len(notify.messages) == n, f"sent while idle: {notify.messages[n:]}")

        # The parent dies: the last STATUS= counts the kills.
        t1 = time.monotonic()
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        for p, fd in kids[100:]:
            it.expect_dead(d, p, fd, "a child of the dead parent")
        notify.read(1.5)
        ot.check(notify.statuses(since=t1)[-1][1] == (0, 0, 200),
                 f"after the kills: {notify.statuses(since=t1)}")
        print(f"STATUS=: {len(burst)} updates for {busy:.2f} s of 300 registrations and 100 "
              f"exits, {len(notify.statuses(since=t1))} after 200 kills, none while idle")
    finally:
        d.stop()
        notify.close()


if __name__ == "__main__":
    ot.run(main)
