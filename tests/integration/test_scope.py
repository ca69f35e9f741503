# SPDX-License-Identifier: MIT
"""Kill scopes: a binding's kill reaches the child's process group, its tree or its cgroup, each
member checked by the registrant's rule, escalated as the child is, and logged with the scope.

The test is a child subreaper: processes whose parents die are reparented to it, so that it can
tell which of the processes it started are still alive, and reap them. Every process it starts
is ended by pidfd when its case ends, and the cgroups it creates are removed.
"""

import contextlib
import ctypes
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

import itest as it
import orphand
import orphtest as ot
from test_journal import KILL_ID, FakeJournal, as_dict

PROCESS, PGROUP, TREE, CGROUP = ot.Scope
SCOPE_NAMES = {PROCESS: "process", PGROUP: "pgroup", TREE: "tree", CGROUP: "cgroup"}
NOUNS = {PGROUP: "process group", TREE: "tree", CGROUP: "cgroup"}
R = ot.Reason
OK, PARENT_ALREADY_DEAD, BAD_POLICY = R.OK, R.PARENT_ALREADY_DEAD, R.BAD_POLICY
SCOPE_REFUSED, SCOPE_UNSUPPORTED = R.SCOPE_REFUSED, R.SCOPE_UNSUPPORTED
FEATURE_CGROUP = orphand.FEATURE_CGROUP
NOBODY = 65534  # the unprivileged registrant
OTHER = 4242    # another user, neither root nor nobody
PR_SET_CHILD_SUBREAPER = 36
PLAIN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}  # no LD_PRELOAD

# Builds a process tree from a JSON spec and reports each member as "NAME PID" on stdout. A node
# joins its cgroup, calls setsid() and ignores its signals first, then forks its children, then
# takes its uids (so that a root node can have children of other uids), names itself and reports;
# then it exits ("exit"), runs sleep(1) under its name ("exec"), or waits for a signal.
FORKER = r"""
import ctypes, json, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)

def run(spec):
    if spec.get("cgroup"):
        with open(os.path.join(spec["cgroup"], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    if spec.get("setsid"):
        os.setsid()
    for sig in spec.get("ignore", ()):
        signal.signal(sig, signal.SIG_IGN)
    for child in spec.get("children", ()):
        if os.fork() == 0:
            try:
                run(child)
            finally:
                os._exit(127)
    if spec.get("ids"):
        r, e, s = spec["ids"]
        os.setgroups([])
        os.setresgid(r, e, s)
        os.setresuid(r, e, s)
    libc.prctl(15, spec["name"].encode())  # PR_SET_NAME
    os.write(1, f"{spec['name']} {os.getpid()}\n".encode())
    if spec.get("exit"):
        os._exit(0)
    if spec.get("exec"):
        os.execv(spec["exec"], [spec["name"], "600"])
    while True:
        signal.pause()

run(json.loads(sys.argv[1]))
"""

# Under the shim: forks a child through libc (the shim binds it), which creates a grandchild with
# a raw clone(2) system call that no interposed function sees, then runs sleep(1); both report.
RAW_CLONE = r"""
import ctypes, os, signal, sys
SYS_CLONE = {"x86_64": 56, "aarch64": 220, "riscv64": 220}[os.uname().machine]
child_name, grandchild_name, sleep_dir = sys.argv[1:4]
child = os.fork()
if child == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    ul = ctypes.c_ulong
    g = libc.syscall(ctypes.c_long(SYS_CLONE), ul(signal.SIGCHLD), ul(0), ul(0), ul(0), ul(0))
    if g == 0:
        os.execv(os.path.join(sleep_dir, grandchild_name), [grandchild_name, "600"])
        os._exit(127)
    if g < 0:
        os._exit(126)
    print(f"{os.getpid()} {g}", flush=True)
    os.execv(os.path.join(sleep_dir, child_name), [child_name, "600"])
    os._exit(127)
sys.stdin.readline()
"""

# A bounded fork bomb: each node reports its pid and, down to depth 0, keeps forking 4 nodes one
# level down, 20 ms apart, then waits; depth 0 runs sleep. Depth 4: 341 processes at most.
BOMB = ('echo $$; [ "$1" -gt 0 ] || exec sleep 600; i=0; '
        'while [ $i -lt 4 ]; do /bin/sh -c "$ORPH_BOMB" sh $(($1 - 1)) & i=$((i + 1)); '
        'sleep 0.02; done; wait')


# --- protocol --------------------------------------------------------------------------------

def client2(d):
    """An acknowledged-mode connection at protocol version 2: LIST records carry the scope."""
    return d.client(version=2)


def register(c, parent, child, scope, sig=None, grace_ms=None):
    flags, kw = 0, {}
    if sig is not None:
        flags |= ot.FLAG_SIGNAL
        kw["sig"] = sig
    if grace_ms is not None:
        flags |= ot.FLAG_GRACE
        kw["grace_ms"] = grace_ms
    return c.call(parent, child, ot.REGISTER, flags=flags, scope=scope, **kw)


def expect_reply(r, error, reason, what):
    ot.check((r["error"], r["reason"]) == (error, reason),
             f"{what}: expected error {error} reason {reason}, got {r}")


def listed_scope(d, parent, child):
    with client2(d) as c:
        for b in c.list():
            if (b["parent"], b["child"]) == (parent, child):
                return b["scope"]
    return None


