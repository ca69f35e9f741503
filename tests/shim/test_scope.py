# SPDX-License-Identifier: MIT
"""ORPHAND_SCOPE: programs under the shim bind their children with a kill scope.

Against the real daemon, children bound with scope tree are listed with it and die with their
parent. Against fake daemons, the messages the shim sends: the legacy record alone without a
scope (unset, empty, process or unknown), HELLO and one acknowledged REGISTER carrying the
child's pidfd with one; the fallback to scope process when the scope is refused; refusals and
unanswered requests reported with ORPHAND_DEBUG=1; a daemon that never answers costs a bounded
wait, and the program runs as without the shim.

Usage: test_scope.py SPAWNER
"""

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import orphand
import orphtest as ot
import shimtest as st

SCOPES = {s.name.lower(): s for s in orphand.Scope}
VERSION = orphand.PROTOCOL_VERSION  # the protocol version the shim asks for
BAD_POLICY, NOT_PERMITTED = orphand.Reason.BAD_POLICY, orphand.Reason.NOT_PERMITTED
SCOPE_REFUSED = orphand.Reason.SCOPE_REFUSED
RECORD_SIZE, REQUEST_SIZE = orphand.sizeof(orphand.Record), orphand.sizeof(orphand.Request)


def pidfd_pid(fd):
    """The pid behind a pidfd, from its fdinfo; None if fd is not a pidfd."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    return None


def reply(seq, action, error=0, reason=0, count=0):
    return orphand.Reply(seq, action, error, reason, count).pack()


class FakeDaemon:
    """A socket that answers the shim as a daemon of protocol `version` would, each REGISTER by
    `answer(request) -> (error, reason)`, or not at all when `mute`. Reads every connection
    message by message, as orphand does, so that an fd is seen with the message it came with.
    Keeps, per connection, {"hello": ..., "legacy": [...], "requests": [...]}, each message as
    (fields, [pid of each fd passed with it])."""

    def __init__(self, tmp, name, version=VERSION, answer=None, mute=False):
        self.socket = os.path.join(tmp, f"{name}.sock")
        self.version, self.mute = version, mute
        self.answer = answer or (lambda q: (0, orphand.REASON_OK))
        self.conns = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.socket)
        self.srv.listen(64)
        self.srv.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(ot.TIMEOUT)
                self.conns.append(self.serve(conn))

    @staticmethod
    def read_message(conn, size):
        """Exactly `size` bytes and the pids of the fds that came with them, or None at EOF."""
        data, pids = b"", []
        while len(data) < size:
            chunk, fds, _, _ = socket.recv_fds(conn, size - len(data), 4)
            for fd in fds:
                pids.append(pidfd_pid(fd))
                os.close(fd)
            if not chunk:
                return None
            data += chunk
        return data, pids

    def send(self, conn, data):
        if not self.mute:
            with contextlib.suppress(OSError):  # the shim may have stopped waiting
                conn.sendall(data)

    def serve(self, conn):
        seen = {"hello": None, "legacy": [], "requests": []}
        size = RECORD_SIZE
        while True:
            m = self.read_message(conn, size)
            if m is None:
                return seen
            data, pids = m
            if size == RECORD_SIZE:
                rec = orphand.unpack(orphand.Record, data)
                if rec[0] == ot.HELLO_MAGIC and rec[2] == ot.HELLO and seen["hello"] is None:
                    seen["hello"] = (rec, pids)
                    self.send(conn, reply(0, ot.HELLO, count=self.version))
                    size = REQUEST_SIZE
                else:
                    seen["legacy"].append((rec, pids))
                continue
            q = orphand.unpack(orphand.Request, data)
            seen["requests"].append((q, pids))
            e, reason = self.answer(q)
            self.send(conn, reply(q[3], q[2], e, reason))

    def wait_conns(self, n):
        deadline = time.monotonic() + ot.TIMEOUT
        while len(self.conns) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        ot.check(len(self.conns) >= n, f"{len(self.conns)} connections, expected {n}")
        time.sleep(0.05)  # none more
        return self.conns

    def close(self):
        self.stop.set()
        self.thread.join(ot.TIMEOUT)
        self.srv.close()


def run_spawner(spawner, fake, scope):
    """spawner fork under the shim with ORPHAND_DEBUG=1, against `fake`: its pid, its two
    children's (ended here once `fake` has seen their connections), what it wrote to stderr
    and the two connections."""
    n = len(fake.conns)
    p = st.Parent([spawner, "fork"], fake, scope=scope)
    pids = p.read_pids()
    fds = [ot.track(pid) for pid in pids]
    conns = fake.wait_conns(n + 2)[n:]
    errors = p.errors()
    p.kill()
    for fd in fds:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    st.wait_all(fds, ot.TIMEOUT)
    st.reap_orphans()
    ot.check(len(pids) == 2, f"spawner reported {pids}")
    return p.proc.pid, pids, errors, conns


def legacy_only(conns, parent, pids):
    want = [{"hello": None, "legacy": [((parent, pid, ot.REGISTER), [pid])], "requests": []}
            for pid in pids]
    return conns == want


def check_fakes(spawner, tmp):
    ok = FakeDaemon(tmp, "ok")
    # Without a scope, or with scope process: the legacy record alone, as always.
    for scope in (None, "", "process"):
        parent, pids, errors, conns = run_spawner(spawner, ok, scope)
        ot.check(legacy_only(conns, parent, pids) and errors == "",
                 f"ORPHAND_SCOPE={scope!r}: {conns}, stderr {errors!r}")

    # An unknown scope: the legacy record, and one line each with ORPHAND_DEBUG=1.
    parent, pids, errors, conns = run_spawner(spawner, ok, "Tree")
    lines = errors.splitlines()
    ot.check(legacy_only(conns, parent, pids), f"ORPHAND_SCOPE=Tree sent {conns}")
    ot.check(len(lines) == 2 and all(f"child {pid}: unknown ORPHAND_SCOPE \"Tree\"" in line and
                                     "binding with scope process" in line
                                     for pid, line in zip(pids, lines)),
             f"ORPHAND_SCOPE=Tree reported {errors!r}")

    # Each scope: HELLO without fds, then one REGISTER with the scope and the child's pidfd.
    for name in ("pgroup", "tree", "cgroup"):
        parent, pids, errors, conns = run_spawner(spawner, ok, name)
        want = [{"hello": ((ot.HELLO_MAGIC, VERSION, ot.HELLO), []), "legacy": [],
                 "requests": [((parent, pid, ot.REGISTER, 1, 0, 0, 0, SCOPES[name]), [pid])]}
                for pid in pids]
        ot.check(conns == want and errors == "",
                 f"ORPHAND_SCOPE={name}: sent {conns}, expected {want}; stderr {errors!r}")
    ok.close()

    def refuse_scope(error, reason):
        return lambda q: ((error, reason) if q.scope != orphand.SCOPE_PROCESS
                          else (0, orphand.REASON_OK))

    # A refused scope falls back to scope process on the same connection, and says so.
    for fake, scope, text in (
            (FakeDaemon(tmp, "v1", version=1, answer=refuse_scope(-errno.EINVAL, BAD_POLICY)),
             "tree", "invalid signal, grace period or flags (EINVAL)"),
            (FakeDaemon(tmp, "refused", answer=refuse_scope(-errno.EPERM, SCOPE_REFUSED)),
             "cgroup", "cgroup scope refused")):
        parent, pids, errors, conns = run_spawner(spawner, fake, scope)
        fake.close()
        want = [[((parent, pid, ot.REGISTER, 1, 0, 0, 0, SCOPES[scope]), [pid]),
                 ((parent, pid, ot.REGISTER, 2, 0, 0, 0, 0), [pid])] for pid in pids]
        ot.check([c["requests"] for c in conns] == want, f"{fake.socket}: sent {conns}")
        lines = errors.splitlines()
        ot.check(len(lines) == 2 and all(
            f"child {pid} not bound with scope {scope}: {text}" in line and
            line.endswith("; bound with scope process") for pid, line in zip(pids, lines)),
            f"{fake.socket}: reported {errors!r}")

    # Any other refusal is reported, and not retried: scope process would meet it too.
    fake = FakeDaemon(tmp, "denied", answer=lambda q: (-errno.EPERM, NOT_PERMITTED))
    parent, pids, errors, conns = run_spawner(spawner, fake, "tree")
    fake.close()
    ot.check([len(c["requests"]) for c in conns] == [1, 1], f"denied: sent {conns}")
    lines = errors.splitlines()
    ot.check(len(lines) == 2 and all(
        line.endswith(f"child {pid} not bound with scope tree: not permitted to signal that "
                      "child (EPERM)") for pid, line in zip(pids, lines)),
        f"denied: reported {errors!r}")

    # A daemon that reads and never answers: the request was sent, the wait is bounded.
    fake = FakeDaemon(tmp, "mute", mute=True)
    start = time.monotonic()
    parent, pids, errors, conns = run_spawner(spawner, fake, "tree")
    took = time.monotonic() - start
    fake.close()
    ot.check([len(c["requests"]) for c in conns] == [1, 1], f"mute: sent {conns}")
    lines = errors.splitlines()
    ot.check(len(lines) == 2 and all(
        f"child {pid}: REGISTER with scope tree sent, but: no reply within 100 ms" in line
        for pid, line in zip(pids, lines)), f"mute: reported {errors!r}")
    ot.check(took < ot.TIMEOUT, f"two forks took {took:.1f} s against a mute daemon")

    # Without ORPHAND_DEBUG, the program's output is its own (test_fail_open.py has more).
    fake = FakeDaemon(tmp, "mute2", mute=True)
    env = st.shim_env(fake.socket, debug=False, scope="tree")
    want = subprocess.run([spawner, "failopen"], env=st.plain_env(), capture_output=True,
                          timeout=60)
    got = subprocess.run([spawner, "failopen"], env=env, capture_output=True, timeout=60)
    fake.close()
    ot.check((got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout,
                                                          want.stderr),
             f"with a mute daemon and scope tree: {got}, without the shim: {want}")
    print("fake daemons: legacy record without a scope; HELLO and REGISTER with the pidfd with "
          "one; fallback to scope process on a refused scope; refusals and silence reported")


def listed_scopes(d, parent):
    """{child pid: scope name} of `parent`'s bindings, from orphanctl list."""
    out = {}
    for line in d.ctl("list").stdout.splitlines()[1:-1]:
        row = line.split()
        if row[0].endswith(f"[{parent}]"):
            out[int(row[1].rsplit("[", 1)[1].rstrip("]"))] = row[5]
    return out


