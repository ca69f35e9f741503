# SPDX-License-Identifier: MIT
"""Logging to the journal never blocks the event loop: with the journal's socket full, or absent,
orphand kills on time; the entries it could not send are counted and reported once the journal
takes entries again, in the native protocol, with the fields they always had.

orphand runs in a private mount namespace in which a temporary directory stands in for
/run/systemd/journal; the test binds its own datagram socket there and reads it (or does not).
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import itest as it
import orphtest as ot

KILL_ID = "2daf3cc9baae451eb6cfd21148714be8"  # msgid::kKill
JOURNAL = "/run/systemd/journal"


def parse_entry(data):
    """The fields of one native-protocol datagram, as a list of (name, bytes) in order."""
    fields = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        eq = data.find(b"=", pos)
        if nl < 0:
            nl = len(data)  # the last field's newline is optional
        if 0 <= eq < nl:
            name, value, pos = data[pos:eq], data[eq + 1:nl], nl + 1
        else:
            name = data[pos:nl]
            size_at = nl + 1
            ot.check(size_at + 8 <= len(data), f"binary field {name!r} cut short: {data!r}")
            size = int.from_bytes(data[size_at:size_at + 8], "little")
            end = size_at + 8 + size
            ot.check(end < len(data) and data[end:end + 1] == b"\n",
                     f"binary field {name!r} of {size} bytes is malformed: {data!r}")
            value, pos = data[size_at + 8:end], end + 1
        ot.check(re.fullmatch(rb"[A-Z][A-Z0-9_]*", name) is not None,
                 f"invalid field name {name!r} in {data!r}")
        fields.append((name.decode(), value))
    return fields


def as_dict(fields):
    d = {}
    for name, value in fields:
        ot.check(name not in d, f"field {name} twice in {fields}")
        d[name] = value
    return d


class FakeJournal:
    """A directory that orphand sees as /run/systemd/journal, and the socket the test binds in it.

    The host's mounts are not touched: orphand is started through unshare(1) in its own mount
    namespace with private propagation, where the directory is bind-mounted over the deepest of
    /run/systemd/journal, /run/systemd and /run that exists."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="orphand-journal-")
        for target in (JOURNAL, os.path.dirname(JOURNAL), "/run"):
            if os.path.isdir(target):
                break
        else:
            ot.skip("no /run to mount over")
        self.target = target
        self.source = os.path.join(self.tmp, "mnt")
        self.dir = os.path.join(self.source, os.path.relpath(JOURNAL, target))
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "socket")
        self.sock = None
        self.fillers = []

    def bind(self):
        """Bind the journal's socket, with a small receive buffer; nothing reads it until
        drain()."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind(self.path)

    def fill(self):
        """Fill the socket's receive queue until it takes nothing more, as a stalled journald's
        would be. Each sender is also bounded by its own send buffer, so a new sender is opened
        until even its first datagram is refused. The filler entries carry TEST_FILL=1."""
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            s.setblocking(False)
            s.connect(self.path)
            self.fillers.append(s)
            sent = 0
            while True:
                try:
                    s.send(b"MESSAGE=fill\nTEST_FILL=1\n")
                    sent += 1
                except BlockingIOError:
                    break
            if sent == 0:
                return
        ot.fail("could not fill the journal socket's receive queue")

    def drain(self):
        """Read everything queued (returns the datagrams) and close the fillers."""
        out = []
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                out.append(self.sock.recv(65536))
        for s in self.fillers:
            s.close()
        self.fillers = []
        return out

    def recv(self, timeout):
        """One datagram, or None after `timeout` seconds."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return None

    def read_until_quiet(self, quiet=0.5, timeout=ot.TIMEOUT):
        """Entries read until none comes for `quiet` seconds: a sender's backlog, taken before
        the next test step, so that a slow reader and the queue's few kilobytes do not make
        the daemon drop that step's entries too."""
        entries = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.recv(quiet)
            if data is None:
                break
            entries.append(parse_entry(data))
        return entries

    def wait_entry(self, pred, what, d, timeout=ot.TIMEOUT):
        """Read datagrams until one parses to an entry for which pred(fields) holds. Returns the
        entries read, in order, that one last. Every datagram must be a valid entry."""
        entries = []
        deadline = time.monotonic() + timeout
        while True:
            data = self.recv(deadline - time.monotonic())
            if data is None:
                ot.fail(f"timed out waiting for the journal entry {what}; got "
                        f"{[as_dict(e).get('MESSAGE') for e in entries]}\n"
                        f"--- daemon stderr ---\n{d.read_log()}")
            fields = parse_entry(data)
            entries.append(fields)
            if pred(as_dict(fields)):
                return entries

    @contextlib.contextmanager
    def daemon(self):
        """orphand (an ot.Daemon) logging to the journal, with this directory as its
        /run/systemd/journal."""
        spawn = ot.spawn
        script = 'src=$1 dst=$2; shift 2; mount --bind "$src" "$dst" && exec "$@"'

        def in_namespace(argv, **kw):
            if argv[0] == ot.DAEMON:
                # unshare execs sh, which execs orphand: the pid tracked is orphand's.
                argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                        "sh", self.source, self.target, *argv]
            return spawn(argv, **kw)
        d = ot.Daemon("--log-target=journal")
        ot.spawn = in_namespace
        try:
            d.start()
        except BaseException:
            d.stop()
            raise
        finally:
            ot.spawn = spawn
        try:
            yield d
        finally:
            d.stop()

    def close(self):
        for s in self.fillers:
            s.close()
        if self.sock:
            self.sock.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def register(d, parent, children):
    with d.client() as c:
        for child in children:
            r = c.register(parent.pid, child.pid)
            ot.check(r["error"] == 0, f"REGISTER {parent.pid} -> {child.pid}: {r}")


