# SPDX-License-Identifier: MIT
"""Helpers for orphand's security tests: other users, hostile clients, victims and witnesses."""

import atexit
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import orphand
import orphtest as ot

HERE = os.path.dirname(os.path.abspath(__file__))
# What other users run: these helper scripts, the lingering module three of them import, and the
# orphtest and orphand modules.
SHARED_FILES = [os.path.join(HERE, name)
                for name in ("client.py", "dgram_attack.py", "dgram_flood.py", "exec_attack.py",
                             "lingering.py", "load_worker.py", "uidflip.py")]
SHARED_FILES += [os.path.abspath(ot.__file__), os.path.abspath(orphand.__file__)]

# The system interpreter: another user may not be able to reach one under root's home.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

_shared_dir = None


def shared_dir():
    """A world-readable copy of SHARED_FILES, made once per test process, removed at exit.

    Other users cannot be expected to reach the checkout (root's clone in /root is 0700), so
    whatever runs as another uid runs from here, and imports from here alone."""
    global _shared_dir
    if _shared_dir is None:
        path = tempfile.mkdtemp(prefix="orphand-sectest-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.chmod(path, 0o755)
        for src in SHARED_FILES:
            dst = os.path.join(path, os.path.basename(src))
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o644)
        _shared_dir = path
    return _shared_dir


def python(*args):
    """argv running PYTHON with args in the shared directory, its PYTHONPATH that directory: for
    a process that is, or becomes, another user's."""
    path = shared_dir()
    return ["env", f"--chdir={path}", f"PYTHONPATH={path}", PYTHON, *args]


def script(name, *args):
    """argv running the shared copy of one of this directory's helper scripts (see python)."""
    return python(os.path.join(shared_dir(), name), *args)

NOBODY = 65534
OTHER = 4242  # "another user": any uid that is neither root nor nobody

# Reasons (orphand.Reason), by the names the security tests use.
R = orphand.Reason
OK, PARENT_ALREADY_DEAD, ALREADY_BOUND, UNKNOWN_ACTION = (
    R.OK, R.PARENT_ALREADY_DEAD, R.ALREADY_BOUND, R.UNKNOWN_ACTION)
BAD_PID, SAME_PROCESS, PROTECTED_TARGET = R.BAD_PID, R.SAME_PROCESS, R.PROTECTED_TARGET
NO_SUCH_PROCESS, NOT_PERMITTED, NOT_PIDFD = R.NO_SUCH_PROCESS, R.NOT_PERMITTED, R.NOT_PIDFD
PIDFD_MISMATCH, TOO_MANY_FDS, FOREIGN_PIDNS = (
    R.PIDFD_MISMATCH, R.TOO_MANY_FDS, R.FOREIGN_PID_NAMESPACE)
LIMIT_USER, LIMIT_PARENT, LIMIT_CONNECTIONS = R.LIMIT_USER, R.LIMIT_PARENT, R.LIMIT_CONNECTIONS
BAD_POLICY, NOT_BOUND, NOT_A_PROCESS = R.BAD_POLICY, R.NOT_BOUND, R.NOT_A_PROCESS
REASON_NAMES = {int(r): r.name for r in R}


