# SPDX-License-Identifier: MIT
"""Isolation between users and between a connection's messages, checked on real processes.

One function per finding, each against its own daemon; every one runs even when an earlier one
failed, and the test fails at the end if any did.

F4  a PIDFD_THREAD pidfd passed as a parent is refused, so that it cannot stand in for the
    process in the daemon's table: a later kill of that process must reach the whole process.
F5  a child bound to several parents is signalled by each parent's death, not only the first.
F6  fds belong to the message they were sent with, even when the daemon reads that message
    together with the one before it.
F7  an unprivileged user learns nothing about other users' bindings: UNREGISTER, REGISTER and
    STATUS answer as if those bindings did not exist.
F8  a process name cannot forge log lines: control characters in it are escaped.
F9  a thread id is not a process: named as a parent or a child it is refused, and no child is
    killed for it.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import traceback

import orphand
import orphtest as ot
import sectest as st
from sectest import NOBODY, NOT_A_PROCESS, NOT_BOUND, OK, OTHER

REG, UNREG = ot.REGISTER, ot.UNREGISTER
EINVAL = -22
# How long a kill may lag once the daemon has visibly handled the death (a witness died).
QUICK = 3.0

# A process that dies of a process-directed SIGTERM only: every thread blocks SIGTERM and a
# second thread takes it with sigwait(). A SIGTERM sent to the main thread alone stays pending.
SIGTERM_WAITER = """
import os, signal, threading, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
def waiter():
    signal.sigwait({signal.SIGTERM})
    os._exit(0)
