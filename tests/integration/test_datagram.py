# SPDX-License-Identifier: MIT
"""The datagram socket (PATH.dgram): REGISTER and UNREGISTER records sent as datagrams by real
processes are carried out for their sender, malformed ones are refused and logged without harm,
and the socket exists, world-writable, exactly while orphand runs."""

import array
import contextlib
import errno
import os
import re
import signal
import socket
import stat
import time

import itest as it
import orphand
import orphtest as ot

# The sender's uid in the first cases, not root's, so that the uid LIST names is the sender's:
# another user's where the test can switch to one, else the test's own.
OTHER = 4242 if os.geteuid() == 0 else os.geteuid()


def dgram_path(d):
    return d.socket + orphand.DATAGRAM_SUFFIX


def send_dgram(path, data, fds=()):
    """Sends `data` as one datagram to `path`, with `fds` (borrowed) as SCM_RIGHTS."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        n = s.sendmsg([data], anc if fds else [], 0, path)
        ot.check(n == len(data), f"sent {n} of {len(data)} bytes")


def user_sleeper(uid, name="orph-child"):
    """A tracked `sleep` named `name`, running as uid (real, effective, saved); (Popen, pidfd)."""
    if uid == os.geteuid():
        return it.sleeper(name)
    proc, pidfd = ot.spawn(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                            it.named(name), "600"])
    deadline = time.monotonic() + ot.TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with open(f"/proc/{proc.pid}/status") as f:
                uid_line = next(line for line in f if line.startswith("Uid:"))
            if it.comm(proc.pid) == name[:15] and uid_line.split()[1:] == [str(uid)] * 4:
                return proc, pidfd
        time.sleep(0.001)
    ot.fail(f"{name} did not start as uid {uid}")


def sender(path, build, uid=None, stay=True):
    """A process of this test's own that sends datagrams to `path`: build(its_pid) gives a list
    of (bytes, fds) and runs in it, as `uid` if given. It then waits to be killed (`stay`) or
    exits at once. Returns (pid, pidfd) once every datagram is queued."""
    def send(w):
        for data, fds in build(os.getpid()):
            send_dgram(path, data, fds)
        os.write(w, b"sent")
        while stay:
            signal.pause()
    pid, r = it.fork_as(uid if uid != os.geteuid() else None, send)
    pidfd = ot.track(pid)
    with os.fdopen(r, "rb") as f:
        got = f.read(4) if stay else f.read()  # a sender that stays keeps its end open
    ot.check(got == b"sent", f"the sender {pid} failed")
    return pid, pidfd


def listed(d, parent, child):
    return [b for b in d.bindings() if (b["parent"], b["child"]) == (parent, child)]


def fd_count(d, samples=1):
    """The daemon's open fds once every other connection has closed (one is ours): the fewest
    of `samples` counts, so that a file it has open for a moment (a /proc read) does not
    count in a baseline."""
    with d.client() as c:
        d.wait_until(lambda: c.status()["connections"] == 1, "other connections to close")
        counts = []
        for _ in range(samples):
            counts.append(len(os.listdir(f"/proc/{d.pid}/fd")))
            time.sleep(0.02)
        return min(counts)


def sender_is_parent(d):
    """REGISTER(self, child) with the child's pidfd, from uid OTHER: the sender is the parent
    and the registrant; its death kills the child."""
    child, child_fd = user_sleeper(OTHER, "orph-dchild")
    spid, spidfd = sender(dgram_path(d), lambda me: [
        (ot.record(me, child.pid, ot.REGISTER), [os.pidfd_open(child.pid)])], uid=OTHER)
    it.wait_bound(d, spid, child.pid)
    b = listed(d, spid, child.pid)
    ot.check(len(b) == 1, f"binding listed {len(b)} times: {d.bindings()}")
    ot.check((b[0]["registrant"], b[0]["uid"]) == (spid, OTHER),
             f"registrant (pid, uid) {(b[0]['registrant'], b[0]['uid'])}, expected "
             f"{(spid, OTHER)}")
    ot.check(b[0]["child_comm"] == "orph-dchild", f"LIST: {b[0]}")
    it.expect_alive(child, child_fd, "the child while its sender lives")
    signal.pidfd_send_signal(spidfd, signal.SIGKILL)
    it.expect_dead(d, child, child_fd, "the child of a killed sender", sig=signal.SIGTERM)
    line = it.wait_kill_line(d, child.pid)
    ot.check(f"parent python3[{spid}] died (killed by SIGKILL)" in line,
             f"kill line does not name the sender as the parent: {line!r}")
    os.waitpid(spid, 0)
    it.wait_unbound(d, spid, child.pid)
    print(f"  sender {spid} (uid {OTHER}) bound its child; SIGKILLed, the child died of SIGTERM")


def sender_gone_before_read(d):
    """The sender exits and is reaped before orphand reads its datagram (orphand is stopped
    meanwhile): the binding's parent is already dead, so the child is killed at once."""
    child, child_fd = user_sleeper(OTHER, "orph-dchild2")
    with d.stopped():
        spid, spidfd = sender(dgram_path(d), lambda me: [
            (ot.record(me, child.pid, ot.REGISTER), [os.pidfd_open(child.pid)])],
            uid=OTHER, stay=False)
        _, status = os.waitpid(spid, 0)
        ot.check(os.waitstatus_to_exitcode(status) == 0, "the sender failed")
        ot.check(ot.proc_state(spid) is None, f"sender {spid} not reaped")
        it.expect_alive(child, child_fd, "the child while orphand is stopped")
    it.expect_dead(d, child, child_fd, "the child of a sender reaped before its datagram was "
                   "read", sig=signal.SIGTERM)
    line = it.wait_kill_line(d, child.pid)
    ot.check(re.search(rf"parent \S+\[{spid}\] was already dead when the binding was "
                       r"registered", line),
             f"kill line does not say the sender was dead at registration: {line!r}")
    ot.check(not any(b["child"] == child.pid for b in d.bindings()),
             f"a binding is left: {d.bindings()}")
    print(f"  sender {spid} reaped before its datagram was read: its child died of SIGTERM")