# --- processes -------------------------------------------------------------------------------

def named(name):
    """A sleep(1) running as `name`, in a directory other users may enter."""
    path = it.named(name)
    os.chmod(os.path.dirname(path), 0o755)
    return path


def node(name, *children, **opts):
    spec = {"name": name, "children": list(children), **opts}
    if spec.pop("leaf", False):
        spec["exec"] = named(name)
    return spec


def leaf(name, **opts):
    return node(name, leaf=True, **opts)


def spec_nodes(spec):
    yield spec
    for child in spec["children"]:
        yield from spec_nodes(child)


class Tree:
    """A process tree built by FORKER from a spec; its root is a child of the test. `pid` and
    `fd` map each member's name to its pid and to a pidfd (none for members that exit)."""

    def __init__(self, spec, env=PLAIN_ENV):
        self.proc, root_fd = ot.spawn([sys.executable, "-c", FORKER, json.dumps(spec)],
                                      stdout=subprocess.PIPE, env=env)
        nodes = {n["name"]: n for n in spec_nodes(spec)}
        self.pid = read_reports(self.proc, set(nodes))
        self.fd = {spec["name"]: root_fd}
        for name, n in nodes.items():
            if name != spec["name"] and not n.get("exit"):
                self.fd[name] = ot.track(self.pid[name])

    def alive(self, name):
        return not ot.pidfd_dead(self.fd[name]) and \
            ot.proc_state(self.pid[name]) not in (None, "Z", "X")

    def expect_dead(self, d, names, what):
        for name in names:
            if not ot.wait_pidfd(self.fd[name]):
                ot.fail(f"{what}: {name} (pid {self.pid[name]}) is still alive, state "
                        f"{ot.proc_state(self.pid[name])}\n--- daemon log ---\n{d.read_log()}")

    def expect_alive(self, names, what):
        for name in names:
            ot.check(self.alive(name), f"{what}: {name} (pid {self.pid[name]}) died")

    def state(self, name):
        return ot.proc_state(self.pid[name])


def read_reports(proc, names, timeout=ot.TIMEOUT):
    """Reads "NAME PID" lines from proc's stdout until every name in `names` has reported."""
    got, buf = {}, b""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while set(names) - set(got):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            ot.fail(f"no report from {sorted(set(names) - set(got))} within {timeout}s")
        chunk = os.read(fd, 65536)
        ot.check(chunk, f"the process tree exited early ({proc.poll()}), reported {got}")
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            name, pid = line.decode().split()
            got[name] = int(pid)
    return got


def sleeper_as(name, uid):
    """A sleep(1) named `name` owned by `uid` (real, effective and saved)."""
    proc, fd = ot.spawn([named(name), "600"], preexec_fn=lambda: it.become(uid))
    deadline = time.monotonic() + ot.TIMEOUT
    while it.comm(proc.pid) != name[:15] and time.monotonic() < deadline:
        time.sleep(0.001)
    return proc, fd


def as_user(uid, fn):
    """Runs fn() in a fork of the test that has become uid (no groups); returns its result."""
    def run(w):
        try:
            out = json.dumps({"result": fn()})
        except BaseException as e:  # noqa: BLE001 - reported to the test
            out = json.dumps({"error": repr(e)})
        os.write(w, out.encode())
    pid, r = it.fork_as(uid, run)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    ot.check(data, f"as uid {uid}: the fork failed")
    res = json.loads(data)
    ot.check("error" not in res, f"as uid {uid}: {res.get('error')}")
    return res["result"]


def proc_table():
    """{pid: (ppid, state)} of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        table[int(entry)] = (int(fields[1]), fields[0].decode())
    return table


def live_descendants(exclude=()):
    """Live processes below the test (its own children and, as a subreaper, every orphan of
    theirs), but not those in `exclude`."""
    table = proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    below, todo = set(), [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), ()):
            if pid not in below:
                below.add(pid)
                todo.append(pid)
    return {p for p in below - set(exclude) if table[p][1] not in ("Z", "X")}


def reap_orphans():
    """Reaps every child of the test that has exited; returns how many."""
    n = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return n
        if pid == 0:
            return n
        n += 1


def end_descendants():
    """SIGKILLs, by pidfd, every process still alive below the test (all started by it)."""
    for _ in range(50):
        left = live_descendants()
        if not left:
            break
        fds = {}
        for pid in left:
            with contextlib.suppress(OSError):
                fds[pid] = os.pidfd_open(pid)
        # Still below the test once pinned: the pid was not reused meanwhile.
        still = live_descendants()
        for pid, fd in fds.items():
            with contextlib.suppress(OSError):
                if pid in still:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)
        time.sleep(0.02)
        reap_orphans()
    reap_orphans()


# --- log lines -------------------------------------------------------------------------------

def scope_line(d, child_pid, scope):
    """The daemon's kill line for a scope kill of child_pid, as a match, or None. A kill that
    reached its time bound says it gave up (a pgroup's scan of /proc on a host with tens of
    thousands of processes): the test checks what came of it on the processes."""
    pat = (rf"killed (?P<comm>\S+)\[{child_pid}\] and (?P<more>\d+) more of its "
           rf"{NOUNS[scope]}(?P<gave_up> \(gave up before the scope was complete\))? with "
           r"(?P<sig>SIG\w+): parent (?P<pcomm>\S+)\[(?P<ppid>\d+)\] died(.*)")
    for line in d.read_log().splitlines():
        m = re.search(pat, line)
        if m:
            return m
    return None


def wait_scope_line(d, child_pid, scope):
    d.wait_until(lambda: scope_line(d, child_pid, scope) is not None,
                 f"the {SCOPE_NAMES[scope]} kill line for {child_pid}")
    return scope_line(d, child_pid, scope)


# --- cgroups ---------------------------------------------------------------------------------

def cgroup2_mount():
    """Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified in the hybrid
    layout), or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            before, _, after = line.partition(" - ")
            if after.split()[0] == "cgroup2":
                return before.split()[4]
    return None