def check_daemon(spawner):
    with ot.Daemon() as d:
        # Children bound with scope tree, by fork, vfork and posix_spawn: listed with it, and
        # killed when the program dies.
        for mode in ("fork", "vfork", "posix_spawn"):
            p = st.Parent([spawner, mode], d, scope="tree")
            pids = p.read_pids()
            for pid in pids:
                ot.track(pid)  # ended by the test whatever happens
            st.wait_bound(d, pids)
            scopes = listed_scopes(d, p.proc.pid)
            ot.check(scopes == {pid: "tree" for pid in pids},
                     f"{mode} under ORPHAND_SCOPE=tree: listed {scopes}")
            st.expect_children_killed(d, p, pids)

        # Scope cgroup is refused for children in the program's own cgroup (or without cgroup
        # v2): they are bound with scope process instead, and killed all the same.
        p = st.Parent([spawner, "fork"], d, scope="cgroup")
        pids = p.read_pids()
        fds = {ot.track(pid): pid for pid in pids}
        st.wait_bound(d, pids)
        scopes = listed_scopes(d, p.proc.pid)
        ot.check(scopes == {pid: "process" for pid in pids},
                 f"ORPHAND_SCOPE=cgroup: listed {scopes}")
        lines = p.errors().splitlines()
        ot.check(len(lines) == 2 and all(
            f"child {pid} not bound with scope cgroup: " in line and
            line.endswith("; bound with scope process") for pid, line in zip(pids, lines)),
            f"ORPHAND_SCOPE=cgroup reported {p.errors()!r}")
        p.kill()
        alive = st.wait_all(fds, ot.TIMEOUT + 6)
        ot.check(not alive, f"children survived their parent: {[fds[fd] for fd in alive]}")
        st.reap_orphans()
    print("real daemon: children bound with scope tree by fork, vfork and posix_spawn listed "
          "with it and killed; scope cgroup refused and bound with scope process")


def main():
    spawner = sys.argv[1]
    st.setup()
    with tempfile.TemporaryDirectory(prefix="orphand-shim-scope-") as tmp:
        check_fakes(spawner, tmp)
    check_daemon(spawner)


if __name__ == "__main__":
    ot.run(main)
