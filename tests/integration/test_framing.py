# SPDX-License-Identifier: MIT
"""The legacy stream: PING echo byte for byte, records merged, split and arriving with EOF."""

import os
import signal
import socket
import time

import itest as it
import orphtest as ot


def main():
    with ot.Daemon() as d:
        with d.connect() as s:
            # Echoed unchanged, whatever the other fields hold.
            for rec in (ot.record(0, 0, ot.PING), ot.record(0xFFFFFFFF, 0x80000000, ot.PING),
                        os.urandom(8) + ot.record(0, 0, ot.PING)[8:]):
                s.sendall(rec)
                ot.check(ot.recv_exact(s, ot.RECORD_SIZE) == rec,
                         f"PING {rec.hex()} not echoed as sent")

            # Several records in one send, a REGISTER among them: one echo per PING, in order.
            parent, parent_fd = it.sleeper("orph-parent")
            child, child_fd = it.sleeper("orph-child")
            pings = [os.urandom(8) + ot.record(0, 0, ot.PING)[8:] for _ in range(5)]
            s.sendall(b"".join(pings[:3]) + ot.record(parent.pid, child.pid, ot.REGISTER) +
                      b"".join(pings[3:]))
            ot.check(ot.recv_exact(s, 60) == b"".join(pings), "merged PINGs not echoed in order")
            it.wait_bound(d, parent.pid, child.pid)

            # One record split byte by byte over several sends, with delays between them.
            rec = ot.record(0x01020304, 0xA0B0C0D0, ot.PING)
            for i in range(12):
                s.sendall(rec[i:i + 1])
                time.sleep(0.02)
            ot.check(ot.recv_exact(s, ot.RECORD_SIZE) == rec, "PING split byte by byte not echoed")

            # Two records split across a record boundary (5-byte pieces).
            two = ot.record(1, 2, ot.PING) + ot.record(3, 4, ot.PING)
            for i in range(0, 24, 5):
                s.sendall(two[i:i + 5])
                time.sleep(0.02)
            ot.check(ot.recv_exact(s, 24) == two, "PINGs split across a boundary not echoed")
            s.setblocking(False)
            try:
                extra = s.recv(64)
            except BlockingIOError:
                extra = None
            ot.check(extra is None, f"unexpected bytes from the daemon: {extra!r}")

        # Connect, send, close: several REGISTERs arriving with EOF are all processed.
        children = [it.sleeper(f"orph-c{i}") for i in range(3)]
        with d.connect() as s:
            s.sendall(b"".join(ot.record(parent.pid, c.pid, ot.REGISTER) for c, _ in children))
        for c, _ in children:
            it.wait_bound(d, parent.pid, c.pid)

        # A PING followed at once by EOF (shutdown of our side) is still answered.
        with d.connect() as s:
            rec = ot.record(42, 43, ot.PING)
            s.sendall(rec)
            s.shutdown(socket.SHUT_WR)
            ot.check(ot.recv_exact(s, ot.RECORD_SIZE) == rec, "PING with EOF not answered")
            ot.check(s.recv(12) == b"", "the daemon did not close after EOF")

        # And the bindings made that way are enforced.
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        for c, fd in [(child, child_fd)] + children:
            it.expect_dead(d, c, fd, f"child {c.pid}", sig=signal.SIGTERM)


if __name__ == "__main__":
    ot.run(main)