def cgroup_path(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


def move(pid, cg):
    with open(os.path.join(cg, "cgroup.procs"), "w") as f:
        f.write(str(pid))


def cgroup_procs(cg):
    with open(os.path.join(cg, "cgroup.procs")) as f:
        return [int(x) for x in f.read().split()]


def populated(cg):
    with open(os.path.join(cg, "cgroup.events")) as f:
        return dict(line.split() for line in f)["populated"] == "1"


def remove_cgroups(top):
    """Removes `top` and the cgroups below it, deepest first, once their processes are gone."""
    if not os.path.isdir(top):
        return
    for root, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
        for _ in range(100):
            try:
                os.rmdir(root)
                break
            except OSError:
                time.sleep(0.02)
    ot.check(not os.path.exists(top), f"could not remove the test's cgroup {top}")


# --- cases -----------------------------------------------------------------------------------

def case_tree_against_process(d):
    """A child forks an intermediate, which forks a helper that calls setsid(); nothing of the
    shim is inherited. Scope process leaves the helper alive; scope tree kills all three."""
    def tree(tag, **helper):
        return Tree(node(f"orph-{tag}c", node(f"orph-{tag}i", leaf(f"orph-{tag}h", setsid=True,
                                                                   **helper))))

    # Scope process: the child alone.
    t = tree("p")
    parent, parent_fd = it.sleeper("orph-pp")
    c, i, h = "orph-pc", "orph-pi", "orph-ph"
    with client2(d) as cl:
        expect_reply(register(cl, parent.pid, t.pid[c], PROCESS), 0, OK, "REGISTER process")
        listed = cl.list()
    ot.check([(b["parent"], b["child"], b["scope"]) for b in listed] ==
             [(parent.pid, t.pid[c], PROCESS)], f"LIST (nothing else bound): {listed}")
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    t.expect_dead(d, [c], "scope process")
    line = it.wait_kill_line(d, t.pid[c])
    ot.check(" more of its " not in line, f"a process-scope kill line names others: {line!r}")
    time.sleep(0.2)  # time to have wrongly killed the others
    t.expect_alive([i, h], "scope process")
    print(f"  scope process: child {t.pid[c]} killed, intermediate and setsid() helper alive")

    # Scope tree: the child and every descendant; the helper ignores SIGTERM and is escalated.
    t = tree("t", ignore=[signal.SIGTERM])
    parent, parent_fd = it.sleeper("orph-tp")
    c, i, h = "orph-tc", "orph-ti", "orph-th"
    with client2(d) as cl:
        expect_reply(register(cl, parent.pid, t.pid[c], TREE, grace_ms=300), 0, OK,
                     "REGISTER tree")
    ot.check(listed_scope(d, parent.pid, t.pid[c]) == TREE, "LIST does not show scope tree")
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    t.expect_dead(d, [c, i, h], "scope tree")
    m = wait_scope_line(d, t.pid[c], TREE)
    ot.check(m["comm"] == c and m["more"] == "2" and m["sig"] == "SIGTERM" and
             m["pcomm"] == "orph-tp" and int(m["ppid"]) == parent.pid,
             f"tree kill line: {m.group(0)!r}")
    ot.check(d.wait_log(f"killed orph-th[{t.pid[h]}] with SIGKILL: it outlived its grace period"),
             f"the helper's escalation is not logged:\n{d.read_log()}")
    print(f"  scope tree: child, intermediate and helper dead (the helper by escalation); "
          f"{m.group(0)!r}")

    # The tree is read when the parent dies: a helper whose intermediate exited before was
    # reparented (here to the test, a subreaper) and is no longer below the child, so the tree
    # scope cannot reach it. A member that ignores SIGTERM, with no escalation, survives the
    # freeze running, not stopped.
    t = Tree(node("orph-lc", node("orph-li", leaf("orph-lh", setsid=True), exit=True),
                  leaf("orph-lk", ignore=[signal.SIGTERM])))
    parent, parent_fd = it.sleeper("orph-lp")
    c, h, k = "orph-lc", "orph-lh", "orph-lk"
    d.wait_until(lambda: ot.proc_state(t.pid["orph-li"]) in (None, "Z", "X"),
                 "the intermediate's exit")
    with client2(d) as cl:
        expect_reply(register(cl, parent.pid, t.pid[c], TREE, grace_ms=ot.GRACE_NEVER), 0, OK,
                     "REGISTER tree, no escalation")
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    t.expect_dead(d, [c], "scope tree, escaped helper")
    m = wait_scope_line(d, t.pid[c], TREE)
    # One more than the child: the SIGTERM-ignoring member. The intermediate has exited (a
    # zombie its parent never reaps): there is nothing in it to signal, and it is not counted.
    ot.check(m["more"] == "1", f"tree kill line (the child and the SIGTERM-ignoring member; not "
             f"the exited intermediate, nor the escaped helper): {m.group(0)!r}")
    d.wait_until(lambda: t.state(k) == "S", "the SIGTERM-ignoring member to run again")
    t.expect_alive([h, k], "scope tree, escaped helper")
    ot.check(t.state(h) == "S", f"the escaped helper is in state {t.state(h)}")
    print("  scope tree: a helper reparented away before the kill is out of reach (alive); a "
          "member that ignores SIGTERM runs on, not left stopped")


def case_raw_clone(d):
    """Under the shim, a child bound by the shim creates a grandchild with a raw clone(2) the
    shim cannot see: bound with scope process (no ORPHAND_SCOPE) the grandchild outlives its
    parent's death; bound with ORPHAND_SCOPE=tree it dies with the child."""
    ot.check(os.path.exists(ot.SHIM), f"{ot.SHIM} is not built")
    with open(ot.SHIM, "rb") as f:
        if b"libasan.so" in f.read():
            # An ASan build's shim cannot be preloaded into python (its runtime must come first),
            # which is why .ci/test runs no shim suite under ASan: this case runs in the plain
            # build's run of this test.
            print("  raw clone under the shim: run by the plain build (this shim is an ASan "
                  "build, which cannot be preloaded into python)")
            return
    for scope in (PROCESS, TREE):
        env = dict(PLAIN_ENV, LD_PRELOAD=ot.SHIM, ORPHAND_SOCKET=d.socket, ORPHAND_DEBUG="1")
        if scope == TREE:
            env["ORPHAND_SCOPE"] = "tree"
        tag = "rt" if scope == TREE else "rp"
        cname, gname = f"orph-{tag}c", f"orph-{tag}g"
        sleep_dir = os.path.dirname(named(cname))
        named(gname)
        stderr = tempfile.TemporaryFile()  # the shim's reports (ORPHAND_DEBUG)

        def errors():
            stderr.seek(0)
            return stderr.read().decode(errors="replace")
        parent, parent_fd = ot.spawn([sys.executable, "-c", RAW_CLONE, cname, gname, sleep_dir],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr)
        line = parent.stdout.readline().decode()
        ot.check(line, f"the raw-clone parent exited ({parent.poll()}): {errors()}")
        child, grandchild = (int(x) for x in line.split())
        child_fd, grandchild_fd = ot.track(child), ot.track(grandchild)
        d.wait_until(lambda: it.comm(child) == cname and it.comm(grandchild) == gname,
                     "the child's and the grandchild's exec")
        it.wait_bound(d, parent.pid, child)
        time.sleep(0.1)  # a registration of the grandchild would have come with the child's
        bound = it.pairs(d)
        ot.check(bound == {(parent.pid, child)},
                 f"bindings {bound}: the shim should have bound the child alone")
        ot.check(listed_scope(d, parent.pid, child) == scope,
                 f"the shim bound the child with scope {listed_scope(d, parent.pid, child)}, "
                 f"not {SCOPE_NAMES[scope]}")
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        parent.wait()
        ot.check("orphand-forkwait" not in errors(), f"the shim reported: {errors()}")
        ot.check(ot.wait_pidfd(child_fd), f"the shim-bound child {child} survived its parent\n"
                 f"{d.read_log()}")
        if scope == PROCESS:
            it.wait_kill_line(d, child)
            time.sleep(0.2)
            ot.check(not ot.pidfd_dead(grandchild_fd),
                     "the raw-clone grandchild died with scope process")
            signal.pidfd_send_signal(grandchild_fd, signal.SIGKILL)
            print(f"  raw clone, scope process: child {child} killed, grandchild {grandchild} "
                  "(never bound) alive")
        else:
            ot.check(ot.wait_pidfd(grandchild_fd),
                     f"the raw-clone grandchild {grandchild} survived scope tree\n{d.read_log()}")
            m = wait_scope_line(d, child, TREE)
            # Not its name: orphand reads it shortly after the shim's registration, which may
            # be before the child's exec.
            ot.check(m["more"] == "1", f"kill line {m.group(0)!r}")
            print(f"  raw clone, ORPHAND_SCOPE=tree: child {child} and grandchild {grandchild} "
                  f"killed: {m.group(0)!r}")


def case_pgroup(d):
    """A process group of 50 (one joined after the registration): scope pgroup kills all 50 and
    escalates those that ignore SIGTERM; a process in another group lives."""
    outsider, outsider_fd = it.sleeper("orph-gout")
    parent, parent_fd = it.sleeper("orph-gp")
    members = []

    def member(pgid):
        ignore = len(members) % 2 == 1

        def pre():
            if ignore:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
        p, fd = ot.spawn([named("orph-g"), "600"], process_group=pgid, preexec_fn=pre)
        members.append((p, fd, ignore))
    member(0)
    pgid = members[0][0].pid
    for _ in range(48):
        member(pgid)
    child = members[1][0]
    d.wait_until(lambda: all(it.comm(p.pid) == "orph-g" for p, _, _ in members), "49 execs")
    with client2(d) as cl:
        expect_reply(register(cl, parent.pid, child.pid, PGROUP, grace_ms=300), 0, OK,
                     "REGISTER pgroup")
    member(pgid)  # in the group when the parent dies, not when the child was bound
    d.wait_until(lambda: it.comm(members[-1][0].pid) == "orph-g", "the 50th exec")
    ot.check(all(os.getpgid(p.pid) == pgid for p, _, _ in members), "a member left the group")
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    # Left zombies until their lines are logged: orphand names a member it escalated to SIGKILL
    # from /proc, where a reaped one has no name any more.
    for p, fd, ignore in members:
        it.expect_dead(d, p, fd, f"group member {p.pid}",
                       sig=signal.SIGKILL if ignore else signal.SIGTERM, reap=False)
    it.expect_alive(outsider, outsider_fd, "the process in another group")
    m = wait_scope_line(d, child.pid, PGROUP)
    ot.check(m["more"] == "49" and m["sig"] == "SIGTERM" and int(m["ppid"]) == parent.pid,
             f"pgroup kill line: {m.group(0)!r}")
    escalated = [p.pid for p, _, ignore in members if ignore]
    d.wait_until(lambda: all(f"killed orph-g[{pid}] with SIGKILL: it outlived" in d.read_log()
                             for pid in escalated), "the escalations' log lines")
    for p, _, _ in members:
        p.wait()
    print(f"  scope pgroup: 50 members dead ({len(escalated)} by escalation to SIGKILL), the "
          f"outsider alive: {m.group(0)!r}")


def case_pgroup_holds_orphand():
    """orphand in the child's process group signals the others, never itself."""
    spawn = ot.spawn

    def own_group(argv, **kw):
        if argv[0] == ot.DAEMON:
            kw["process_group"] = 0
        return spawn(argv, **kw)
    d = ot.Daemon()
    ot.spawn = own_group
    try:
        d.start()
    finally:
        ot.spawn = spawn
    try:
        ot.check(os.getpgid(d.pid) == d.pid, "orphand does not lead its own group")
        parent, parent_fd = it.sleeper("orph-op")
        child, child_fd = ot.spawn([named("orph-oc"), "600"], process_group=d.pid)
        other, other_fd = ot.spawn([named("orph-oo"), "600"], process_group=d.pid)
        with client2(d) as cl:
            expect_reply(register(cl, parent.pid, child.pid, PGROUP), 0, OK, "REGISTER pgroup")
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d, child, child_fd, "the child", sig=signal.SIGTERM)
        it.expect_dead(d, other, other_fd, "the other member", sig=signal.SIGTERM)
        m = wait_scope_line(d, child.pid, PGROUP)
        ot.check(m["more"] == "1", f"orphand counted itself: {m.group(0)!r}")
        time.sleep(0.2)
        ot.check(d.alive(), f"orphand died with its process group:\n{d.read_log()}")
        with d.client() as c:
            c.status()
    finally:
        d.stop()
    print("  scope pgroup with orphand in the group: the two others killed, orphand alive")


