# SPDX-License-Identifier: MIT
"""As nobody, ways to stall the daemon's single event loop, or to make it spin or swell.

The daemon has one thread and one epoll loop: whatever one client makes it wait for, or spin on,
delays every kill. Each attack is run by client.py as nobody, which holds its ground (its sockets
open) while the test, as root, measures what the daemon still does:

F1  A passed fd whose last close() blocks: a TCP socket on 127.0.0.1 with SO_LINGER {1, 30 s}
    whose peer (held by the attacker) never reads, with its send queue full, so that its FIN can
    never be sent. The attacker closes its own copy while the socket is in flight, so that the
    daemon's close is the last (checked: the attacker's close returns at once).
    a. passed with a legacy PING, which the daemon answers, then closes the fd;
    b. queued on a connection the daemon refuses (over --max-connections-per-uid) and so closes
       unread;
    c. queued, unread, behind PINGs whose replies are not read, on a connection the client then
       closes: the daemon's next reply fails and it closes the connection.
    A daemon takes what a client sends (or refuses its connection) as soon as it arrives, before
    the client could close its copy (or send at all): for a and b the daemon is stopped
    (SIGSTOP) while the attacker connects and sends, as a busy daemon would be late.
    Checked: a witness and a PING within BOUND seconds, and the daemon's open fds back to their
    baseline once the attacker is gone (its exit resets the socket, ending any close).
F2  A half-shut connection: HELLO, PINGs whose replies are never read (so the daemon's output
    backs up and it stops reading), then shutdown(SHUT_RDWR) with the socket held open.
    Checked: the daemon's CPU time (utime + stime) over CPU_WINDOW seconds while it is held, and
    a witness.
F3  LIST amplification: 8,192 bindings of nobody's own processes (64 parents x 128 children),
    then 512 LISTs (a 512 KiB reply each) in one write, none read, the connection held.
    Checked: a witness, the daemon's RssAnon growth while the connection is held, and a PING
    once it is closed.

A witness is a root binding (a parent sleep and a child sleep, registered by root): its parent is
SIGKILLed during the attack and its child must be dead within BOUND seconds. Every figure is
printed whether or not it passes; the failures are reported together at the end.
"""

import json
import os
import signal
import subprocess
import time

import orphtest as ot
import sectest as st
from sectest import NOBODY, duration, report

BOUND = 3.0                # seconds: witness kill, PING answer
LINGER = 30                # seconds a lingering close may take
CPU_WINDOW = 3.0           # seconds of the daemon's CPU time measured in the half-shut attack
CPU_LIMIT = 0.5            # seconds of CPU allowed in that window
MEMORY_LIMIT_KIB = 16 * 1024
PARENTS, CHILDREN, LISTS = 64, 128, 512
HOLD_CAP = 20.0            # seconds the LIST attacker is held at most, for the figures
CONN_PER_UID = 4
UNREAD_PINGS = 1200        # more than the daemon can send unread (~280) plus a read (512)

