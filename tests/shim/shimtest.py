# SPDX-License-Identifier: MIT
"""Helpers for the shim's tests: run programs under orphand-forkwait.so and check outcomes.

A program under test reports the children it wants checked as "pid N" lines on stdout, then
blocks. The test pins each child with a pidfd (while the parent is alive, so no pid can have been
recycled), SIGKILLs the parent and expects every child to die at the daemon's hand. The test
process is a child subreaper, so orphans are reparented to it and reaped at the end.
"""

import ctypes
import os
import re
import resource
import select
import signal
import subprocess
import tempfile
import time

import orphtest as ot

PR_SET_CHILD_SUBREAPER = 36


def setup():
    """Subreaper for orphans; as many fds as allowed (the thread test pins 8000 children)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if not os.path.exists(ot.SHIM):
        ot.fail(f"{ot.SHIM} is not built")


def shim_env(socket_path, debug=True, base=None, scope=None):
    """The environment of a program under the shim; `scope` is ORPHAND_SCOPE (None: unset)."""
    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = ot.SHIM
    env["ORPHAND_SOCKET"] = socket_path
    env.pop("ORPHAND_DEBUG", None)
    env.pop("ORPHAND_SCOPE", None)
    if debug:
        env["ORPHAND_DEBUG"] = "1"
    if scope is not None:
        env["ORPHAND_SCOPE"] = scope
    return env


def plain_env(base=None):
    env = dict(os.environ if base is None else base)
    for k in ("LD_PRELOAD", "ORPHAND_SOCKET", "ORPHAND_DEBUG", "ORPHAND_SCOPE"):
        env.pop(k, None)
    return env


def reap_orphans():
    """Reap every zombie reparented to us (we are a subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Parent:
    """A program under the shim, started by the test, reporting children as "pid N" lines."""

    def __init__(self, argv, daemon, cwd=None, scope=None):
        self.stderr = tempfile.TemporaryFile()
        self.proc, self.pidfd = ot.spawn(argv, env=shim_env(daemon.socket, scope=scope), cwd=cwd,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.stderr)
        self.buf = b""

    def read_pids(self, expect=None, timeout=ot.TIMEOUT * 6):
        """Reads "pid N" lines until "ready" (or until `expect` pids). Returns the pids."""
        pids = []
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.startswith(b"pid "):
                    pids.append(int(line[4:]))
                elif line.strip() == b"ready":
                    return pids
                if expect is not None and len(pids) >= expect:
                    return pids
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                ot.fail(f"{self.proc.args!r}: no 'ready' within {timeout}s; got {pids}; "
                        f"stderr: {self.errors()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                ot.fail(f"{self.proc.args!r} exited early ({self.proc.wait()}): "
                        f"{self.errors()}")
            self.buf += chunk

    def errors(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def kill(self):
        signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        self.proc.wait()


def wait_all(pidfds, timeout):
    """Waits until every pidfd is readable (process exited). Returns the ones still alive."""
    pending = set(pidfds)
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(left * 1000):
            pending.discard(fd)
            poller.unregister(fd)
    return pending


def wait_bound(daemon, pids):
    """Waits until orphand lists a binding for every pid in `pids`."""
    want = set(pids)
    daemon.wait_until(lambda: want <= {b["child"] for b in daemon.bindings()},
                      f"bindings for {len(want)} children")


def expect_children_killed(daemon, parent, pids, kill=None, settle=True):
    """Pins `pids`, kills `parent` (or calls `kill`), and checks that orphand killed them all.

    With `settle`, the kill waits until the daemon has processed every registration, so that
    the test checks what the shim sent rather than how fast the daemon reads it; the
    parent-gone case checks the latter on purpose.
    """
    ot.check(pids, "the program reported no children")
    fds = {ot.track(pid): pid for pid in pids}
    errors = parent.errors()
    ot.check("orphand-forkwait" not in errors, f"a registration failed:\n{errors}")
    if settle:
        wait_bound(daemon, pids)
    if kill is None:
        parent.kill()
    else:
        kill()
    alive = wait_all(fds, ot.TIMEOUT + 6)  # SIGKILL follows SIGTERM after 5 s
    ot.check(not alive, f"children survived their parent: {sorted(fds[fd] for fd in alive)}\n"
             f"--- daemon log ---\n{daemon.read_log()[-3000:]}")
    # The daemon logs a kill right after sending the signal: the line may trail the death.
    # A binding with a wider scope says how many more of its scope it signalled.
    missing = pids
    deadline = time.monotonic() + ot.TIMEOUT
    while missing and time.monotonic() < deadline:
        log = daemon.read_log()
        missing = [pid for pid in missing
                   if not re.search(rf"\[{pid}\]( and \d+ more of its \w+)? with SIG", log)]
        if missing:
            time.sleep(0.05)
    ot.check(not missing, f"children not killed by orphand: {missing[:20]}\n"
             f"{daemon.read_log()[-3000:]}")
    reap_orphans()