def case_fork_bomb(d):
    """A tree that keeps forking while it is killed, with SIGKILL: nothing of it survives."""
    parent, parent_fd = it.sleeper("orph-bp")
    bomb, bomb_fd = ot.spawn(["/bin/sh", "-c", BOMB, "sh", "4"], stdout=subprocess.PIPE,
                             env=dict(PLAIN_ENV, ORPH_BOMB=BOMB))
    with client2(d) as cl:
        expect_reply(register(cl, parent.pid, bomb.pid, TREE, sig=signal.SIGKILL), 0, OK,
                     "REGISTER tree SIGKILL")
    fd = bomb.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""
    deadline = time.monotonic() + ot.TIMEOUT
    while buf.count(b"\n") < 60:  # of 341: the tree is still growing when it is killed
        ot.check(time.monotonic() < deadline, f"the bomb grew to {len(buf.split())} only")
        select.select([fd], [], [], 0.1)
        with contextlib.suppress(BlockingIOError):
            buf += os.read(fd, 65536)
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    before = len(buf.split())
    try:
        d.wait_until(lambda: not live_descendants(exclude={d.pid}), "the whole tree's death")
    except AssertionError:
        table = proc_table()
        left = {p: table.get(p) for p in live_descendants(exclude={d.pid})}
        ot.fail(f"{len(left)} processes of the tree survived (pid: (ppid, state)): "
                f"{dict(list(left.items())[:20])}\n--- daemon log ---\n{d.read_log()[-3000:]}")
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            buf += chunk
    bomb.wait(timeout=ot.TIMEOUT)
    ot.check(bomb.returncode == -signal.SIGKILL, f"the bomb's root exited {bomb.returncode}")
    orphans = reap_orphans()
    m = wait_scope_line(d, bomb.pid, TREE)
    ot.check(m["sig"] == "SIGKILL", f"tree kill line: {m.group(0)!r}")
    print(f"  fork bomb: {before} processes when the parent died, {len(buf.split())} reported "
          f"in all, every one dead; {orphans} reaped as orphans by the test; {m.group(0)!r}")


