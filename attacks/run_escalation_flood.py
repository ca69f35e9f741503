#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run as root: escalation timing (grace GRACE_MS) and child-exit retirement under a datagram
flood by nobody (NFDS fds per datagram, 4 senders) and without. A root binding whose child
ignores SIGTERM: the time from its parent's SIGKILL to the child's death should be GRACE_MS plus
little. Also: 200 short-lived children registered by root, and the daemon's fds 0.2 s after the
last exits (batched retirement).

  nice -n 19 python3 attacks/run_escalation_flood.py [build-dir [NFDS]]
"""
import os, select, shutil, signal, subprocess, sys, tempfile, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
if len(sys.argv) > 1:
    os.environ["ORPHAND_BUILD_DIR"] = os.path.abspath(sys.argv[1])
import orphtest as ot
from run_closer_fill import NOBODY, as_user, fd_count

NFDS = sys.argv[2] if len(sys.argv) > 2 else "253"
GRACE_MS = 200


def stubborn():
    p, fd = ot.spawn(["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"])
    time.sleep(0.1)
    return p, fd


def measure(d, label):
    lats = []
    for _ in range(10):
        parent, pfd = ot.sleeper()
        child, cfd = stubborn()
        with d.client() as c:
            r = c.register(parent.pid, child.pid, sig=15, grace_ms=GRACE_MS)
            assert r["error"] == 0, r
        t0 = time.monotonic()
        signal.pidfd_send_signal(pfd, signal.SIGKILL)
        dead = select.select([cfd], [], [], 5)[0]
        lats.append((time.monotonic() - t0) * 1000 if dead else None)
        ot.reap(parent); ot.reap(child)
    ok = sorted(x for x in lats if x is not None)
    print(f"{label}: escalated kills {len(ok)}/10, ms from parent death to child death: "
          f"min {ok[0]:.1f} median {ok[len(ok)//2]:.1f} max {ok[-1]:.1f} (grace {GRACE_MS})")
    # batched retirement: 200 children that exit at once
    parent, pfd = ot.sleeper()
    kids = [ot.spawn(["sleep", "0.3"]) for _ in range(200)]
    with d.client() as c:
        for k, kfd in kids:
            c.register(parent.pid, k.pid)
    base = fd_count(d.pid)
    for k, kfd in kids:
        k.wait()
    t0 = time.monotonic()
    while fd_count(d.pid) > base - 200 and time.monotonic() - t0 < 5:
        time.sleep(0.005)
    print(f"{label}: 200 children exited; their pidfds closed {1000*(time.monotonic()-t0):.0f} ms "
          f"after the last was reaped (fds {base} -> {fd_count(d.pid)})")
    signal.pidfd_send_signal(pfd, signal.SIGKILL)
    ot.reap(parent)


def main():
    with ot.Daemon() as d:
        os.chmod(d.dir, 0o755)
        measure(d, "idle")
        a = os.path.join(d.dir, "a.py")
        shutil.copy(os.path.join(HERE, "dgram_attacker.py"), a)
        os.chmod(a, 0o644)
        att = subprocess.Popen(as_user(NOBODY, ["/usr/bin/python3", a, d.socket + ".dgram",
                                                "flood", NFDS, "30", "4"]),
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(1)
        try:
            measure(d, f"flood of {NFDS}-fd datagrams")
        finally:
            os.killpg(att.pid, signal.SIGKILL)  # its own session: the senders it forked too
            att.wait()


ot.run(main)