def as_user(uid, argv):
    """argv run as uid (real, effective and saved), with that gid and no supplementary groups."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


def daemon(*args):
    """A private daemon whose socket other users can reach (its directory is 0700 otherwise)."""
    d = ot.Daemon(*args)
    os.chmod(d.dir, 0o755)
    return d


def root_binding(d, what="root binding"):
    """Two sleeps of root's, the child bound to the parent by root (checked, as `what`): a
    binding that an attack must leave in force. Returns (parent, parent's pidfd, child, child's
    pidfd), the Popens and pidfds tracked by orphtest."""
    parent, parent_fd = ot.sleeper()
    child, child_fd = ot.sleeper()
    with d.client() as c:
        expect(c.register(parent.pid, child.pid), 0, OK, what)
    return parent, parent_fd, child, child_fd


def user_sleeper(uid):
    """A sleep(1) owned by uid; returns (Popen, pidfd) once it runs sleep as uid (until setpriv
    has taken the uid the process is root's, which another user may not signal)."""
    p, pidfd = ot.spawn(as_user(uid, ["sleep", "600"]))
    deadline = time.monotonic() + ot.TIMEOUT
    while (ot.proc_state(p.pid) is not None and not ot.pidfd_dead(pidfd) and
           time.monotonic() < deadline and runs_as(p.pid) != ("sleep", uid)):
        time.sleep(0.001)
    return p, pidfd


def runs_as(pid):
    """(command name, real uid) of a process, or None."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        with open(f"/proc/{pid}/status") as f:
            uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    except (OSError, StopIteration):
        return None
    return comm, uid


def read_line(p, timeout=60):
    """The next line a helper script (Popen p, text mode) writes on its stdout, or "" if it wrote
    none within timeout, or closed it."""
    ready = select.select([p.stdout], [], [], timeout)[0]
    return p.stdout.readline() if ready else ""


def hostile(d, ops, uid=NOBODY, wrap=(), pass_fds=()):
    """Runs client.py as uid (inside `wrap`, e.g. an unshare command) and returns its results."""
    argv = [*wrap, *script("client.py")]
    if uid is not None:
        argv = as_user(uid, argv)
    r = subprocess.run(argv, input=json.dumps({"socket": d.socket, "ops": ops}),
                       capture_output=True, text=True, timeout=60, pass_fds=pass_fds)
    ot.check(r.returncode == 0, f"hostile client failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout)


def expect(result, error, reason, what):
    """Checks one acknowledged-mode reply: its errno (negative, or 0) and its reason."""
    ot.check(isinstance(result, dict) and "reason" in result,
             f"{what}: no reply ({result})")
    got = (result["error"], result["reason"])
    name = orphand.reason_name
    ot.check(got == (error, reason),
             f"{what}: expected error {error} reason {name(reason)}, got "
             f"error {result['error']} reason {name(result['reason'])}")
    print(f"  {what}: error {result['error']}, {name(reason)}")


def ping_latency(d, timeout):
    """Seconds a legacy PING on a new connection takes to be echoed, or None if not within
    timeout."""
    t0 = time.monotonic()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(timeout)
            s.connect(d.socket)
            rec = ot.record(0x11223344, 0x55667788, ot.PING)
            s.sendall(rec)
            if ot.recv_exact(s, ot.RECORD_SIZE) != rec:
                return None
    except (OSError, ConnectionError):
        return None
    return time.monotonic() - t0


def duration(seconds):
    """Seconds as a figure to print: "1.234 s", or "never" for None."""
    return "never" if seconds is None else f"{seconds:.3f} s"


problems = []  # the checks report() saw fail, for end_report()


def report(cond, msg):
    """A check whose failure is reported at the end (end_report), after every figure has been
    printed: a test of stalls prints what it measured, whether or not it passes."""
    print(f"  {'ok' if cond else 'FAILED'}: {msg}")
    if not cond:
        problems.append(msg)


def end_report():
    """Fails the test if a report() check failed, naming every one that did."""
    if problems:
        ot.fail(f"{len(problems)} checks failed:\n  " + "\n  ".join(problems))


def alive(pidfd):
    return not ot.pidfd_dead(pidfd)


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(d):
    """The daemon's open fds once every other client's connection is closed (one is ours)."""
    with d.client() as c:
        d.wait_until(lambda: c.status()["connections"] == 1, "other connections to close")
        return open_fds(d.pid)


def baseline_fds(d):
    """settled_fds, the fewest of ten counts: a file the daemon has open for a moment (a /proc
    read) does not count in a baseline."""
    counts = []
    for _ in range(10):
        counts.append(settled_fds(d))
        time.sleep(0.02)
    return min(counts)


def wait_fds(d, baseline):
    """settled_fds, counted again until it is back to `baseline` or TIMEOUT has passed: the
    last count, for the test to check and print."""
    deadline = time.monotonic() + ot.TIMEOUT
    fds = settled_fds(d)
    while fds != baseline and time.monotonic() < deadline:
        time.sleep(0.05)
        fds = settled_fds(d)
    return fds


def memory_kib(pid):
    """The process's resident memory in KiB: {"VmRSS": all, "RssAnon": heap and stacks}."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                out[key] = int(value.split()[0])
    return out


def kernel_thread():
    """The pid of a kernel thread other than kthreadd (PF_KTHREAD set), or None: in a pid
    namespace other than the initial one (a container's) no kernel thread is visible."""
    for name in sorted(os.listdir("/proc"), key=lambda n: (len(n), n)):
        if not name.isdigit() or name in ("1", "2"):
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        flags = int(data[data.rindex(b")") + 2:].split()[6])
        if flags & 0x00200000:
            return int(name)
    return None