def case_other_uid():
    """Registrant nobody, its child's tree nobody's but for one member of another uid: that one is
    skipped (not even stopped) and logged, the others are killed. The journal entries carry the
    scope, the count signalled and the count skipped."""
    fj = FakeJournal()
    try:
        fj.bind()
        with fj.daemon() as d:
            os.chmod(d.dir, 0o755)  # nobody reaches the socket
            fj.read_until_quiet(quiet=0.2)
            nob = (NOBODY,) * 3
            # orph-us: real uid OTHER, saved uid nobody: kill(2)'s rule lets nobody signal it.
            t = Tree(node("orph-uc",
                          node("orph-ui", leaf("orph-ul", ids=nob),
                               leaf("orph-ux", ids=(OTHER,) * 3),
                               node("orph-us", ids=(OTHER, OTHER, NOBODY)), ids=nob),
                          leaf("orph-uy", ids=nob), ids=nob))
            parent, parent_fd = sleeper_as("orph-up", NOBODY)
            pids = t.pid

            def bind():
                with client2(d) as cl:
                    return register(cl, parent.pid, pids["orph-uc"], TREE)
            expect_reply(as_user(NOBODY, bind), 0, OK, "nobody's REGISTER tree")
            fj.read_until_quiet(quiet=0.2)
            signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
            killed = ["orph-uc", "orph-ui", "orph-ul", "orph-us", "orph-uy"]
            t.expect_dead(d, killed, "nobody's tree")
            entries = fj.wait_entry(lambda e: e.get("MESSAGE_ID") == KILL_ID.encode() and
                                    e.get("ORPHAND_CHILD_PID") == str(pids["orph-uc"]).encode(),
                                    "the tree's kill entry", d)
            entries += fj.read_until_quiet(quiet=0.3)
            kill = next(as_dict(e) for e in entries if as_dict(e).get("MESSAGE_ID") ==
                        KILL_ID.encode())
            ot.check(kill.get("ORPHAND_SCOPE") == b"tree" and
                     kill.get("ORPHAND_SIGNALLED") == b"5" and
                     kill.get("ORPHAND_REGISTRANT_UID") == str(NOBODY).encode(),
                     f"kill entry fields: {kill}")
            text = kill["MESSAGE"].decode()
            ot.check(text.startswith(f"killed orph-uc[{pids['orph-uc']}] and 4 more of its tree "
                                     f"with SIGTERM: parent orph-up[{parent.pid}] died"),
                     f"kill entry text: {text!r}")
            skips = [as_dict(e) for e in entries if "ORPHAND_SKIPPED" in as_dict(e)]
            ot.check(len(skips) == 1, f"expected one entry for the skipped member: "
                     f"{[as_dict(e).get('MESSAGE') for e in entries]}")
            skip = skips[0]
            want = (f"not signalling orph-ux[{pids['orph-ux']}] (uid {OTHER}) of the tree of "
                    f"orph-uc[{pids['orph-uc']}]: their uid is not the registrant's ({NOBODY}); "
                    f"parent orph-up[{parent.pid}] died")
            ot.check(skip["MESSAGE"].decode() == want,
                     f"skip entry text:\n  {skip['MESSAGE'].decode()!r}\nexpected\n  {want!r}")
            ot.check(skip.get("ORPHAND_SKIPPED") == b"1" and skip.get("ORPHAND_SCOPE") == b"tree"
                     and skip.get("PRIORITY") == b"4", f"skip entry fields: {skip}")
            t.expect_alive(["orph-ux"], "the other uid's member")
            ot.check(t.state("orph-ux") == "S",
                     f"the other uid's member is in state {t.state('orph-ux')}")
            print(f"  nobody's tree with one member of uid {OTHER}: 5 killed (one with saved uid "
                  f"nobody), that one skipped, alive and running; {skip['MESSAGE'].decode()!r}")
    finally:
        fj.close()