def other_parent_and_unregister(d):
    """REGISTER naming a live parent by pid (the child's pidfd only), from a sender that is not
    the parent; then UNREGISTER by datagram removes another binding."""
    path = dgram_path(d)
    parent, parent_fd = it.sleeper("orph-dparent")
    child, child_fd = it.sleeper("orph-dchild3")
    spid, spidfd = sender(path, lambda me: [
        (ot.record(parent.pid, child.pid, ot.REGISTER), [os.pidfd_open(child.pid)])])
    it.wait_bound(d, parent.pid, child.pid)
    b = listed(d, parent.pid, child.pid)
    ot.check(len(b) == 1 and (b[0]["registrant"], b[0]["uid"]) == (spid, os.getuid())
             and b[0]["parent_comm"] == "orph-dparent", f"LIST: {b}")
    ot.check(not any(x["parent"] == spid for x in d.bindings()), "the sender was bound instead")
    # The sender's death is not the parent's.
    signal.pidfd_send_signal(spidfd, signal.SIGKILL)
    os.waitpid(spid, 0)
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    it.expect_dead(d, child, child_fd, "the child of a parent named by pid", sig=signal.SIGTERM)
    line = it.wait_kill_line(d, child.pid)
    ot.check(f"parent orph-dparent[{parent.pid}] died" in line, f"kill line: {line!r}")
    parent.wait()
    print(f"  REGISTER naming parent {parent.pid} by pid: its death killed the child")

    # UNREGISTER: the binding made by datagram goes; a witness bound to the same parent over
    # the stream shows when orphand has handled the parent's death.
    parent, parent_fd = it.sleeper("orph-dparent2")
    child, child_fd = it.sleeper("orph-dchild4")
    witness, witness_fd = it.sleeper("orph-dwitness")
    send_dgram(path, ot.record(parent.pid, child.pid, ot.REGISTER), [child_fd])
    with d.client() as c:
        ot.check(c.register(parent.pid, witness.pid)["error"] == 0, "witness REGISTER refused")
    it.wait_bound(d, parent.pid, child.pid)
    # The sender stays until it is read: raw pids mean something only from a process whose pid
    # namespace orphand can still see (one reaped meanwhile counts as another namespace's).
    spid, spidfd = sender(path, lambda me: [
        (ot.record(parent.pid, child.pid, ot.UNREGISTER), [])])
    it.wait_unbound(d, parent.pid, child.pid)
    signal.pidfd_send_signal(spidfd, signal.SIGKILL)
    os.waitpid(spid, 0)
    ot.check((parent.pid, witness.pid) in it.pairs(d), "UNREGISTER removed another binding")
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    it.expect_dead(d, witness, witness_fd, "the witness", sig=signal.SIGTERM)
    it.expect_alive(child, child_fd, "the child unregistered by datagram")
    ot.check(it.kill_line(d, child.pid) is None, "the unregistered child was signalled")
    parent.wait()
    print("  UNREGISTER by datagram: the child outlived its parent")