class Attacker:
    """client.py as nobody, stopping at each {"pause": true} op until resume() or finish()."""

    def __init__(self, d, ops):
        self.p, self.pidfd = ot.spawn(st.as_user(NOBODY, st.script("client.py")),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        self.p.stdin.write(json.dumps({"socket": d.socket, "ops": ops}) + "\n")
        self.p.stdin.flush()

    def paused(self, timeout=60):
        """The results of the operations before the next pause."""
        line = st.read_line(self.p, timeout)
        if not line:
            self.kill()
            ot.fail(f"attacker did not reach its pause: {self.p.stderr.read()}")
        res = json.loads(line)
        for r in res:
            ot.check(not (isinstance(r, dict) and "exception" in r), f"attacker failed: {res}")
        return res

    def resume(self):
        self.p.stdin.write("\n")
        self.p.stdin.flush()

    def finish(self):
        """Lets the attacker run to its end and exit, closing all it holds; waits for it."""
        try:
            self.p.stdin.close()
            self.p.wait(timeout=ot.TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        self.ended_at = time.monotonic()

    def kill(self):
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except OSError:
            pass
        self.p.wait()
        self.ended_at = time.monotonic()


class Witness:
    """A root binding, parent and child sleeps, registered by root."""

    def __init__(self, d):
        self.parent, self.parent_fd, self.child, self.child_fd = st.root_binding(
            d, "root witness binding")

    def kill_parent(self):
        signal.pidfd_send_signal(self.parent_fd, signal.SIGKILL)
        self.killed_at = time.monotonic()

    def child_dead_within(self, timeout):
        """Seconds from the parent's SIGKILL to the child's death, or None if not by timeout."""
        if not ot.wait_pidfd(self.child_fd, max(0.0, self.killed_at + timeout - time.monotonic())):
            return None
        ot.reap(self.child)
        ot.reap(self.parent)
        return time.monotonic() - self.killed_at


def cpu_seconds(pid):
    """The process's user plus system CPU time (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14 and 15


def kernel_stack(pid, frames=7):
    """Where the daemon's main thread is in the kernel, innermost first: "a < b < c"."""
    try:
        with open(f"/proc/{pid}/stack") as f:
            names = [line.split()[1].split("+")[0] for line in f if len(line.split()) > 1]
    except OSError:
        return "?"
    return " < ".join(names[:frames]) or "(running)"


def lingering_closes(pid):
    """How many of the process's threads wait in a lingering TCP close, and how many it has."""
    waiting = 0
    tasks = os.listdir(f"/proc/{pid}/task")
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stack") as f:
                waiting += "sk_stream_wait_close" in f.read()
        except OSError:
            pass
    return waiting, len(tasks)


def check_kill_and_ping(d, w, what):
    """Kills the witness's parent; checks its child's death and a PING, each within BOUND."""
    w.kill_parent()
    killed = w.child_dead_within(BOUND)
    print(f"  daemon's main thread in the kernel: {kernel_stack(d.pid)}")
    if what.startswith("F1"):
        print("  daemon threads waiting in the lingering close: {} of {}".format(
            *lingering_closes(d.pid)))
    report(killed is not None,
           f"{what}: witness child dead within {BOUND:.0f} s of its parent's SIGKILL "
           f"(took {duration(killed)})")
    ping = st.ping_latency(d, BOUND)
    report(ping is not None, f"{what}: PING answered within {BOUND:.0f} s (took {duration(ping)})")
    return killed


def after_attacker(d, w, a, killed, fds_before, what):
    """Once the attacker is gone: the late witness (a figure only) and the daemon's fds."""
    if killed is None:
        late = w.child_dead_within(BOUND + LINGER + ot.TIMEOUT)
        ot.check(late is not None, f"{what}: witness child never killed")
        print(f"  witness child died {late:.3f} s after its parent's SIGKILL, "
              f"{w.killed_at + late - a.ended_at:.3f} s after the attacker exited")
    fds = st.wait_fds(d, fds_before)
    report(fds == fds_before, f"{what}: daemon fds back to {fds_before} once the attacker is "
                              f"gone (now {fds})")


def passed(res, what):
    """Reports the lingering socket's passing, which must have left the daemon the last
    reference: the attacker's own close of it returned at once."""
    print(f"  lingering socket passed with {res['stuck'][0]} bytes stuck in its send queue; "
          f"the attacker's own close returned at once: {res['closes_returned']}")
    ot.check(res["closes_returned"], f"{what}: the attacker, not the daemon, held the last "
                                     f"reference to the socket: no attack")


def while_stopped(d, a):
    """Runs the attacker from one pause to the next while the daemon is stopped (see F1 above),
    and returns the results of the operations run meanwhile."""
    a.paused()
    signal.pidfd_send_signal(d.pidfd, signal.SIGSTOP)
    try:
        d.wait_until(lambda: ot.proc_state(d.pid) == "T", "the daemon to stop")
        a.resume()
        return a.paused()
    finally:
        signal.pidfd_send_signal(d.pidfd, signal.SIGCONT)


def freeze_by_passed_fd():
    lingering = f"lingering-tcp:{LINGER}"
    print(f"F1a: a passed TCP socket whose last close() lingers up to {LINGER} s, with a PING")
    with st.daemon() as d:
        fds_before = st.settled_fds(d)
        w = Witness(d)
        a = Attacker(d, [{"pause": True},
                         {"send": ot.record(0, 0, ot.PING).hex(), "hello": False,
                          "fds": [lingering], "keep": True},
                         {"pause": True}])
        passed(while_stopped(d, a)[-1], "F1a")
        killed = check_kill_and_ping(d, w, "F1a")
        a.finish()
        after_attacker(d, w, a, killed, fds_before, "F1a")

    print(f"F1b: the same socket queued on a connection refused over the per-uid limit "
          f"({CONN_PER_UID}), closed unread")
    with st.daemon(f"--max-connections-per-uid={CONN_PER_UID}") as d:
        fds_before = st.settled_fds(d)
        w = Witness(d)
        a = Attacker(d, [{"open": CONN_PER_UID}, {"pause": True},
                         {"send": ot.record(0, 0, ot.PING).hex(), "hello": False,
                          "fds": [lingering]},
                         {"pause": True}])
        passed(while_stopped(d, a)[-1], "F1b")
        ot.check(d.wait_log("refusing connection from pid"), "connection not refused")
        killed = check_kill_and_ping(d, w, "F1b")
        a.finish()
        after_attacker(d, w, a, killed, fds_before, "F1b")

    print("F1c: the same socket queued, unread, behind unanswered requests on a connection "
          "whose client then closes it")
    with st.daemon() as d:
        fds_before = st.settled_fds(d)
        w = Witness(d)
        # PINGs whose replies are not read: the daemon stops reading long before the last,
        # which carries the socket, so the attacker's close of its copy is not the last one
        # (no need to stop the daemon). The client's close then makes the daemon's next reply
        # fail, and the daemon closes the connection with the socket still in its queue.
        pings = UNREAD_PINGS + 1
        a = Attacker(d, [{"send": ot.request(0, 0, ot.PING, seq=1).hex(), "repeat": pings,
                          "at": 32 * UNREAD_PINGS, "split": 32, "fds": [lingering]},
                         {"pause": True}])
        passed(a.paused()[0], "F1c")
        killed = check_kill_and_ping(d, w, "F1c")
        a.finish()
        after_attacker(d, w, a, killed, fds_before, "F1c")


def spin_on_half_shut_connection():
    print("F2: a connection shut down both ways, its replies unread, held open")
    with st.daemon() as d:
        w = Witness(d)
        a = Attacker(d, [{"send": ot.request(0, 0, ot.PING, seq=7).hex(), "repeat": 20000,
                          "nonblocking": True, "settle": 0.2, "shutdown": True, "keep": True},
                         {"pause": True}])
        res = a.paused()
        print(f"  {res[0]['sent'] // 32} of 20000 PINGs written before the daemon stopped "
              f"reading, {res[0]['unread'] // 32} replies queued unread; then "
              f"shutdown(SHUT_RDWR)")
        time.sleep(0.2)
        t0, c0 = time.monotonic(), cpu_seconds(d.pid)
        time.sleep(CPU_WINDOW)
        cpu, wall = cpu_seconds(d.pid) - c0, time.monotonic() - t0
        report(cpu < CPU_LIMIT, f"F2: daemon CPU time {cpu:.2f} s in {wall:.2f} s while the "
                                f"connection is held (limit {CPU_LIMIT} s)")
        check_kill_and_ping(d, w, "F2")
        a.finish()
        ot.check(st.ping_latency(d, BOUND) is not None,
                 "F2: no PING answer after the attacker left")


def wait_named(procs, comm):
    """Waits until every process runs `comm` (setpriv has exec'd it, as the target uid)."""
    def named(p):
        try:
            with open(f"/proc/{p.pid}/comm") as f:
                return f.read().strip() == comm
        except OSError:
            return False
    deadline = time.monotonic() + ot.TIMEOUT
    while not all(named(p) for p in procs):
        ot.check(time.monotonic() < deadline, f"processes not running {comm}")
        time.sleep(0.01)


def list_amplification():
    print(f"F3: {LISTS} LISTs of {PARENTS * CHILDREN} bindings in one write, no reply read")
    with st.daemon() as d:
        parents = [st.user_sleeper(NOBODY)[0] for _ in range(PARENTS)]
        children = [st.user_sleeper(NOBODY)[0] for _ in range(CHILDREN)]
        wait_named(parents + children, "sleep")
        res = st.hostile(d, [{"v1": [p.pid, c.pid, ot.REGISTER]}
                             for p in parents for c in children])
        bad = [r for r in res if r.get("error") != 0]
        ot.check(not bad, f"{len(bad)} of nobody's registrations refused, e.g. {bad[:3]}")
        print(f"  nobody holds {len(res)} bindings ({PARENTS} parents x {CHILDREN} children); "
              f"a LIST reply is {32 + 64 * len(res)} bytes")
        w = Witness(d)
        rss_before = st.memory_kib(d.pid)["RssAnon"]
        lists = b"".join(ot.request(0, 0, ot.LIST, seq=i + 1) for i in range(LISTS))
        a = Attacker(d, [{"send": lists.hex(), "keep": True}, {"pause": True}])
        a.paused()
        t0 = time.monotonic()
        w.kill_parent()
        killed = None
        rss_peak = rss_before
        # Held at least CPU_WINDOW seconds; longer while the witness lives (for the figures).
        while True:
            rss_peak = max(rss_peak, st.memory_kib(d.pid)["RssAnon"])
            if killed is None and ot.pidfd_dead(w.child_fd):
                killed = time.monotonic() - w.killed_at
            held = time.monotonic() - t0
            if held >= HOLD_CAP or (held >= CPU_WINDOW and killed is not None):
                break
            time.sleep(0.05)
        growth = rss_peak - rss_before
        print(f"  daemon RssAnon {rss_before} KiB before, peak {rss_peak} KiB while held "
              f"{held:.1f} s")
        report(killed is not None and killed < BOUND,
               f"F3: witness child dead within {BOUND:.0f} s of its parent's SIGKILL "
               f"(took {duration(killed)})")
        report(growth < MEMORY_LIMIT_KIB,
               f"F3: daemon RssAnon growth {growth} KiB while the LISTs are held "
               f"(limit {MEMORY_LIMIT_KIB} KiB)")
        a.finish()
        ping = st.ping_latency(d, BOUND)
        report(ping is not None, f"F3: PING answered within {BOUND:.0f} s once the attacker "
                                 f"left (took {duration(ping)})")
        if killed is None:
            ot.check(w.child_dead_within(ot.TIMEOUT) is not None, "F3: witness never killed")


def main():
    freeze_by_passed_fd()
    spin_on_half_shut_connection()
    list_amplification()
    st.end_report()


ot.run(main)