def case_bad_scope(d):
    """An unknown scope, or a scope on a request other than REGISTER, is refused."""
    parent, _ = it.sleeper("orph-vp")
    child, child_fd = it.sleeper("orph-vc")
    with client2(d) as cl:
        for scope in (4, 255, 0xFFFFFFFF):
            expect_reply(register(cl, parent.pid, child.pid, scope), -22, BAD_POLICY,
                         f"REGISTER scope {scope}")
        for action in (ot.PING, ot.UNREGISTER, ot.LIST, ot.STATUS):
            expect_reply(cl.call(parent.pid if action == ot.UNREGISTER else 0,
                                 child.pid if action == ot.UNREGISTER else 0, action, scope=TREE),
                         -22, BAD_POLICY, f"action {action} with scope tree")
        ot.check(cl.list() == [], "a refused registration is listed")
    it.expect_alive(child, child_fd, "the child of refused registrations")
    print("  scopes 4, 255, 2^32-1 and a scope on PING, UNREGISTER, LIST, STATUS: EINVAL, "
          "BAD_POLICY")


def case_list(d):
    """LIST shows each binding's scope at version 2, the same bindings at version 1, and
    orphanctl list has a SCOPE column."""
    parent, _ = it.sleeper("orph-sp")
    children = {scope: it.sleeper(f"orph-s{SCOPE_NAMES[scope]}")[0]
                for scope in (PROCESS, PGROUP, TREE)}
    with client2(d) as cl:
        for scope, child in children.items():
            expect_reply(register(cl, parent.pid, child.pid, scope), 0, OK,
                         f"REGISTER {SCOPE_NAMES[scope]}")
        v2 = {b["child"]: b for b in cl.list()}
    for scope, child in children.items():
        b = v2.get(child.pid)
        ot.check(b and b["scope"] == scope and b["reserved"] == [0, 0, 0] and
                 b["parent"] == parent.pid and b["child_comm"] == f"orph-s{SCOPE_NAMES[scope]}",
                 f"LIST v2 for {SCOPE_NAMES[scope]}: {b}")
    with d.client() as c:  # version 1: 64-byte records, unchanged
        v1 = {(b["parent"], b["child"]) for b in c.list()}
    ot.check(v1 == {(parent.pid, ch.pid) for ch in children.values()}, f"LIST v1: {v1}")
    out = d.ctl("list").stdout
    ot.check(re.search(r"^PARENT\s+CHILD\s+REGISTRANT\s+SIGNAL\s+GRACE\s+SCOPE\s+AGE", out, re.M),
             f"orphanctl list header: {out}")
    for scope, child in children.items():
        ot.check(re.search(rf"\[{child.pid}\]\s.*\s{SCOPE_NAMES[scope]}\s", out),
                 f"orphanctl list does not show {SCOPE_NAMES[scope]} for {child.pid}:\n{out}")
    print("  LIST v2 shows process, pgroup, tree; LIST v1 the same bindings; orphanctl list's "
          "SCOPE column too")