def refusals():
    """Malformed datagrams, each refused and logged; orphand keeps serving, enforces what it
    was given before, binds nothing, and closes every fd sent."""
    with ot.Daemon() as d:
        path = dgram_path(d)
        guard_parent, guard_parent_fd = it.sleeper("orph-gparent")
        guard_child, guard_child_fd = it.sleeper("orph-gchild")
        parent, parent_fd = it.sleeper("orph-rparent")
        witness, witness_fd = it.sleeper("orph-rwitness")
        with d.client() as c:
            ot.check(c.register(guard_parent.pid, guard_child.pid)["error"] == 0, "guard")
            ot.check(c.register(parent.pid, witness.pid)["error"] == 0, "witness")
        baseline = fd_count(d, samples=10)
        before = it.pairs(d)
        P, me, uid = parent.pid, os.getpid(), os.getuid()

        victims = [it.sleeper(f"orph-victim{i}") for i in range(12)]
        V = [v.pid for v, _ in victims]
        other, _ = it.sleeper("orph-other")
        pipes = []  # write ends: EPIPE once the daemon closed the read end it was sent

        def pipe_fd():
            r, w = os.pipe()
            pipes.append(w)
            return r

        reg = ot.record(P, V[0], ot.REGISTER)
        # (data, fds, and the refusal logged: parent, child, what, reason; no reason: none)
        cases = [
            (b"", [pipe_fd()], 0, 0, "a datagram of 0 bytes, not one record,", "unknown action"),
            (reg[:11], [pipe_fd()], 0, 0, "a datagram of 11 bytes, not one record,",
             "unknown action"),
            (reg + b"\0", [os.pidfd_open(V[0])], 0, 0, "a datagram of 13 bytes, not one record,",
             "unknown action"),
            (reg + ot.record(P, V[1], ot.REGISTER), [pipe_fd(), pipe_fd()], 0, 0,
             "a datagram of 24 bytes, not one record,", "unknown action"),
            (ot.record(P, V[2], ot.PING), [], P, V[2], None, "unknown action"),
            (ot.record(orphand.HELLO_MAGIC, 1, ot.HELLO), [], orphand.HELLO_MAGIC, 1, None,
             "unknown action"),
            (ot.record(P, V[3], 0), [], P, V[3], None, "unknown action"),
            (ot.record(P, V[4], ot.REGISTER), [os.pidfd_open(V[4]), os.pidfd_open(P),
                                               os.pidfd_open(V[4])],
             P, V[4], "REGISTER", "too many fds passed"),
            (ot.record(P, V[5], ot.REGISTER), [pipe_fd()], P, V[5], "REGISTER",
             "passed fd is not a pidfd"),
            (ot.record(P, V[6], ot.REGISTER), [os.pidfd_open(V[6]), pipe_fd()], P, V[6],
             "REGISTER", "passed fd is not a pidfd"),
            (ot.record(P, V[7], ot.REGISTER), [os.pidfd_open(other.pid)], P, V[7], "REGISTER",
             "passed pidfd does not match the pid in the request"),
            (ot.record(P, V[8], ot.REGISTER), [pipe_fd() for _ in range(250)], P, V[8],
             "REGISTER", "too many fds passed"),
            # An UNREGISTER needs no fd: the ones sent are closed, and it is no refusal.
            (ot.record(P, V[9], ot.UNREGISTER), [pipe_fd() for _ in range(3)], P, V[9], None,
             None),
        ]
        for data, fds, *_ in cases:
            send_dgram(path, data, fds)
            for fd in fds:
                os.close(fd)

        for data, fds, parent_pid, child_pid, what, reason in cases:
            if reason is None:
                continue
            what_re = re.escape(what) if what else r"\S+"
            pattern = (rf"refused {what_re} \(parent {parent_pid}, child {child_pid}\) from pid "
                       rf"{me} uid {uid}: {re.escape(reason)}")
            d.wait_until(lambda: re.search(pattern, d.read_log()),
                         f"a log line for the {len(data)}-byte datagram with {len(fds)} fds "
                         f"matching {pattern!r}")
        print(f"  {len(cases)} malformed datagrams: each refused and logged")

        ot.check(d.alive() and d.ping(), "orphand does not answer PING over the stream")
        ot.check(it.pairs(d) == before, f"bindings after the refusals: {d.bindings()}")

        # Every fd sent was taken and closed: the pipes' read ends are gone...
        for w in pipes:
            def closed():
                try:
                    os.write(w, b"x")
                except BrokenPipeError:
                    return True
                return False
            d.wait_until(closed, f"the daemon to close the read end of {len(pipes)} pipes")
            os.close(w)
        # ... and the daemon holds what it held before.
        d.wait_until(lambda: fd_count(d) == baseline, f"the daemon's fds back to {baseline}")
        print(f"  {len(pipes)} pipe ends and every pidfd sent closed; daemon fds at {baseline}")

        # The parent named in the refused records dies: only its witness is killed.
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d, witness, witness_fd, "the witness", sig=signal.SIGTERM)
        for v, v_fd in victims:
            it.expect_alive(v, v_fd, "a child named in a refused datagram")
        signal.pidfd_send_signal(guard_parent_fd, signal.SIGKILL)
        it.expect_dead(d, guard_child, guard_child_fd, "the child bound before the refusals",
                       sig=signal.SIGTERM)
        ot.check(d.alive(), "orphand died")