threading.Thread(target=waiter, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(600)
"""

# A process with a second thread; prints that thread's id.
TWO_THREADS = """
import threading, time
def run():
    print(threading.get_native_id(), flush=True)
    time.sleep(600)
threading.Thread(target=run, daemon=True).start()
time.sleep(600)
"""

FORGED_NAME = b"x\n<0>FORGED"  # 11 bytes: fits comm's 15
RENAMED = """
import time
with open("/proc/self/comm", "wb") as f:
    f.write(%r)
print("ready", flush=True)
time.sleep(600)
""" % FORGED_NAME


class Outcome:
    """A finding's checks: each one is reported, and the finding fails at the end if any did."""

    def __init__(self):
        self.wrong = []

    def check(self, cond, good, bad):
        if cond:
            print(f"  ok: {good}")
        else:
            print(f"  WRONG: {bad}")
            self.wrong.append(bad)
        return cond

    def expect(self, result, error, reason, what):
        name = st.REASON_NAMES.get
        if isinstance(result, dict) and "reason" in result:
            got = f"error {result['error']} reason {name(result['reason'], result['reason'])}"
            cond = (result["error"], result["reason"]) == (error, reason)
        else:
            got, cond = f"no reply ({result})", False
        return self.check(cond, f"{what}: error {error}, {name(reason, reason)}",
                          f"{what}: expected error {error} reason {name(reason, reason)}, "
                          f"got {got}")

    def done(self):
        if self.wrong:
            ot.fail("; ".join(self.wrong))


def read_line(p, what, timeout=ot.TIMEOUT):
    ot.check(ot.wait_pidfd(p.stdout.fileno(), timeout), f"{what} printed nothing")
    return p.stdout.readline().strip()


def python(uid, script, what):
    """script run by python3 as uid (None: root); returns (Popen, pidfd, its first line)."""
    argv = st.python("-c", script)
    if uid is not None:
        argv = st.as_user(uid, argv)
    p, fd = ot.spawn(argv, stdout=subprocess.PIPE, text=True)
    line = read_line(p, what)
    ot.check(line, f"{what} did not start")
    return p, fd, line


def sleeper(uid):
    return ot.sleeper() if uid is None else st.user_sleeper(uid)


def kill(fd):
    signal.pidfd_send_signal(fd, signal.SIGKILL)


def f4_thread_pidfd_parent():
    """F4: a PIDFD_THREAD pidfd passed as a parent must not poison the process for everyone."""
    out = Outcome()
    with st.daemon() as d:
        # The outcome check depends on this: a process-directed SIGTERM ends the waiter.
        probe, probe_fd, _ = python(OTHER, SIGTERM_WAITER, "SIGTERM waiter")
        signal.pidfd_send_signal(probe_fd, signal.SIGTERM)
        ot.check(ot.wait_pidfd(probe_fd, 5), "setup: a process-directed SIGTERM did not end "
                 "the SIGTERM waiter")
        ot.reap(probe)

        x, x_fd, _ = python(OTHER, SIGTERM_WAITER, "SIGTERM waiter")   # uid 4242's process X
        s, _ = st.user_sleeper(NOBODY)
        res = st.hostile(d, [{"v1": [x.pid, s.pid, REG],
                              "fds": [f"pidfd:{s.pid}", f"tpidfd:{x.pid}"]}])
        out.expect(res[0], EINVAL, NOT_A_PROCESS,
                   "nobody names uid 4242's process as a parent by a PIDFD_THREAD pidfd")

        # X's owner binds X as a child, SIGTERM and no escalation, and its parent dies.
        q, q_fd = st.user_sleeper(OTHER)
        res = st.hostile(d, [{"v1": [q.pid, x.pid, REG], "flags": ot.FLAG_GRACE,
                              "grace_ms": ot.GRACE_NEVER}], uid=OTHER)
        st.expect(res[0], 0, OK, "uid 4242 binds its own X to its own Q, grace never")
        kill(q_fd)
        out.check(ot.wait_pidfd(x_fd, 5),
                  "X exited on the SIGTERM sent when Q died",
                  f"X ({x.pid}) still alive 5 s after its parent Q died: the SIGTERM reached "
                  "one thread only")
        ot.check(d.alive() and d.ping(), "daemon not serving")
    out.done()


def f5_signalled_by_each_parent():
    """F5: each parent's death signals a child bound to several parents."""
    out = Outcome()
    with st.daemon() as d:
        # Case 1: root binds C to A (SIGWINCH, never escalated) and to B (default policy).
        a, a_fd = ot.sleeper()
        b, b_fd = ot.sleeper()
        c, c_fd = ot.sleeper()
        wa, wa_fd = ot.sleeper()   # witnesses: gone once the daemon handled A's, B's death
        wb, wb_fd = ot.sleeper()
        with d.client() as cl:
            st.expect(cl.register(a.pid, c.pid, sig=signal.SIGWINCH, grace_ms=ot.GRACE_NEVER),
                      0, OK, "root binds C to A with SIGWINCH, grace never")
            st.expect(cl.register(b.pid, c.pid), 0, OK, "root binds C to B, default policy")
            st.expect(cl.register(a.pid, wa.pid), 0, OK, "root binds a witness to A")
            st.expect(cl.register(b.pid, wb.pid), 0, OK, "root binds a witness to B")
        kill(a_fd)
        ot.check(ot.wait_pidfd(wa_fd), "A's witness not killed: A's death not handled")
        ot.check(st.alive(c_fd), "setup: C did not survive SIGWINCH")
        kill(b_fd)
        ot.check(ot.wait_pidfd(wb_fd), "B's witness not killed: B's death not handled")
        out.check(ot.wait_pidfd(c_fd, QUICK),
                  "case 1: C, which survived A's SIGWINCH, killed when B died",
                  f"case 1: C ({c.pid}) still alive after B died (signalled once, by A only)")

        # Case 2: root binds nobody's V to P_root; nobody binds V to P_n with SIGWINCH.
        pr, pr_fd = ot.sleeper()
        wr, wr_fd = ot.sleeper()
        pn, pn_fd = st.user_sleeper(NOBODY)
        wn, wn_fd = st.user_sleeper(NOBODY)
        v, v_fd = st.user_sleeper(NOBODY)
        with d.client() as cl:
            st.expect(cl.register(pr.pid, v.pid), 0, OK, "root binds nobody's V to P_root")
            st.expect(cl.register(pr.pid, wr.pid), 0, OK, "root binds a witness to P_root")
        res = st.hostile(d, [{"v1": [pn.pid, v.pid, REG],
                              "flags": ot.FLAG_SIGNAL | ot.FLAG_GRACE,
                              "signal": int(signal.SIGWINCH), "grace_ms": ot.GRACE_NEVER},
                             {"v1": [pn.pid, wn.pid, REG]}])
        st.expect(res[0], 0, OK, "nobody binds its V to P_n with SIGWINCH, grace never")
        st.expect(res[1], 0, OK, "nobody binds a witness to P_n")
        kill(pn_fd)
        ot.check(ot.wait_pidfd(wn_fd), "P_n's witness not killed: P_n's death not handled")
        ot.check(st.alive(v_fd), "setup: V did not survive SIGWINCH")
        kill(pr_fd)
        ot.check(ot.wait_pidfd(wr_fd), "P_root's witness not killed: its death not handled")
        out.check(ot.wait_pidfd(v_fd, QUICK),
                  "case 2: V killed by root's binding after nobody's SIGWINCH",
                  f"case 2: V ({v.pid}) still alive after P_root died: nobody's SIGWINCH "
                  "binding spent root's kill")
        ot.check(d.alive() and d.ping(), "daemon not serving")
    out.done()


def glued_registers(d, cl, parent, child1, child2, how):
    """REGISTER (parent, child1) without fds, then REGISTER (parent, child2) with child2's
    pidfd, both queued before the daemon reads either: one recvmsg() reads the two, with the fds
    of the second. Returns the two replies."""
    cl.seq += 1
    first = ot.request(parent, child1, REG, seq=cl.seq)
    cl.seq += 1
    second = ot.request(parent, child2, REG, seq=cl.seq)
    c2fd = os.pidfd_open(child2)
    try:
        if how == "stopped":
            # The daemon is stopped: both messages are in the socket when it next reads.
            signal.pidfd_send_signal(d.pidfd, signal.SIGSTOP)
            try:
                d.wait_until(lambda: ot.proc_state(d.pid) == "T", "the daemon to stop")
                cl.sock.sendall(first)
                orphand.send_message(cl.sock, second, [c2fd])
            finally:
                signal.pidfd_send_signal(d.pidfd, signal.SIGCONT)
        else:
            # The daemon stops reading a connection whose replies are not read. PINGs in
            # blocks of 512 (16 KiB, the old daemon's read size): each block is one skb, each
            # read one block, so the read that reaches the REGISTERs starts with the first.
            # 8 blocks give 4,096 replies, far more than the daemon can send unread: it stops
            # long before the REGISTERs, which are queued by then.
            cl.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            pings = 0
            for _ in range(8):
                block = []
                for _ in range(512):
                    cl.seq += 1
                    block.append(ot.request(0, 0, ot.PING, seq=cl.seq))
                cl.sock.sendall(b"".join(block))
                pings += len(block)
            cl.sock.sendall(first)
            orphand.send_message(cl.sock, second, [c2fd])
            data = ot.recv_exact(cl.sock, 32 * pings)
            bad = [r for r in (ot.parse_reply(data[i:i + 32]) for i in range(0, len(data), 32))
                   if r["action"] != ot.PING or r["error"] != 0]
            ot.check(not bad, f"PING replies wrong: {bad[:3]}")
    finally:
        os.close(c2fd)
    return [ot.recv_reply(cl.sock) for _ in range(2)]


def f6_fds_stay_with_their_message():
    """F6: fds sent with a message are not attached to the message before it."""
    out = Outcome()
    with st.daemon() as d:
        for how, text in (("stopped", "daemon stopped"),
                          ("pings", "daemon's output backed up by unread PING replies")):
            p, _ = ot.sleeper()
            c1, c1_fd = ot.sleeper()
            c2, c2_fd = ot.sleeper()
            with d.client() as cl:
                r1, r2 = glued_registers(d, cl, p.pid, c1.pid, c2.pid, how)
            out.expect(r1, 0, OK, f"{text}: REGISTER without fds, read with the next one")
            out.expect(r2, 0, OK, f"{text}: REGISTER with the child's pidfd")
            bound = {(b["parent"], b["child"]) for b in d.bindings() if b["parent"] == p.pid}
            want = {(p.pid, c1.pid), (p.pid, c2.pid)}
            out.check(bound == want, f"{text}: LIST shows both bindings",
                      f"{text}: LIST shows {sorted(bound)}, expected {sorted(want)}")
            ot.check(st.alive(c1_fd) and st.alive(c2_fd), f"{text}: a child was killed")
        ot.check(d.alive() and d.ping(), "daemon not serving")
    out.done()


def f7_no_oracle():
    """F7: as nobody, UNREGISTER, REGISTER and STATUS tell nothing of root's bindings."""
    out = Outcome()
    with st.daemon() as d:
        p, p_fd = ot.sleeper()                             # root's parent, 4 root children
        kids = [ot.sleeper() for _ in range(4)]
        p2, p2_fd = ot.sleeper()                           # root's parent of nobody's V
        v, v_fd = st.user_sleeper(NOBODY)
        pn, pn_fd = st.user_sleeper(NOBODY)                # nobody's parent, 3 nobody children
        mine = [st.user_sleeper(NOBODY) for _ in range(3)]
        u, _ = st.user_sleeper(NOBODY)                     # bound to nothing
        with d.client() as cl:
            for k, _ in kids:
                st.expect(cl.register(p.pid, k.pid), 0, OK, f"root binds {k.pid} to P")
            st.expect(cl.register(p2.pid, v.pid), 0, OK, "root binds nobody's V to P2")
        res = st.hostile(d, [{"v1": [pn.pid, k.pid, REG]} for k, _ in mine])
        for r in res:
            st.expect(r, 0, OK, "nobody binds its own child")

        c = kids[0][0]
        res = st.hostile(d, [{"status": True},
                             {"v1": [p.pid, c.pid, UNREG]},       # root's binding
                             {"v1": [p.pid, u.pid, UNREG]},       # no binding, unknown child
                             {"v1": [p.pid, mine[0][0].pid, UNREG]}])  # no such pair
        s = res[0].get("status", {})
        out.check(s.get("bindings") == 3, "STATUS as nobody counts nobody's 3 bindings",
                  f"STATUS as nobody reports {s.get('bindings')} bindings, expected nobody's 3 "
                  "(root holds 5 more)")
        out.expect(res[1], 0, NOT_BOUND, "nobody UNREGISTERs root's binding (P, C)")

        def same(a, b):
            return {k: a.get(k) for k in ("action", "error", "reason", "count")} == \
                   {k: b.get(k) for k in ("action", "error", "reason", "count")}
        out.check(same(res[1], res[2]) and same(res[1], res[3]),
                  "UNREGISTER of root's binding answers as for a pair that is not bound",
                  f"UNREGISTER of root's binding answers {res[1]}, of unbound pairs {res[2]} "
                  f"and {res[3]}")
        # Root's binding is untouched: P's death kills C (and P's other children).
        kill(p_fd)
        out.check(all(ot.wait_pidfd(fd) for _, fd in kids),
                  "root's bindings still enforced after nobody's UNREGISTER",
                  "root's binding (P, C) not enforced after nobody's UNREGISTER")

        s = st.hostile(d, [{"status": True}])[0].get("status", {})
        out.check(s.get("kills") == 0, "STATUS as nobody counts none of root's 4 kills",
                  f"STATUS as nobody reports {s.get('kills')} kills after root's 4, expected 0")
        kill(pn_fd)
        ot.check(all(ot.wait_pidfd(fd) for _, fd in mine), "nobody's children not killed")
        s = st.hostile(d, [{"status": True}])[0].get("status", {})
        out.check(s.get("kills") == 3, "STATUS as nobody counts the 3 kills of its bindings",
                  f"STATUS as nobody reports {s.get('kills')} kills, expected its own 3")
        out.check(s.get("bindings") == 0, "STATUS as nobody: no bindings left of its own",
                  f"STATUS as nobody reports {s.get('bindings')} bindings, expected 0 "
                  "(root still holds (P2, V))")

        res = st.hostile(d, [{"v1": [p2.pid, v.pid, REG]}])
        out.expect(res[0], 0, OK, "nobody REGISTERs (P2, V), which root already bound")
        kill(p2_fd)
        ot.check(ot.wait_pidfd(v_fd), "V not killed when P2 died")
        ot.check(d.alive() and d.ping(), "daemon not serving")
    out.done()


def f8_log_injection():
    """F8: a child's name with a newline cannot forge a log line."""
    out = Outcome()
    with st.daemon() as d:
        child, child_fd, _ = python(None, RENAMED, "renamed process")
        with open(f"/proc/{child.pid}/comm", "rb") as f:
            ot.check(f.read() == FORGED_NAME + b"\n", "setup: the process was not renamed")
        parent, parent_fd = ot.sleeper()
        with d.client() as cl:
            st.expect(cl.register(parent.pid, child.pid), 0, OK,
                      "root binds a child named 'x\\n<0>FORGED'")
        kill(parent_fd)
        ot.check(ot.wait_pidfd(child_fd), "the renamed child was not killed")
        ot.check(d.wait_log("FORGED"), f"the kill was not logged:\n{d.read_log()}")
        time.sleep(0.2)  # the rest of the entry
        lines = d.read_log().splitlines()
        forged = [line for line in lines if line.startswith("<0>")]
        out.check(not forged, "no log line starts with <0>",
                  f"forged log line(s) at priority 0: {forged}")
        escaped = [line for line in lines
                   if "x\\x0a<0>FORGED" in line and f"[{child.pid}]" in line]
        out.check(escaped, f"the kill is logged with the name escaped: {escaped[:1]}",
                  "no log line names the child as x\\x0a<0>FORGED; log:\n" + "\n".join(lines))
        ot.check(d.alive() and d.ping(), "daemon not serving")
    out.done()


def f9_thread_ids():
    """F9: a live thread id, named as a parent or as a child, is refused."""
    out = Outcome()
    with st.daemon() as d:
        for uid, who in ((NOBODY, "nobody"), (None, "root")):
            t, t_fd, line = python(uid, TWO_THREADS, "two-thread process")
            tid = int(line)
            ot.check(tid != t.pid and os.path.isdir(f"/proc/{t.pid}/task/{tid}"),
                     f"setup: {tid} is not a second thread of {t.pid}")
            child, child_fd = sleeper(uid)
            parent, _ = sleeper(uid)
            res = st.hostile(d, [{"v1": [tid, child.pid, REG]},
                                 {"v1": [parent.pid, tid, REG]}], uid=uid)
            out.expect(res[0], EINVAL, NOT_A_PROCESS,
                       f"{who} names its thread {tid} (of {t.pid}) as the parent")
            out.check(not ot.wait_pidfd(child_fd, 1.0), f"{who}: the child is alive",
                      f"{who}: the child {child.pid} was killed: the thread id counted as a "
                      "dead parent")
            out.expect(res[1], EINVAL, NOT_A_PROCESS,
                       f"{who} names its thread {tid} (of {t.pid}) as the child")
            ot.check(st.alive(t_fd), f"{who}: the two-thread process was killed")
        ot.check(d.alive() and d.ping(), "daemon not serving")
    out.done()


FINDINGS = [f4_thread_pidfd_parent, f5_signalled_by_each_parent, f6_fds_stay_with_their_message,
            f7_no_oracle, f8_log_injection, f9_thread_ids]


def reap_children(timeout=5.0):
    """Reaps every child of the test once cleanup() has killed them: no zombie is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def main():
    sys.stdout.reconfigure(line_buffering=True)
    failed = []
    for finding in FINDINGS:
        print(finding.__doc__)
        name = finding.__doc__.split(":")[0]
        try:
            finding()
        except AssertionError as e:
            failed.append(name)
            print(f"{name} FAIL: {e}")
        except Exception:  # noqa: BLE001 -- a broken finding must not hide the others
            failed.append(name)
            print(f"{name} FAIL (error):\n{traceback.format_exc()}")
        else:
            print(f"{name} PASS")
        finally:
            ot.cleanup()
            reap_children()
    ot.check(not failed, f"{len(failed)} of {len(FINDINGS)} findings failed: {', '.join(failed)}")


ot.run(main)