def case_cgroup(d, mount):
    """Scope cgroup: refused for a root cgroup and for one holding the parent or orphand; else
    every process in the child's cgroup and below it is killed, the reparented ones too, and the
    cgroup is left empty."""
    top = os.path.join(mount, f"orphtest-scope-{os.getpid()}")
    os.mkdir(top)
    try:
        with client2(d) as cl:
            cgroup_refusals(d, cl, mount, top)
            cgroup_kill(d, cl, top)
            cgroup_dead_parent(d, cl, top)
    finally:
        end_descendants_in(top)
        remove_cgroups(top)


def cgroup_refusals(d, cl, mount, top):
    def refused(parent, child, what):
        r = register(cl, parent, child, CGROUP)
        expect_reply(r, -1, SCOPE_REFUSED, what)  # -EPERM
        ot.check((parent, child) not in {(b["parent"], b["child"]) for b in cl.list()},
                 f"{what}: listed")
        ot.check(ot.proc_state(child) not in (None, "Z", "X"), f"{what}: the child died")

    parent, _ = it.sleeper("orph-cp")
    child, _ = it.sleeper("orph-cc")
    move(child.pid, mount)
    refused(parent.pid, child.pid, "a child in the root cgroup")
    for sub in ("shared", "shared/inner", "orphand"):
        os.mkdir(os.path.join(top, sub))
    move(child.pid, os.path.join(top, "shared"))
    move(parent.pid, os.path.join(top, "shared"))
    refused(parent.pid, child.pid, "a child in its parent's cgroup")
    move(parent.pid, os.path.join(top, "shared", "inner"))
    refused(parent.pid, child.pid, "a child in a cgroup above its parent's")
    move(parent.pid, mount)
    home = cgroup_path(d.pid)
    move(d.pid, os.path.join(top, "orphand"))
    try:
        move(child.pid, os.path.join(top, "orphand"))
        refused(parent.pid, child.pid, "a child in orphand's cgroup")
        move(child.pid, top)
        refused(parent.pid, child.pid, "a child in a cgroup above orphand's")
    finally:
        move(d.pid, mount + home if home != "/" else mount)
    print("  scope cgroup refused (EPERM, SCOPE_REFUSED) for a child in the root cgroup, in its "
          "parent's cgroup or above it, in orphand's or above it")


def cgroup_kill(d, cl, top):
    job = os.path.join(top, "job")
    os.mkdir(job)
    os.mkdir(os.path.join(job, "sub"))
    os.mkdir(os.path.join(top, "beside"))
    # orph-jh leaves the tree (its intermediate exits) but not the cgroup; orph-js is in a
    # cgroup below the child's.
    t = Tree(node("orph-jc", leaf("orph-ja"), leaf("orph-jb", setsid=True),
                  node("orph-je", leaf("orph-jh", setsid=True), exit=True),
                  leaf("orph-js", cgroup=os.path.join(job, "sub")), cgroup=job))
    beside, beside_fd = ot.spawn([named("orph-jo"), "600"],
                                 preexec_fn=lambda: move(os.getpid(), os.path.join(top, "beside")))
    parent, parent_fd = it.sleeper("orph-jp")
    d.wait_until(lambda: ot.proc_state(t.pid["orph-je"]) in (None, "Z", "X"),
                 "the intermediate's exit")
    members = ["orph-jc", "orph-ja", "orph-jb", "orph-jh", "orph-js"]
    ot.check(sorted(cgroup_procs(job) + cgroup_procs(os.path.join(job, "sub"))) ==
             sorted(t.pid[n] for n in members), "the job cgroup's processes")
    expect_reply(register(cl, parent.pid, t.pid["orph-jc"], CGROUP), 0, OK, "REGISTER cgroup")
    ot.check(any(b["child"] == t.pid["orph-jc"] and b["scope"] == CGROUP for b in cl.list()),
             "LIST does not show scope cgroup")
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    t.expect_dead(d, members, "scope cgroup")
    d.wait_until(lambda: not populated(job), "the job cgroup to be empty")
    ot.check(cgroup_procs(job) == [] and cgroup_procs(os.path.join(job, "sub")) == [],
             "processes left in the job cgroup")
    it.expect_alive(beside, beside_fd, "the process in the cgroup beside")
    m = wait_scope_line(d, t.pid["orph-jc"], CGROUP)
    ot.check(m["more"] == "4" and int(m["ppid"]) == parent.pid, f"kill line {m.group(0)!r}")
    signal.pidfd_send_signal(beside_fd, signal.SIGKILL)
    beside.wait()
    reap_orphans()
    os.rmdir(os.path.join(job, "sub"))
    os.rmdir(job)
    print(f"  scope cgroup: 5 processes (one reparented away, one in a cgroup below) killed, the "
          f"cgroup empty and removed: {m.group(0)!r}")