def socket_lifetime():
    """The datagram socket is announced, a socket of mode 0666 while orphand runs, and removed
    when it exits."""
    d = ot.Daemon()
    try:
        d.start()
        path = dgram_path(d)
        st = os.lstat(path)
        ot.check(stat.S_ISSOCK(st.st_mode), f"{path} is not a socket: {st}")
        ot.check(stat.S_IMODE(st.st_mode) == 0o666, f"{path} has mode {stat.S_IMODE(st.st_mode):o}")
        start_line = next((line for line in d.read_log().splitlines()
                           if f"listening on \"{d.socket}\"" in line), "")
        ot.check("with a datagram socket" in start_line,
                 f"start-up line does not announce the datagram socket: {start_line!r}")
        signal.pidfd_send_signal(d.pidfd, signal.SIGTERM)
        ot.check(d.proc.wait(timeout=ot.TIMEOUT) == 0, f"orphand exited with {d.proc.returncode}")
        ot.check(not os.path.lexists(path), f"{path} is left after orphand exited")
        ot.check(not os.path.lexists(d.socket), f"{d.socket} is left after orphand exited")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(b"x" * 12, path)
                ot.fail("a datagram was accepted after orphand exited")
            except OSError as e:
                ot.check(e.errno in (errno.ENOENT, errno.ECONNREFUSED), f"sendto: {e}")
        print(f"  {path}: a socket of mode 0666 while orphand ran, gone after SIGTERM")
    finally:
        d.stop()


def main():
    with ot.Daemon() as d:
        os.chmod(d.dir, 0o755)  # uid OTHER sends too
        sender_is_parent(d)
        sender_gone_before_read(d)
        other_parent_and_unregister(d)
        ot.check(d.alive(), "orphand died")
    refusals()
    socket_lifetime()


if __name__ == "__main__":
    ot.run(main)
