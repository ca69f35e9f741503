# SPDX-License-Identifier: MIT
"""One worker of the load test: many acknowledged-mode clients of one uid, parents dying.

Usage: load_worker.py SOCKET CLIENTS ROUNDS. Run as an unprivileged uid. It opens CLIENTS
connections, prints "ready", waits for a line on stdin, then runs ROUNDS rounds. In a round the
clients form blocks of BLOCK; a block has one parent per client and KIDS children, all forked here
(so all of this uid), and every client binds its parent to each of the block's children. In every
other block the first client's parent is killed as soon as its bindings are acknowledged, while
the other clients of the block are still registering: all of that block's children must die.
Nothing else may: the other blocks' children and every other parent are checked alive, then
ended by this worker. Prints one JSON summary line.
"""

import ctypes
import errno
import json
import os
import resource
import select
import signal
import sys
import time

import orphand  # copied beside this script: sectest.shared_dir()

BLOCK, KIDS = 10, 10
OK = orphand.Reason.OK
PR_SET_PDEATHSIG = 1
TIMEOUT = 60.0
libc = ctypes.CDLL(None, use_errno=True)


def fork_sleeper():
    """A child of this worker that waits for a signal; dies with the worker in any case."""
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1:
            os._exit(1)
        while True:
            signal.pause()
    return pid, os.pidfd_open(pid)


def dead(fd):
    return bool(select.select([fd], [], [], 0)[0])


def wait_dead(fds, timeout):
    deadline = time.monotonic() + timeout
    pending = list(fds)
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(pending, [], [], max(0.0, deadline - time.monotonic()))
        pending = [fd for fd in pending if fd not in ready]
    return pending


class Conn:
    """An acknowledged-mode connection whose requests go out in batches, in one send each."""

    def __init__(self, path):
        self.conn = orphand.Connection(path, TIMEOUT, version=1)
        self.seq = 0
        self.sent = 0

    def send_registers(self, parent, kids):
        data = b""
        for kid in kids:
            self.seq += 1
            data += orphand.Request(parent, kid, orphand.Action.REGISTER, self.seq).pack()
        self.conn.send(data)
        self.sent = len(kids)

    def replies(self):
        out = []
        for _ in range(self.sent):
            r = self.conn.recv_reply()
            out.append((r.error, r.reason))
        self.sent = 0
        return out


def main():
    path, nclients, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    conns = [Conn(path) for _ in range(nclients)]
    print("ready", flush=True)
    sys.stdin.readline()

    stats = {"registered": 0, "refused_gone": 0, "killed": 0, "survived": 0, "errors": []}
    for rnd in range(rounds):
        blocks = []
        for b in range(0, nclients, BLOCK):
            members = conns[b:b + BLOCK]
            parents = [fork_sleeper() for _ in members]
            kids = [fork_sleeper() for _ in range(KIDS)]
            blocks.append((members, parents, kids, (b // BLOCK + rnd) % 2 == 0))
        # The first client of each block binds its parent to all the block's children.
        for members, parents, kids, _ in blocks:
            members[0].send_registers(parents[0][0], [k for k, _ in kids])
        for members, parents, kids, dying in blocks:
            for err, reason in members[0].replies():
                if err != 0 or reason != OK:
                    stats["errors"].append(f"round {rnd}: first binding refused: {err} {reason}")
                stats["registered"] += 1
            if dying:
                signal.pidfd_send_signal(parents[0][1], signal.SIGKILL)
        # The others register while the dying parents' deaths are being handled.
        for members, parents, kids, _ in blocks:
            for conn, (ppid, _) in zip(members[1:], parents[1:]):
                conn.send_registers(ppid, [k for k, _ in kids])
        for members, parents, kids, dying in blocks:
            for conn in members[1:]:
                for err, reason in conn.replies():
                    if err == 0 and reason == OK:
                        stats["registered"] += 1
                    elif dying and err == -errno.ESRCH:  # the child was already killed
                        stats["refused_gone"] += 1
                    else:
                        stats["errors"].append(f"round {rnd}: refused: {err} {reason}")
        # Outcomes: the dying blocks' children die; nothing else does.
        doomed = [fd for _, _, kids, dying in blocks if dying for _, fd in kids]
        left = wait_dead(doomed, TIMEOUT)
        if left:
            stats["errors"].append(f"round {rnd}: {len(left)} children of dead parents alive")
        stats["killed"] += len(doomed) - len(left)
        for members, parents, kids, dying in blocks:
            alive = (parents[1:] if dying else parents) + ([] if dying else kids)
            for pid, fd in alive:
                if dead(fd):
                    stats["errors"].append(f"round {rnd}: process {pid} killed")
                else:
                    stats["survived"] += 1
        # End the round: children first, reaped before any parent dies, so that their
        # bindings go without a kill; then the parents.
        for group in ("kids", "parents"):
            procs = [p for _, parents, kids, _ in blocks
                     for p in (kids if group == "kids" else parents)]
            for _, fd in procs:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            for pid, fd in procs:
                os.waitpid(pid, 0)
                os.close(fd)
    for c in conns:
        c.conn.close()
    stats["errors"] = stats["errors"][:20]
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