def kill_parent_expect_dead(d, parent, parent_fd, children):
    """SIGKILL the parent; every child dies of SIGTERM within one correctness bound. The parent
    and the children are left zombies, not reaped, until the test ends: orphand names a parent
    bound moments ago, and a child, from /proc when it handles the death, and a reaped process
    has no name there any more."""
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    ot.check(ot.wait_pidfd(parent_fd, ot.TIMEOUT), f"parent {parent.pid} survived SIGKILL")
    deadline = time.monotonic() + ot.TIMEOUT
    for proc, pidfd in children:
        if not ot.wait_pidfd(pidfd, max(deadline - time.monotonic(), 0)):
            ot.fail(f"child {proc.pid} still alive {ot.TIMEOUT}s after its parent's death: "
                    f"orphand blocked?\n--- daemon stderr ---\n{d.read_log()}")
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)
        ot.check((info.si_code, info.si_status) == (os.CLD_KILLED, signal.SIGTERM),
                 f"child {proc.pid} ended with code {info.si_code}, status {info.si_status}")


def is_kill_of(pid):
    return lambda f: f.get("MESSAGE_ID") == KILL_ID.encode() and \
        f.get("ORPHAND_CHILD_PID") == str(pid).encode()


def check_dropped_entry(f):
    ot.check(f.get("PRIORITY") == b"4" and f.get("SYSLOG_IDENTIFIER") == b"orphand" and
             b"dropped" in f.get("MESSAGE", b"") and int(f["ORPHAND_DROPPED"]) > 0,
             f"malformed report of dropped entries: {f}")