def cgroup_dead_parent(d, cl, top):
    """A parent already dead when the binding is registered: the cgroup is killed at once, and a
    member that ignores SIGTERM is escalated to SIGKILL."""
    job = os.path.join(top, "job2")
    os.mkdir(job)
    t = Tree(node("orph-kc", leaf("orph-ka"), leaf("orph-ki", ignore=[signal.SIGTERM]),
                  cgroup=job))
    r = register(cl, it.dead_pid(), t.pid["orph-kc"], CGROUP, grace_ms=300)
    expect_reply(r, 0, PARENT_ALREADY_DEAD, "REGISTER cgroup, parent dead")
    t.expect_dead(d, ["orph-kc", "orph-ka", "orph-ki"], "scope cgroup, parent dead")
    d.wait_until(lambda: not populated(job), "the job2 cgroup to be empty")
    ot.check(d.wait_log(f"killed orph-ki[{t.pid['orph-ki']}] with SIGKILL: it outlived"),
             f"no escalation of the member that ignores SIGTERM:\n{d.read_log()}")
    reap_orphans()
    os.rmdir(job)
    print("  scope cgroup, parent already dead: the cgroup killed at once, its SIGTERM-ignoring "
          "member escalated, the cgroup empty")


def end_descendants_in(top):
    """Every process left in the test's cgroups was started by the test: ended by pidfd."""
    for _ in range(50):
        pids = [p for root, _, files in os.walk(top) if "cgroup.procs" in files
                for p in cgroup_procs(root)]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                fd = os.pidfd_open(pid)
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                os.close(fd)
        time.sleep(0.02)
        reap_orphans()


def cgroup_unsupported(d):
    """Without a cgroup2 mount, a cgroup scope is refused with EOPNOTSUPP, SCOPE_UNSUPPORTED."""
    with d.client() as c:
        ot.check(not c.status()["features"] & FEATURE_CGROUP,
                 "STATUS reports the cgroup feature without cgroup2")
    parent, _ = it.sleeper("orph-np")
    child, child_fd = it.sleeper("orph-nc")
    with client2(d) as cl:
        expect_reply(register(cl, parent.pid, child.pid, CGROUP), -95, SCOPE_UNSUPPORTED,
                     "REGISTER cgroup without cgroup2")  # -EOPNOTSUPP
        expect_reply(register(cl, parent.pid, child.pid, TREE), 0, OK,
                     "REGISTER tree without cgroup2")
    it.expect_alive(child, child_fd, "the child")
    print("  without cgroup2: scope cgroup refused (EOPNOTSUPP, SCOPE_UNSUPPORTED), tree taken")


def case_cgroup_unmounted(mount):
    """orphand where cgroup2 is not mounted: cgroup_unsupported."""
    spawn = ot.spawn
    # orphand in a mount namespace of its own in which cgroup2 is unmounted (the host's mounts
    # are not touched).
    script = 'm=$1; shift; umount -l "$m" && exec "$@"'

    def without_cgroup2(argv, **kw):
        if argv[0] == ot.DAEMON:
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                    mount, *argv]
        return spawn(argv, **kw)
    d = ot.Daemon()
    ot.spawn = without_cgroup2
    try:
        d.start()
    finally:
        ot.spawn = spawn
    try:
        cgroup_unsupported(d)
    finally:
        d.stop()


def run_case(case, *args, daemon=True):
    """One case with a daemon of its own; whatever it started is ended when it ends."""
    try:
        if daemon:
            with ot.Daemon() as d:
                case(d, *args)
                ot.check(d.alive(), f"orphand died:\n{d.read_log()}")
        else:
            case(*args)
    finally:
        ot.cleanup()
        end_descendants()


def main():
    if os.geteuid() != 0:
        ot.skip("needs root: processes of other uids, process groups, cgroups")
    libc = ctypes.CDLL(None, use_errno=True)
    ot.check(libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0) == 0,
             "PR_SET_CHILD_SUBREAPER failed")
    it.raise_nofile()
    run_case(case_tree_against_process)
    run_case(case_raw_clone)
    run_case(case_pgroup)
    run_case(case_pgroup_holds_orphand, daemon=False)
    run_case(case_fork_bomb)
    run_case(case_other_uid, daemon=False)
    run_case(case_bad_scope)
    run_case(case_list)
    mount = cgroup2_mount()
    if mount is None:
        print("  no cgroup2 mount here: the cgroup scope's kills are not tested")
        run_case(cgroup_unsupported)
        return
    with ot.Daemon() as d, d.client() as c:
        ot.check(c.status()["features"] & FEATURE_CGROUP,
                 f"STATUS does not report the cgroup feature with cgroup2 at {mount}")
    run_case(case_cgroup, mount)
    run_case(case_cgroup_unmounted, mount, daemon=False)
    ot.check(not live_descendants(), f"processes left: {live_descendants()}")


if __name__ == "__main__":
    ot.run(main)
