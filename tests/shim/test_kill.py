# SPDX-License-Identifier: MIT
"""Real programs under the shim: when the program is SIGKILLed, orphand kills its children.

Usage: test_kill.py CASE SPAWNER, where SPAWNER is tests/shim/spawner (built by meson).
"""

import os
import sys
import tempfile

import orphtest as ot
import shimtest as st

MAKEFILE = """\
all: a b c d
a b c d:
\t@echo pid $$$$; exec sleep 600
"""


def main():
    case, spawner = sys.argv[1], sys.argv[2]
    st.setup()
    with ot.Daemon() as d:
        if case == "bash":
            # The shell kills itself, as in `sleep 600 & sleep 600 & kill -KILL $$`, once the
            # test has pinned the sleeps.
            p = st.Parent(["bash", "-c", "sleep 600 & echo pid $!; sleep 600 & echo pid $!; "
                           "echo ready; read x; kill -KILL $$"], d)
            pids = p.read_pids()

            def kill():
                p.proc.stdin.write(b"go\n")
                p.proc.stdin.flush()
                p.proc.wait()
            st.expect_children_killed(d, p, pids, kill=kill)
        elif case == "chain":
            # bash -> bash -> sleep: the top dies, orphand kills the middle, then the bottom.
            p = st.Parent(["bash", "-c", "bash -c 'sleep 600 & echo pid $!; wait' & "
                           "echo pid $!; read x; kill -KILL $$"], d)
            pids = p.read_pids(expect=2)

            def kill():
                p.proc.stdin.write(b"go\n")
                p.proc.stdin.flush()
                p.proc.wait()
            st.expect_children_killed(d, p, pids, kill=kill)
        elif case == "python":
            code = ("import subprocess, sys\n"
                    "ps = [subprocess.Popen(['sleep', '600']) for _ in range(2)]\n"
                    "print(''.join(f'pid {c.pid}\\n' for c in ps) + 'ready', flush=True)\n"
                    "sys.stdin.read()\n")
            p = st.Parent([sys.executable, "-c", code], d)
            st.expect_children_killed(d, p, p.read_pids())
        elif case == "perl":
            code = ('$| = 1; for (1..2) { my $p = fork(); die "fork: $!" unless defined $p; '
                    'if (!$p) { exec("sleep", "600"); exit 127 } print "pid $p\\n" } '
                    'print "ready\\n"; <STDIN>;')
            p = st.Parent(["perl", "-e", code], d)
            st.expect_children_killed(d, p, p.read_pids())
        elif case == "make":
            with tempfile.TemporaryDirectory() as tmp:
                with open(os.path.join(tmp, "Makefile"), "w") as f:
                    f.write(MAKEFILE)
                p = st.Parent(["make", "-s", "-j4"], d, cwd=tmp)
                st.expect_children_killed(d, p, p.read_pids(expect=4))
        elif case == "parent-gone":
            # The parent exits right after fork returns, before orphand has read the record:
            # the binding must still hold (the daemon acts on records of dead senders).
            p = st.Parent([spawner, "fork-and-exit"], d)
            pids = p.read_pids(expect=1)
            st.expect_children_killed(d, p, pids, kill=p.proc.wait, settle=False)
        elif case == "threads":
            p = st.Parent([spawner, "threads", "8", "1000"], d)
            pids = p.read_pids(timeout=300)
            ot.check(len(set(pids)) == 8000, f"expected 8000 children, got {len(set(pids))}")
            st.expect_children_killed(d, p, pids)
        else:
            # spawner modes: fork, vfork, _Fork, posix_spawn, posix_spawnp, system, popen,
            # sigchld-ignored, close-fds
            p = st.Parent([spawner, case], d)
            st.expect_children_killed(d, p, p.read_pids())


if __name__ == "__main__":
    ot.run(main)
