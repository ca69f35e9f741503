# SPDX-License-Identifier: MIT
"""nobody against the datagram socket: no datagram binds root's process, claimed credentials
change nothing, and a flood of datagrams carrying hundreds of fds each holds up no root client,
loses no binding and leaks no fd.

The witness: nobody binds its own sleep to its own death in the same datagrams, so once the
witness is killed the daemon has handled the attacker's death, and the victims' fate is decided.
"""

import json
import os
import re
import signal
import subprocess
import time

import orphtest as ot
import sectest as st
from sectest import NOBODY, OK

REG, UNREG = ot.REGISTER, ot.UNREGISTER
WORKERS = 4
FLOOD_SECONDS = 3


def rec(parent, child, action):
    return ot.record(parent, child, action).hex()


def refusal(pid, uid, parent, child, reason, what="REGISTER"):
    """The pattern of the log line of a refused datagram."""
    return (rf"refused {what} \(parent {parent}, child {child}\) from pid {pid} uid {uid}: "
            rf"{re.escape(reason)}")


def wait_logged(d, pattern, count=1):
    d.wait_until(lambda: len(re.findall(pattern, d.read_log())) >= count,
                 f"{count} log line(s) matching {pattern!r}")


def attacker(d, ops):
    """client.py as nobody, held alive after `ops` (a "pause" ends them): (Popen, pidfd, the
    results of the ops). The attacker's pid is its client's: setpriv and env exec it."""
    p, pidfd = ot.spawn(st.as_user(NOBODY, st.script("client.py")), stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, text=True)
    p.stdin.write(json.dumps({"socket": d.socket, "ops": ops(p.pid) + [{"pause": True}]}) + "\n")
    p.stdin.flush()
    line = p.stdout.readline()
    if not line:
        ot.fail(f"the attacker exited early ({p.wait()})")
    return p, pidfd, json.loads(line)


def refused_bindings(d, guard):
    """Datagrams from nobody that would bind root's process, or undo root's binding."""
    victim, victim_fd = ot.sleeper()              # root's
    witness, witness_fd = st.user_sleeper(NOBODY)  # nobody's own
    V, W, GP, GC = victim.pid, witness.pid, *guard

    def ops(A):
        return [
            {"getpid": True},
            {"dgram": rec(A, V, REG), "fds": [f"pidfd:{V}"]},                  # 1
            {"dgram": rec(A, V, REG)},                                          # 2
            {"dgram": rec(A, V, REG), "fds": [f"pidfd:{V}", f"pidfd:{A}"]},    # 3
            {"dgram": rec(GP, V, REG), "fds": [f"pidfd:{V}"]},                 # 4
            {"dgram": rec(A, 1, REG)},                                          # 5
            {"dgram": rec(A, d.pid, REG)},                                      # 6
            {"dgram": rec(GP, GC, UNREG)},                                      # 7
            {"dgram": rec(A, V, REG), "fds": [f"pidfd:{V}"], "creds": [A, 0, 0]},  # 8
            {"dgram": rec(GP, V, REG), "fds": [f"pidfd:{V}"],
             "creds": [GP, NOBODY, NOBODY]},                                    # 9
            {"dgram": rec(A, W, REG), "fds": [f"pidfd:{W}"]},                  # 10: its own
        ]
    p, p_fd, res = attacker(d, ops)
    A = p.pid
    ot.check(res[0] == A, f"the attacker is pid {res[0]}, not {A}")
    for i in (1, 2, 3, 4, 5, 6, 7, 10):
        ot.check(res[i].get("sent") == 12, f"datagram {i} not sent: {res[i]}")
    # The kernel checks claimed credentials: uid 65534 may claim neither uid 0 nor another
    # process's pid.
    for i in (8, 9):
        ot.check("PermissionError" in res[i].get("exception", ""),
                 f"claimed credentials in datagram {i} not refused by the kernel: {res[i]}")

    not_permitted = "not permitted to signal that child"
    protected = "protected target (pid 1, orphand or a kernel thread)"
    wait_logged(d, refusal(A, NOBODY, A, V, not_permitted), 3)
    wait_logged(d, refusal(A, NOBODY, GP, V, not_permitted))
    wait_logged(d, refusal(A, NOBODY, A, 1, protected))
    wait_logged(d, refusal(A, NOBODY, A, d.pid, protected))
    d.wait_until(lambda: (A, W) in {(b["parent"], b["child"]) for b in d.bindings()},
                 "the attacker's binding of its own child")
    pairs = {(b["parent"], b["child"]) for b in d.bindings()}
    ot.check(pairs == {(GP, GC), (A, W)}, f"bindings after the attack: {pairs}")
    print("  datagrams binding root's process (by pidfd, by pid, to root's parent), pid 1 "
          "and orphand: refused and logged; root's binding kept")

    # The attacker dies: its own child goes, root's process stays.
    signal.pidfd_send_signal(p_fd, signal.SIGKILL)
    p.wait()
    ot.check(ot.wait_pidfd(witness_fd), f"the attacker's own child survived:\n{d.read_log()}")
    ot.reap(witness)
    ot.check(st.alive(victim_fd), "root's process died with the attacker")
    ot.check(d.ping(), "orphand does not answer PING")
    print("  the attacker killed: its own child died, root's process lives")

    # In user and pid namespaces of its own, nobody is root there and may claim uid 0: orphand
    # sees uid 65534 and judges as ever; a raw pid from there means nothing to it.
    vfd = os.pidfd_open(V)
    try:
        os.set_inheritable(vfd, True)
        ns = ["unshare", "--user", "--map-root-user", "--pid", "--fork"]
        res = st.hostile(d, [{"dgram": rec(1, V, REG), "fds": [f"inherit:{vfd}"]},
                             {"dgram": rec(1, V, REG), "fds": [f"inherit:{vfd}"],
                              "creds": [1, 0, 0]},
                             {"dgram": rec(1, V, REG)}], wrap=ns, pass_fds=(vfd,))
    finally:
        os.close(vfd)
    ot.check([r.get("sent") for r in res] == [12] * 3, f"datagrams from namespaces: {res}")
    wait_logged(d, refusal(r"\d+", NOBODY, 1, V, not_permitted), 2)
    wait_logged(d, refusal(r"\d+", NOBODY, 1, V, "client in another pid namespace must pass "
                           "pidfds"))
    ot.check(st.alive(victim_fd), "root's process died")
    ot.check({(b["parent"], b["child"]) for b in d.bindings()} == {guard},
             f"bindings after the namespaced attack: {d.bindings()}")
    print("  from its own user and pid namespaces, claiming uid 0: refused as uid 65534")
    return victim, victim_fd


