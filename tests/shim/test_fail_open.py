# SPDX-License-Identifier: MIT
"""Fail open: with no daemon, a refused, full, hanging-up or mute socket, programs under the shim
give the same output and exit status as without it, with or without a kill scope
(ORPHAND_SCOPE); ORPHAND_DEBUG=1 adds one line per failure.

Usage: test_fail_open.py SPAWNER
"""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading

import orphtest as ot
import shimtest as st

MAKEFILE = """\
all: a b c d
\t@echo all done
a b c d:
\t@echo recipe $@; (exit 0)
"""


def programs(spawner, tmp):
    """Unmodified programs that create children every way they know; deterministic output."""
    return [
        ([spawner, "failopen"], None),
        (["bash", "-c", "echo a; (echo sub; exit 3); echo $?; x=$(echo cmd); echo $x; "
          "echo pipe | cat; sleep 0 & wait $!; echo $?; exit 4"], None),
        ([sys.executable, "-c", "import subprocess\n"
          "print(subprocess.run(['sh', '-c', 'echo hi; exit 4'], capture_output=True))\n"
          "print(subprocess.call(['true']))\n"], None),
        (["perl", "-e", 'my $p = fork; if (!$p) { exit 5 } waitpid($p, 0); print $? >> 8, "\\n";'
          ' print `echo backtick`; print system("exit 6") >> 8, "\\n"; exit 9'], None),
        (["make", "-s", "-j4", "-O"], tmp),
    ]


def run(argv, env, cwd):
    r = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60)
    out = r.stdout
    if argv[0] == "make":
        out = b"\n".join(sorted(out.splitlines()))  # -j4: recipes finish in any order
    return r.returncode, out, r.stderr


@contextlib.contextmanager
def hangup_server(path):
    """A socket that accepts and closes at once: sends may meet EPIPE (never SIGPIPE)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    stop = threading.Event()

    def loop():
        srv.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                c, _ = srv.accept()
                c.close()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        srv.close()


@contextlib.contextmanager
def mute_server(path):
    """A socket that accepts and never answers: a scope's wait for the replies runs out."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    stop = threading.Event()
    conns = []

    def loop():
        srv.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conns.append(srv.accept()[0])
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        for c in conns:
            c.close()
        srv.close()


def main():
    spawner = sys.argv[1]
    st.setup()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "Makefile"), "w") as f:
            f.write(MAKEFILE)
        missing = os.path.join(tmp, "no-such.sock")
        refused = os.path.join(tmp, "refused.sock")
        full = os.path.join(tmp, "full.sock")
        hangup = os.path.join(tmp, "hangup.sock")
        mute = os.path.join(tmp, "mute.sock")
        # Bound but not listening: connect() is refused.
        s_refused = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s_refused.bind(refused)
        # Listening with a backlog nobody drains: connect() fails with EAGAIN once it fills.
        s_full = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s_full.bind(full)
        s_full.listen(0)
        fillers = []
        for _ in range(4):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            with contextlib.suppress(BlockingIOError):
                c.connect(full)
            fillers.append(c)

        with hangup_server(hangup), mute_server(mute):
            for argv, cwd in programs(spawner, tmp):
                want = run(argv, st.plain_env(), cwd)
                for sock in (missing, refused, full, hangup, mute):
                    for scope in (None, "tree"):
                        got = run(argv, st.shim_env(sock, debug=False, scope=scope), cwd)
                        ot.check(got == want, f"{argv[0]} with the shim, {sock} and scope "
                                 f"{scope} gave {got}, without the shim {want}")

        # ORPHAND_DEBUG=1: exactly one line for one failed registration of a live child.
        for scope in (None, "tree"):
            r = subprocess.run(["bash", "-c", "sleep 0.3 & wait"],
                               env=st.shim_env(missing, scope=scope), capture_output=True,
                               text=True, timeout=60)
            lines = r.stderr.splitlines()
            ot.check(r.returncode == 0 and len(lines) == 1 and
                     lines[0].startswith("orphand-forkwait: ") and "ENOENT" in lines[0],
                     f"ORPHAND_DEBUG=1 with scope {scope} printed {r.stderr!r}")

        # With the daemon running, the program sees the same results (errno, fds, statuses).
        with ot.Daemon() as d:
            want = run([spawner, "failopen"], st.plain_env(), None)
            for scope in (None, "tree"):
                got = run([spawner, "failopen"], st.shim_env(d.socket, debug=True, scope=scope),
                          None)
                ot.check(got == want, f"under the shim with a daemon and scope {scope}: {got}, "
                         f"without: {want}")
        for s in [s_refused, s_full, *fillers]:
            s.close()


if __name__ == "__main__":
    ot.run(main)
