# SPDX-License-Identifier: MIT
"""orphand's command line and socket path handling: help, usage errors, unsafe or unusable socket
paths, and a clean exit on SIGTERM and SIGINT."""

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile

import orphtest as ot


def daemon(*args):
    """Runs orphand expecting it to exit by itself. Returns (status, stdout, stderr)."""
    env = dict(os.environ)
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        env.pop(name, None)
    p, _ = ot.spawn([ot.DAEMON, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True, env=env)
    try:
        out, err = p.communicate(timeout=ot.TIMEOUT)
    except subprocess.TimeoutExpired:
        ot.fail(f"orphand {' '.join(args)} did not exit")
    return p.returncode, out, err


def stale_socket(path):
    """A socket file nobody listens on (what a crashed daemon leaves)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)


def is_stale_socket(path):
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except ConnectionRefusedError:
            return True
    return False


def main():
    tmp = tempfile.mkdtemp(prefix="orphand-cli-")
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    rc, out, err = daemon("--help")
    ot.check(rc == 0 and out.startswith("Usage: orphand") and "--grace" in out, f"--help: {rc}")
    rc, out, err = daemon("--version")
    ot.check(rc == 0 and out.startswith("orphand ") and len(out.split()) == 2,
             f"--version: {rc} {out!r}")

    sock = os.path.join(tmp, "never.sock")
    for args, needle in ((["--bogus"], '"--bogus"'),
                         (["--grace", "soon"], '"soon"'),
                         (["--grace", "-1"], '"-1"'),
                         (["--signal", "SIGNOPE"], '"SIGNOPE"'),
                         (["--log-target", "syslog"], '"syslog"'),
                         (["--log-level", "loud"], '"loud"'),
                         (["--max-connections", "-3"], '"-3"'),
                         (["--socket", "relative.sock"], '"relative.sock"'),
                         (["--grace"], '"--grace"'),
                         (["extra-argument"], '"extra-argument"')):
        rc, out, err = daemon("--socket", sock, "--log-target=stderr", *args)
        ot.check(rc == 2 and needle in err and "orphand --help" in err,
                 f"orphand {args}: exit {rc}, stderr {err!r}")
        ot.check(not os.path.exists(sock), f"orphand {args} bound its socket")

    # A path too long for sun_path: a clear error, and nothing created on the way.
    deep = os.path.join(tmp, "d" * 100)
    long_path = os.path.join(deep, "x" * 20, "orphand.sock")
    rc, out, err = daemon("--socket", long_path, "--log-target=stderr")
    ot.check(rc != 0 and "too long" in err and long_path in err, f"long path: {rc} {err!r}")
    ot.check(not os.path.exists(deep), "a directory was created for a path too long")

    # Missing parent directories are created.
    nested = os.path.join(tmp, "a", "b", "orphand.sock")
    with ot.Daemon(socket_path=nested) as d:
        ot.check(stat.S_ISSOCK(os.lstat(nested).st_mode), "no socket in the new directory")
        # A second daemon on a live socket refuses and leaves it alone.
        rc, out, err = daemon("--socket", nested, "--log-target=stderr")
        ot.check(rc != 0 and "another daemon is listening" in err, f"live socket: {rc} {err!r}")
        ot.check(d.ping(), "the first daemon lost its socket")

    # A stale socket file is replaced.
    path = os.path.join(tmp, "stale.sock")
    stale_socket(path)
    ot.check(is_stale_socket(path), "could not make a stale socket")
    with ot.Daemon(socket_path=path) as d:
        # Started means it answered a PING there: the stale file was replaced.
        ot.check(stat.S_ISSOCK(os.lstat(path).st_mode) and d.ping(), "stale socket not replaced")

    # A regular file at the path is not removed.
    path = os.path.join(tmp, "file.sock")
    with open(path, "w") as f:
        f.write("precious\n")
    rc, out, err = daemon("--socket", path, "--log-target=stderr")
    ot.check(rc != 0 and "not a socket" in err, f"regular file: {rc} {err!r}")
    with open(path) as f:
        ot.check(f.read() == "precious\n", "the regular file was changed")

    # A symlink is not followed: neither to where a socket would be created, nor to a stale
    # socket that would be unlinked.
    other = os.path.join(tmp, "elsewhere")
    os.mkdir(other)
    for name, target in (("link-new.sock", os.path.join(other, "created.sock")),
                         ("link-stale.sock", os.path.join(other, "stale.sock"))):
        path = os.path.join(tmp, name)
        os.symlink(target, path)
        stale = "stale" in name
        if stale:
            stale_socket(target)
        rc, out, err = daemon("--socket", path, "--log-target=stderr")
        ot.check(rc != 0 and path in err, f"symlink {name}: {rc} {err!r}")
        ot.check(os.path.islink(path) and os.readlink(path) == target, "the symlink was changed")
        if stale:
            ot.check(is_stale_socket(target), "the symlink's target was replaced")
        else:
            ot.check(not os.path.lexists(target), "a socket was created through the symlink")

    # SIGTERM and SIGINT: exit status 0, socket removed.
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = ot.Daemon().start()
        parent, _ = ot.sleeper()
        child, child_fd = ot.sleeper()
        with d.client() as c:
            ot.check(c.register(parent.pid, child.pid)["error"] == 0, "REGISTER refused")
        signal.pidfd_send_signal(d.pidfd, sig)
        try:
            rc = d.proc.wait(timeout=ot.TIMEOUT)
        except subprocess.TimeoutExpired:
            ot.fail(f"orphand did not exit on {sig.name}")
        ot.check(rc == 0, f"orphand exited {rc} on {sig.name}:\n{d.read_log()}")
        ot.check(not os.path.lexists(d.socket), f"socket left behind after {sig.name}")
        ot.check("stopping" in d.read_log(), f"no stop logged on {sig.name}")
        d.stop()


if __name__ == "__main__":
    ot.run(main)