def flood(d, victim, victim_fd):
    """WORKERS attackers send datagrams with hundreds of fds each, for FLOOD_SECONDS."""
    fds_before = st.baseline_fds(d)
    refusals_before = d.read_log().count("refused")
    workers = [ot.spawn(st.as_user(NOBODY, st.script("dgram_flood.py", d.socket,
                                                     str(FLOOD_SECONDS), str(victim.pid))),
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(WORKERS)]
    for w, _ in workers:
        if w.stdout.readline().strip() != "ready":
            ot.fail(f"a flood worker failed ({w.wait()})")
    parent, parent_fd = ot.sleeper()
    child, child_fd = ot.sleeper()
    for w, _ in workers:
        w.stdin.write("go\n")
        w.stdin.flush()
    start = time.monotonic()
    pings, worst, bound = 0, 0.0, False
    while any(w.poll() is None for w, _ in workers):
        took = st.ping_latency(d, 1.0)
        ot.check(took is not None, "a root PING was not answered within 1.0 s during the flood")
        worst = max(worst, took)
        pings += 1
        if not bound and time.monotonic() - start > 1.0:
            with d.client() as c:
                st.expect(c.register(parent.pid, child.pid), 0, OK,
                          "a root binding during the flood")
            bound = True
        time.sleep(0.02)
    ot.check(bound, "the flood ended before the root binding was made")
    results = [json.loads(w.stdout.readline()) for w, _ in workers]
    for w, _ in workers:
        ot.check(w.wait() == 0, f"a flood worker failed: {w.returncode}")
    sent = sum(r["sent"] for r in results)
    print(f"  {WORKERS} attackers for {FLOOD_SECONDS} s: {sent} datagrams sent "
          f"({[r['by_kind'] for r in results]}, {sum(r['full'] for r in results)} waits on a "
          f"full queue, errors {[r['errors'] for r in results]}); {pings} root PINGs answered, "
          f"the slowest in {worst * 1000:.0f} ms")
    # The flood happened: every worker had datagrams of every kind taken.
    ot.check(all(min(r["by_kind"]) > 0 for r in results), f"a kind was never sent: {results}")
    # Each PING took at most 1 s: a flood of FLOOD_SECONDS saw at least that many.
    ot.check(pings >= FLOOD_SECONDS, f"only {pings} PINGs during the flood")

    # Afterwards: alive, the log was not flooded, the binding made meanwhile holds.
    ot.check(d.alive() and d.ping(), "orphand is not serving after the flood")
    logged = d.read_log().count("refused") - refusals_before
    ot.check(0 < logged <= 100, f"{sent} refused datagrams logged {logged} lines")
    ot.check(st.alive(victim_fd), "root's process died in the flood")
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    ot.check(ot.wait_pidfd(child_fd), "the root binding made during the flood not enforced")
    ot.reap(parent)
    ot.reap(child)
    d.wait_until(lambda: all(b["parent"] != parent.pid for b in d.bindings()),
                 "the binding made during the flood to go")
    # Every fd the flood passed is closed: the daemon holds what it held before.
    d.wait_until(lambda: st.settled_fds(d) == fds_before,
                 f"the daemon's fds back to {fds_before}")
    print(f"  afterwards: {logged} refusal lines logged; the root binding made during the flood "
          f"was enforced; daemon fds back to {fds_before}")


def main():
    with st.daemon() as d:
        # A root binding made before the attacks must still be enforced after them.
        guard_parent, guard_parent_fd, guard_child, guard_child_fd = st.root_binding(d)
        fds_before = st.baseline_fds(d)

        print("datagrams as nobody (uid 65534):")
        victim, victim_fd = refused_bindings(d, (guard_parent.pid, guard_child.pid))
        print("a flood of datagrams as nobody:")
        flood(d, victim, victim_fd)

        d.wait_until(lambda: st.settled_fds(d) == fds_before, f"daemon fds back to {fds_before}")
        ot.check(st.alive(guard_child_fd), "root's bound child killed early")
        signal.pidfd_send_signal(guard_parent_fd, signal.SIGKILL)
        ot.check(ot.wait_pidfd(guard_child_fd), "root's binding not enforced after the attacks")
        ot.check(d.alive(), "orphand died")


ot.run(main)
