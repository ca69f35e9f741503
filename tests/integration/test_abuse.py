# SPDX-License-Identifier: MIT
"""Hostile clients (junk, 1 MiB of random data, half records, 1,000 idle connections): orphand
keeps serving everyone else and loses no binding."""

import os
import signal
import time

import itest as it
import orphtest as ot


def refusals(d):
    return sum(1 for l in d.read_log().splitlines() if "refused" in l)


def main():
    it.raise_nofile()
    with ot.Daemon() as d:
        # A binding made before the abuse, to be enforced after it.
        parent, parent_fd = it.sleeper("orph-parent")
        child, child_fd = it.sleeper("orph-child")
        with d.client() as c:
            ot.check(c.register(parent.pid, child.pid)["error"] == 0, "REGISTER refused")

        # Junk on a persistent connection: unknown actions get no reply and the connection stays
        # open (the PING behind them is answered), and the junk is logged.
        with d.connect() as s:
            junk = b"".join(ot.record(0x41414141, 0x42424242, a) for a in (0, 7, 999, 0xFFFFFFFF))
            s.sendall(junk)
            ping = ot.record(1, 2, ot.PING)
            s.sendall(ping)
            ot.check(ot.recv_exact(s, ot.RECORD_SIZE) == ping, "PING after junk records not echoed")
        ot.check(d.wait_log("unknown action"), f"junk records not logged:\n{d.read_log()}")

        # 1 MiB of random bytes on one connection (not a whole number of records): the daemon
        # reads it all, keeps the connection, and logs at a bounded rate.
        before = refusals(d)
        with d.connect() as s:
            data = os.urandom(1 << 20)
            s.sendall(data)
            pad = 12 - len(data) % 12
            s.sendall(b"\0" * pad)
            ping = ot.record(3, 4, ot.PING)
            s.sendall(ping)
            # Random records might be PINGs (1 in 2^32 each): skip any echo of them.
            deadline = time.monotonic() + ot.TIMEOUT
            while True:
                got = ot.recv_exact(s, ot.RECORD_SIZE)
                if got == ping:
                    break
                ot.check(time.monotonic() < deadline, "no echo after 1 MiB of random data")
        logged = refusals(d) - before
        ot.check(logged <= 100, f"87,382 junk records produced {logged} log lines")

        # Clients that disconnect mid-record: the partial REGISTER is not acted on.
        victim, victim_fd = it.sleeper("orph-victim")
        rec = ot.record(parent.pid, victim.pid, ot.REGISTER)
        for cut in (1, 6, 11):
            with d.connect() as s:
                s.sendall(rec[:cut])
        with d.connect() as s:
            s.sendall(os.urandom(7))

        # 1,000 connections at once, each held open.
        conns = [d.connect() for _ in range(1000)]
        try:
            # A new client is served meanwhile, and can bind.
            parent2, parent2_fd = it.sleeper("orph-parent2")
            child2, child2_fd = it.sleeper("orph-child2")
            with d.client() as c:
                ot.check(c.register(parent2.pid, child2.pid)["error"] == 0, "REGISTER refused")
                s = c.status()
                ot.check(s["connections"] >= 1001, f"status during the flood: {s}")
            # Every held connection is served too.
            for i, s in enumerate(conns):
                ping = ot.record(i, 0xC0FFEE, ot.PING)
                s.sendall(ping)
            for i, s in enumerate(conns):
                ot.check(ot.recv_exact(s, ot.RECORD_SIZE) == ot.record(i, 0xC0FFEE, ot.PING),
                         f"held connection {i} not served")
        finally:
            for s in conns:
                s.close()

        ot.check(d.alive(), "orphand died")
        pairs = it.pairs(d)
        ot.check(pairs == {(parent.pid, child.pid), (parent2.pid, child2.pid)},
                 f"bindings after the abuse: {d.bindings()}")

        # The binding from before the abuse is still enforced, and the half-sent one is not.
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d, child, child_fd, "the child bound before the abuse", sig=signal.SIGTERM)
        signal.pidfd_send_signal(parent2_fd, signal.SIGKILL)
        it.expect_dead(d, child2, child2_fd, "the child bound during the flood",
                       sig=signal.SIGTERM)
        it.wait_kill_line(d, child.pid)
        it.expect_alive(victim, victim_fd, "the child of a half-sent REGISTER")
        ot.check(it.kill_line(d, victim.pid) is None, "the half-sent REGISTER was acted on")


if __name__ == "__main__":
    ot.run(main)
