# SPDX-License-Identifier: MIT
"""orphanctl against the real daemon: output of ping, list and status; usage errors; refusals;
ORPHAND_SOCKET."""

import os
import re
import signal
import subprocess

import itest as it
import orphtest as ot


def ctl(*args, env=None):
    e = dict(os.environ)
    e.pop("ORPHAND_SOCKET", None)
    e.update(env or {})
    return subprocess.run([ot.CTL, *args], capture_output=True, text=True, timeout=ot.TIMEOUT,
                          env=e)


def main():
    with ot.Daemon() as d:
        r = d.ctl("ping")
        ot.check(r.stdout == f"orphand is alive on {d.socket}\n", f"ping: {r.stdout!r}")
        r = d.ctl("list")
        ot.check(r.stdout == "no bindings\n", f"empty list: {r.stdout!r}")

        parent, parent_fd = it.sleeper("orph-parent")
        child, child_fd = it.sleeper("orph-child")
        r = d.ctl("register", str(parent.pid), str(child.pid))
        ot.check(r.stdout == "" and r.stderr == "", f"register printed {r.stdout!r} {r.stderr!r}")
        r = d.ctl("register", str(parent.pid), str(child.pid))
        ot.check("already bound" in r.stdout, f"second register: {r.stdout!r}")

        lines = d.ctl("list").stdout.splitlines()
        ot.check(len(lines) == 3, f"list:\n{lines}")
        ot.check(lines[0].split() == ["PARENT", "CHILD", "REGISTRANT", "SIGNAL", "GRACE", "SCOPE",
                                    "AGE"],
                 f"list header: {lines[0]!r}")
        row = lines[1].split()
        ot.check(row[:6] == [f"orph-parent[{parent.pid}]", f"orph-child[{child.pid}]",
                             f"0/{row[2].split('/')[1]}", "SIGTERM", "5s", "process"],
                 f"list row: {row}")
        ot.check(re.fullmatch(r"\d+\.\ds", row[6]), f"list age: {row[6]!r}")
        ot.check(lines[2] == "1 binding", f"list footer: {lines[2]!r}")

        out = d.ctl("status").stdout
        version = subprocess.run([ot.DAEMON, "--version"], capture_output=True,
                                 text=True).stdout.split()[1]
        ot.check(re.search(rf"^orphand {re.escape(version)} \(pid {d.pid}\) on "
                           rf"{re.escape(d.socket)}, up \S+$", out, re.M), f"status:\n{out}")
        ot.check("watching 1 parents, 1 children; 1 bindings; 0 killed since start" in out,
                 f"status counts:\n{out}")
        ot.check("default policy: SIGTERM, then SIGKILL after 5s" in out, f"status policy:\n{out}")
        # This kernel (6.18) has all of them.
        for feature in ("SO_PEERPIDFD     yes", "PIDFD_GET_INFO   yes", "exit status      yes"):
            ot.check(feature in out, f"status does not report {feature!r}:\n{out}")

        # Usage errors: exit status 2 and a message naming the problem.
        for args, needle in (([], "no command given"),
                             (["frobnicate"], 'unknown command "frobnicate"'),
                             (["--bogus", "ping"], 'unknown option "--bogus"'),
                             (["ping", "extra"], "ping takes no arguments"),
                             (["list", "extra"], "list takes no arguments"),
                             (["register", str(parent.pid)], "register needs PARENT and CHILD"),
                             (["register", "abc", str(child.pid)], 'invalid parent pid: "abc"'),
                             (["register", str(parent.pid), "-5"], "invalid"),
                             (["register", str(parent.pid), str(child.pid), "--signal", "NOPE"],
                              'invalid signal: "NOPE"'),
                             (["register", str(parent.pid), str(child.pid), "--grace", "-1"],
                              'invalid grace period: "-1"'),
                             (["unregister", "1"], "unregister needs PARENT and CHILD")):
            r = d.ctl(*args, check_rc=False)
            ot.check(r.returncode == 2 and needle in r.stderr and "orphanctl --help" in r.stderr,
                     f"orphanctl {args}: rc {r.returncode}, stderr {r.stderr!r}")
        r = ctl("--help")
        ot.check(r.returncode == 0 and r.stdout.startswith("Usage: orphanctl"), "--help")

        # Refusals: non-zero exit and the reason.
        r = d.ctl("register", str(parent.pid), "1", check_rc=False)
        ot.check(r.returncode == 1 and "refused: protected target" in r.stderr,
                 f"refusal: rc {r.returncode}, {r.stderr!r}")
        r = d.ctl("register", str(parent.pid), str(parent.pid), check_rc=False)
        ot.check(r.returncode == 1 and "same process" in r.stderr,
                 f"refusal: rc {r.returncode}, {r.stderr!r}")
        gone = it.dead_pid()
        r = d.ctl("register", str(parent.pid), str(gone), check_rc=False)
        ot.check(r.returncode == 1 and f"child {gone}" in r.stderr and "No such process"
                 in r.stderr, f"dead child: rc {r.returncode}, {r.stderr!r}")

        # ORPHAND_SOCKET is honoured, and --socket wins over it.
        r = ctl("ping", env={"ORPHAND_SOCKET": d.socket})
        ot.check(r.returncode == 0 and d.socket in r.stdout, f"ORPHAND_SOCKET: {r}")
        missing = os.path.join(d.dir, "missing.sock")
        r = ctl("list", env={"ORPHAND_SOCKET": missing})
        ot.check(r.returncode == 1 and missing in r.stderr and "cannot connect" in r.stderr,
                 f"ORPHAND_SOCKET to nowhere: {r}")
        r = ctl("--socket", d.socket, "ping", env={"ORPHAND_SOCKET": missing})
        ot.check(r.returncode == 0, f"--socket over ORPHAND_SOCKET: {r}")
        r = ctl("unregister", str(parent.pid), str(child.pid), env={"ORPHAND_SOCKET": d.socket})
        ot.check(r.returncode == 0 and it.pairs(d) == set(), f"unregister: {r}")
        r = d.ctl("unregister", str(parent.pid), str(child.pid))
        ot.check("no such binding" in r.stdout, f"unregister unknown: {r.stdout!r}")

        # And the pair registered through orphanctl is enforced.
        d.ctl("register", str(parent.pid), str(child.pid))
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d, child, child_fd, "the child", sig=signal.SIGTERM)
        d.wait_until(lambda: "1 killed since start" in d.ctl("status").stdout, "kill counted")


if __name__ == "__main__":
    ot.run(main)
