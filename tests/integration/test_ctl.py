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

        check_scope(d)


def check_scope(d):
    """--scope: usage errors, a scope listed, a refusal's reason, and run's ORPHAND_SCOPE."""
    parent, _ = it.sleeper("orph-parent")
    child, _ = it.sleeper("orph-child")
    p, c = str(parent.pid), str(child.pid)
    for args, needle in ((["register", p, c, "--scope", "bogus"], 'invalid scope: "bogus"'),
                         (["register", p, c, "--scope=Tree"], 'invalid scope: "Tree"'),
                         (["register", p, c, "--scope="], 'invalid scope: ""'),
                         (["register", p, c, "--scope"], "--scope needs a value"),
                         (["run", "--scope=nope", "--", "true"], 'invalid scope: "nope"'),
                         (["run", "--scope"], "--scope needs a value"),
                         (["run", "--bogus", "true"], 'unknown run option "--bogus"')):
        r = d.ctl(*args, check_rc=False)
        ot.check(r.returncode == 2 and needle in r.stderr and "orphanctl --help" in r.stderr,
                 f"orphanctl {args}: rc {r.returncode}, stderr {r.stderr!r}")
    ot.check(it.pairs(d) == set(), "a usage error registered something")

    def scope_listed():
        rows = [line.split() for line in d.ctl("list").stdout.splitlines()[1:-1]]
        return [row[5] for row in rows if row[1] == f"orph-child[{child.pid}]"]

    r = d.ctl("register", "--scope=tree", p, c)
    ot.check(r.stdout == "" and r.stderr == "", f"register --scope=tree: {r.stdout!r} {r.stderr!r}")
    ot.check(scope_listed() == ["tree"], f"list shows scope {scope_listed()}, not tree")
    d.ctl("unregister", p, c)
    r = d.ctl("register", p, c, "--scope", "process")
    ot.check(r.returncode == 0 and scope_listed() == ["process"], f"--scope process: {r}")
    d.ctl("unregister", p, c)

    # Both sleepers share the test's cgroup: it holds the parent, or there is no cgroup v2.
    r = d.ctl("register", p, c, "--scope=cgroup", check_rc=False)
    ot.check(r.returncode == 1 and ("cgroup scope refused" in r.stderr or
                                    "scope not supported here" in r.stderr),
             f"register --scope=cgroup: rc {r.returncode}, {r.stderr!r}")
    ot.check(scope_listed() == [], "a refused scope was bound")

    out = d.ctl("status").stdout
    for line in ("  pgroup signal    ", "  cgroup scope     "):
        ot.check(line in out, f"status does not report {line.strip()!r}:\n{out}")

    # run --scope sets the shim's ORPHAND_SCOPE for the command; without it, the inherited one.
    # The preloaded library is this test's own libc, a no-op: the shim of an ASan build cannot
    # be preloaded into sh.
    with open("/proc/self/maps") as f:
        libc = next(line.split()[-1] for line in f
                    if os.path.basename(line.split()[-1]).startswith("libc.so"))
    for args, env, want in ((["--scope=tree"], {}, "tree"), (["--scope", "pgroup"], {}, "pgroup"),
                            ([], {"ORPHAND_SCOPE": "cgroup"}, "cgroup"),
                            (["--scope=process"], {"ORPHAND_SCOPE": "tree"}, "process")):
        r = ctl("--socket", d.socket, "run", *args, "--", "sh", "-c", 'echo "$ORPHAND_SCOPE"',
                env=dict(env, ORPHAND_SHIM=libc))
        ot.check(r.returncode == 0 and r.stdout == f"{want}\n",
                 f"run {args} with {env}: rc {r.returncode}, {r.stdout!r} {r.stderr!r}")


if __name__ == "__main__":
    ot.run(main)
