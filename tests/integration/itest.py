# SPDX-License-Identifier: MIT
"""Helpers shared by the integration tests: named test processes and binding checks."""

import atexit
import contextlib
import os
import re
import resource
import shutil
import signal
import tempfile
import time
import traceback

import orphtest as ot

_bindir = None


def named(name):
    """Path of a `sleep` that runs under the command name `name` (the kernel takes comm from
    the name the program was executed by), so log lines can be checked for both processes."""
    global _bindir
    if _bindir is None:
        _bindir = tempfile.mkdtemp(prefix="orphand-bin-")
        atexit.register(shutil.rmtree, _bindir, True)
    path = os.path.join(_bindir, name)
    if not os.path.exists(path):
        os.symlink("/bin/sleep", path)
    return path


def sleeper(name="orph-sleep", seconds=600, ignore=()):
    """A tracked `sleep` named `name`; signals in `ignore` are ignored (inherited across exec).
    Returns (Popen, pidfd)."""
    def pre():
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)
    proc, pidfd = ot.spawn([named(name), str(seconds)], preexec_fn=pre if ignore else None)
    # Popen returns once exec has closed the child's close-on-exec fds, which the kernel does
    # before it renames the process: wait for the new name, which log lines are checked for.
    deadline = time.monotonic() + ot.TIMEOUT
    while comm(proc.pid) != name[:15] and time.monotonic() < deadline:
        time.sleep(0.001)
    return proc, pidfd


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def dead_pid():
    """The pid of a process that has just exited and been reaped."""
    p, _ = ot.spawn(["true"])
    p.wait()
    return p.pid


def become(uid):
    """Makes this process uid: real, effective and saved uid and gid, no supplementary groups.
    For a fork of the test (or a preexec_fn) only: the test itself keeps its uid."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def fork_as(uid, fn):
    """Forks the test; the fork becomes uid (see become; None: keeps the test's), runs fn(w), w
    the write end of a pipe to the test, and exits: 0, or 1 with a traceback on stderr if that
    raised. Returns (pid, r): the fork's pid, for the caller to wait for or track, and the pipe's
    read end, owned by the caller."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(r)
            if uid is not None:
                become(uid)
            fn(w)
            status = 0
        except BaseException:  # noqa: BLE001 - the fork must not return into the test
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(w)
    return pid, r


def pairs(d):
    """The set of (parent, child) pids the daemon lists."""
    return {(b["parent"], b["child"]) for b in d.bindings()}


def wait_bound(d, parent, child):
    d.wait_until(lambda: (parent, child) in pairs(d), f"binding {parent} -> {child} in LIST")


def wait_unbound(d, parent, child):
    d.wait_until(lambda: (parent, child) not in pairs(d), f"binding {parent} -> {child} gone")


def expect_dead(d, proc, pidfd, what, sig=None, reap=True):
    """The process dies within the correctness bound (and, if `sig`, by that signal). With
    reap=False it is left a zombie, as a parent that has not yet reaped it would leave it: the
    daemon names a child it killed from /proc after its signal, and a reaped child has no name
    there any more."""
    if not ot.wait_pidfd(pidfd):
        ot.fail(f"{what} (pid {proc.pid}) is still alive\n--- daemon log ---\n{d.read_log()}")
    if reap:
        rc = proc.wait(timeout=ot.TIMEOUT)
    else:
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)
        rc = -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status
    if sig is not None:
        ot.check(rc == -sig, f"{what} exited with {rc}, expected death by signal {sig}")


def expect_alive(proc, pidfd, what):
    ot.check(not ot.pidfd_dead(pidfd) and ot.proc_state(proc.pid) not in (None, "Z", "X"),
             f"{what} (pid {proc.pid}) died")


def kill_line(d, child_pid):
    """The daemon's log line for the kill of `child_pid` (its first signal), or None."""
    for line in d.read_log().splitlines():
        if re.search(rf"killed \S+\[{child_pid}\] with SIG(?!KILL: it outlived)", line):
            return line
    return None


def wait_kill_line(d, child_pid):
    d.wait_until(lambda: kill_line(d, child_pid) is not None, f"the kill line for {child_pid}")
    return kill_line(d, child_pid)


def raise_nofile():
    """Raise this test's soft fd limit to its hard limit (many sockets at once)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@contextlib.contextmanager
def nofile_limit(limit):
    """Processes that orphtest starts meanwhile (orphand included) run with RLIMIT_NOFILE set to
    `limit` for both the soft and the hard limit."""
    def set_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    spawn = ot.spawn

    def limited(argv, **kw):
        return spawn(argv, preexec_fn=set_limit, **kw)
    ot.spawn = limited
    try:
        yield
    finally:
        ot.spawn = spawn