def full_journal():
    """(a) The journal's queue is full from before orphand starts: 50 children of one parent are
    all killed on time. (b) Once the queue is read again, the next kill's entry is preceded by a
    report of what was dropped, and carries the fields it always had."""
    j = FakeJournal()
    try:
        j.bind()
        j.fill()
        with j.daemon() as d:
            parent, parent_fd = it.sleeper("orph-parent")
            children = [it.sleeper("orph-child") for _ in range(50)]
            register(d, parent, [p for p, _ in children])
            kill_parent_expect_dead(d, parent, parent_fd, children)
            ot.check(d.alive() and d.ping(), "orphand does not answer after the kills")

            queued = j.drain()
            ot.check(all(b"TEST_FILL=1" in q for q in queued),
                     "orphand's entries were queued although the queue was full")

            # What orphand still had to say of the 50 kills once the queue was read.
            backlog = j.read_until_quiet()
            # The child's name has a newline: its field takes the binary-safe form.
            parent2, parent2_fd = it.sleeper("orph-parent2")
            child2 = it.sleeper("orph\nchild2")
            register(d, parent2, [child2[0]])
            kill_parent_expect_dead(d, parent2, parent2_fd, [child2])
            entries = [as_dict(e) for e in backlog + j.wait_entry(is_kill_of(child2[0].pid),
                                                                  "of the last kill", d)]

        dropped = [e for e in entries if "ORPHAND_DROPPED" in e]
        ot.check(dropped, f"no report of dropped entries before the kill's entry: {entries}")
        for e in dropped:
            check_dropped_entry(e)
        # Every kill of the 50 was either logged after the queue was read (orphand may log a
        # kill after signalling) or dropped and reported before the last kill's entry.
        child_pids = {str(p.pid).encode() for p, _ in children}
        logged = {e["ORPHAND_CHILD_PID"] for e in entries
                  if e.get("MESSAGE_ID") == KILL_ID.encode() and
                  e.get("ORPHAND_CHILD_PID") in child_pids}
        reported = sum(int(e["ORPHAND_DROPPED"]) for e in dropped)
        ot.check(len(logged) + reported >= 50,
                 f"{len(logged)} kills logged and {reported} dropped entries reported; 50 kills")

        kill = entries[-1]
        ot.check(kill.get("PRIORITY") == b"5" and kill.get("SYSLOG_IDENTIFIER") == b"orphand",
                 f"kill entry: {kill}")
        ot.check(kill.get("ORPHAND_CHILD_COMM") == b"orph\nchild2" and
                 kill.get("ORPHAND_PARENT_PID") == str(parent2.pid).encode() and
                 kill.get("ORPHAND_PARENT_COMM") == b"orph-parent2" and
                 kill.get("ORPHAND_SIGNAL") == b"SIGTERM",
                 f"kill entry fields: {kill}")
        message = kill.get("MESSAGE", b"").decode()
        ot.check(f"killed orph\\x0achild2[{child2[0].pid}] with SIGTERM: parent "
                 f"orph-parent2[{parent2.pid}] died" in message and "\n" not in message,
                 f"kill entry MESSAGE: {message!r}")
    finally:
        j.close()


def no_journal():
    """(c) No socket at all: orphand kills as usual. Once the socket appears, orphand connects
    (it retries at most once a second) and reports what it dropped meanwhile."""
    j = FakeJournal()
    try:
        with j.daemon() as d:
            parent, parent_fd = it.sleeper("orph-parent")
            child = it.sleeper("orph-child")
            register(d, parent, [child[0]])
            kill_parent_expect_dead(d, parent, parent_fd, [child])
            ot.check(d.alive() and d.ping(), "orphand does not answer after the kill")

            j.bind()
            # Kill after kill until something is logged: the first kills may come within a
            # second of orphand's last attempt to connect.
            deadline = time.monotonic() + ot.TIMEOUT
            first = None
            while first is None:
                ot.check(time.monotonic() < deadline,
                         f"nothing logged {ot.TIMEOUT}s after the journal socket appeared")
                p, p_fd = it.sleeper("orph-parent")
                c = it.sleeper("orph-child")
                register(d, p, [c[0]])
                kill_parent_expect_dead(d, p, p_fd, [c])
                first = j.recv(0.25)
            entries = [as_dict(parse_entry(first))]
            if not is_kill_of(c[0].pid)(entries[-1]):
                entries += [as_dict(e) for e in j.wait_entry(is_kill_of(c[0].pid), "of a kill", d)]
            ot.check("ORPHAND_DROPPED" in entries[0],
                     f"the first entry is not a report of dropped entries: {entries}")
            check_dropped_entry(entries[0])
    finally:
        j.close()


def main():
    if os.geteuid() != 0:
        ot.skip("needs root to mount over /run/systemd/journal in a mount namespace")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        ot.skip(f"cannot create a mount namespace: {probe.stderr.decode().strip()}")
    full_journal()
    no_journal()


if __name__ == "__main__":
    ot.run(main)
