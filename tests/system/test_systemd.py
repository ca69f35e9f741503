# SPDX-License-Identifier: MIT
"""orphand under a real systemd: this machine's root booted ephemerally in systemd-nspawn, with
the staged install, runs the systemd scenarios (socket activation, the shim in a service,
restart, crash, the hardened unit, the user units, a cgroup scope in a delegated cgroup) and
checks each outcome on real processes.

The container is a process tree this test starts in a cgroup of its own; it is powered off with
SIGTERM to systemd-nspawn and, should that fail, killed by pidfd, so nothing outlives the test.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from nspawn import (Container, bindings, journal, main_pid, pidfd_kill, report_failure, show,
                    spawn)
from orphtest import TIMEOUT, check, skip

BUILD = os.environ["ORPHAND_BUILD_DIR"]
PREFIX = os.environ["ORPHAND_PREFIX"]
SBINDIR = os.environ["ORPHAND_SBINDIR"]
BINDIR = os.environ["ORPHAND_BINDIR"]
SHIM = os.environ["ORPHAND_INSTALLED_SHIM"]
SYSTEM_UNIT_DIR = os.environ["ORPHAND_SYSTEM_UNIT_DIR"]
USER_UNIT_DIR = os.environ["ORPHAND_USER_UNIT_DIR"]
CATALOG_DIR = os.environ["ORPHAND_CATALOG_DIR"]

STAGE_IN = "/opt/orphand-stage"  # the staged install, read-only inside the container
PATH = f"{SBINDIR}:{BINDIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER, UID = "orphtest", 4242

# MESSAGE_IDs (daemon/log.hpp)
MSG_KILL = "2daf3cc9baae451eb6cfd21148714be8"
MSG_ALREADY_DEAD = "06dfb135339247e09d098e744577fb5e"
KILL_FIELDS = ["ORPHAND_PARENT_PID", "ORPHAND_PARENT_COMM", "ORPHAND_PARENT_EXIT",
               "ORPHAND_CHILD_PID", "ORPHAND_CHILD_COMM", "ORPHAND_SIGNAL",
               "ORPHAND_REGISTRANT_UID", "ORPHAND_LATENCY_USEC", "PRIORITY"]

timings = {}


# --- helpers over the container -------------------------------------------------------------

def wait_journal(c, pred, what):
    found = []

    def probe():
        found[:] = [e for e in journal(c) if pred(e)]
        return bool(found)
    c.wait_until(probe, what)
    return found


def check_socket(c, path, is_kind, kind):
    """A `kind` socket (is_kind of its /proc/net/unix fields) is bound at `path` in the
    container's network namespace, with mode 666."""
    with open(f"/proc/{c.init}/net/unix") as f:
        sockets = [line.split() for line in f if line.rstrip().endswith(" " + path)]
    check(any(is_kind(fields) for fields in sockets), f"no {kind} socket at {path}: {sockets}")
    mode = c.run("stat", "-c", "%a", path).stdout.strip()
    check(mode == "666", f"{path}: mode {mode}")


# --- scenarios ------------------------------------------------------------------------------

def scenario1_socket_activation(c):
    c.sh(f"cp {STAGE_IN}{SYSTEM_UNIT_DIR}/orphand.socket {STAGE_IN}{SYSTEM_UNIT_DIR}/"
         "orphand.service /etc/systemd/system/ && systemctl daemon-reload")
    c.run("systemctl", "enable", "--now", "orphand.socket")
    check(c.run("systemctl", "is-active", "orphand.socket").stdout.strip() == "active",
          "orphand.socket is not active")
    # /proc/net/unix: flags 00010000 (__SO_ACCEPTCON) mark a listening socket.
    check_socket(c, "/run/orphand/orphand.sock", lambda f: f[3] == "00010000", "listening")
    state = c.run("systemctl", "is-active", "orphand.service", check=False).stdout.strip()
    check(state == "inactive", f"orphand.service started before any client: {state}")
    t0 = time.monotonic()
    r = c.run("orphanctl", "ping")
    timings["first ping (socket activation)"] = time.monotonic() - t0
    print(f"scenario 1: {r.stdout.strip()}")
    check(c.run("systemctl", "is-active", "orphand.service").stdout.strip() == "active",
          "the first client did not start orphand.service")
    # Type=notify: READY=1 made it active; STATUS= and the watchdog are live.
    status = show(c, "orphand.service", "StatusText")
    check(re.fullmatch(r"watching \d+ parents, \d+ children; \d+ killed since start", status),
          f"StatusText {status!r}")
    check(show(c, "orphand.service", "WatchdogUSec") not in ("", "0", "infinity"),
          "no watchdog")
    status = c.run("orphanctl", "status").stdout
    check(re.search(r"restart safety\s+yes", status),
          f"orphanctl status does not report the fd store: {status}")
    print(f"scenario 1: socket active, service started by the first client in "
          f"{timings['first ping (socket activation)'] * 1000:.0f} ms")

    # The shim's datagram socket, beside it: a datagram is enough to start orphand, and the one
    # that started it is carried out (its sender's credentials were attached while orphand was
    # not running: PassCredentials=).
    check_socket(c, "/run/orphand/orphand.sock.dgram", lambda f: f[4] == "0002", "datagram")
    c.run("systemctl", "stop", "orphand.service")
    check(c.run("systemctl", "is-active", "orphand.service", check=False).stdout.strip() ==
          "inactive", "orphand.service did not stop")
    c.run("systemd-run", "--unit=orphtest-dgram", "-p", f"Environment=LD_PRELOAD={SHIM}",
          "/bin/bash", "-c", "sleep 1000 & echo $! > /run/orphtest-dgram.pid; wait")
    main = int(show(c, "orphtest-dgram.service", "MainPID"))
    pid_file = f"/proc/{c.init}/root/run/orphtest-dgram.pid"
    c.wait_until(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(),
                 "the sleeper's pid file")
    sleeper = int(open(pid_file).read())
    c.wait_until(lambda: c.run("systemctl", "is-active", "orphand.service",
                               check=False).stdout.strip() == "active",
                 "orphand.service started by a datagram")
    c.wait_until(lambda: (main, sleeper) in bindings(c), "the binding the datagram carried")
    # Its main process killed, the transient unit ends on its own: no stop job (in a container
    # without cgroup2, one can hang PID 1).
    c.run("kill", "-KILL", str(main))
    c.wait_dead([sleeper])
    print("scenario 1: a datagram started orphand.service, and its binding was carried out")


def scenario2_shim_service(c):
    # The main process starts a worker that forks three long sleepers, all under the shim.
    c.sh("cat > /etc/orphtest-worker.sh", input=(
        "bash -c 'sleep 1000 & sleep 1000 & sleep 1000 & "
        "echo $$ $(jobs -p) > /run/orphtest-worker.pids; wait' &\n"
        "wait\nexec sleep infinity\n"))
    c.sh("cat > /etc/systemd/system/orphtest-worker.service && systemctl daemon-reload",
         input=f"""[Service]
Environment=LD_PRELOAD={SHIM}
ExecStart=/bin/bash /etc/orphtest-worker.sh
""")
    c.run("systemctl", "start", "orphtest-worker.service")
    main = int(show(c, "orphtest-worker.service", "MainPID"))
    pids_file = f"/proc/{c.init}/root/run/orphtest-worker.pids"
    c.wait_until(lambda: os.path.exists(pids_file) and
                 len(open(pids_file).read().split()) == 4, "the worker's pid file")
    worker, *sleepers = (int(x) for x in open(pids_file).read().split())
    c.wait_until(lambda: {(worker, s) for s in sleepers} <= bindings(c),
                 "the shim's bindings of the three sleepers")
    check(all(c.alive(p) for p in sleepers), "a sleeper died early")
    t0 = time.monotonic()
    c.run("kill", "-KILL", str(worker))
    took = c.wait_dead(sleepers, since=t0)
    timings["shim: sleepers dead after the worker's SIGKILL"] = took
    check(c.alive(main), "the service's main process died")
    check(c.run("systemctl", "is-active", "orphtest-worker.service").stdout.strip() == "active",
          "the worker service is no longer active")
    def kills():
        return [e for e in journal(c) if e.get("MESSAGE_ID") == MSG_KILL and
                e.get("ORPHAND_PARENT_PID") == str(worker)]
    c.wait_until(lambda: len(kills()) >= 3, "three kill entries in the journal")
    entries = kills()
    check(sorted(int(e["ORPHAND_CHILD_PID"]) for e in entries) == sorted(sleepers),
          f"kill entries name {[e['ORPHAND_CHILD_PID'] for e in entries]}, not {sleepers}")
    for e in entries:
        missing = [f for f in KILL_FIELDS if f not in e]
        check(not missing, f"kill entry lacks {missing}: {e}")
        check(e["ORPHAND_CHILD_COMM"] == "sleep", f"child comm {e['ORPHAND_CHILD_COMM']!r}")
        check(e["ORPHAND_PARENT_COMM"] == "bash", f"parent comm {e['ORPHAND_PARENT_COMM']!r}")
        # Empty where the kernel does not tell orphand (a zombie of another user, not yet
        # reaped: /proc hides its exit code from an orphand without ptrace access).
        check(e["ORPHAND_PARENT_EXIT"] in ("killed by SIGKILL", ""),
              f"parent exit {e['ORPHAND_PARENT_EXIT']!r}")
        check(e["ORPHAND_SIGNAL"] == "SIGTERM", f"signal {e['ORPHAND_SIGNAL']!r}")
        check(e["ORPHAND_REGISTRANT_UID"] == "0", "registrant uid")
        check(e["PRIORITY"] == "5", f"priority {e['PRIORITY']}")
    latencies = [int(e["ORPHAND_LATENCY_USEC"]) for e in entries]
    print(f"scenario 2: 3 sleepers dead {took * 1000:.0f} ms after the worker's SIGKILL "
          f"(orphand's latencies {latencies} us), main process {main} alive, 3 journal "
          f"entries with {', '.join(KILL_FIELDS)}")
    print(f"  e.g. MESSAGE={entries[0]['MESSAGE']!r}")
    c.run("systemctl", "stop", "orphtest-worker.service")


FANOUT = r"""
import ctypes, json, os, select, signal, sys, time
mode, n = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
ulong = ctypes.c_ulong  # prctl's arguments are unsigned longs: an int leaves the upper half unset
libc.prctl(36, ulong(1))  # PR_SET_CHILD_SUBREAPER: the orphans come back to us, to be reaped
r, w = os.pipe()
parent = os.fork()
if parent == 0:
    os.close(r)
    kids = []
    for _ in range(n):
        k = os.fork()
        if k == 0:
            if mode == "pdeathsig":
                if libc.prctl(1, ulong(signal.SIGTERM)) != 0:  # PR_SET_PDEATHSIG
                    os._exit(1)
            os.execv("/bin/sleep", ["sleep", "1000"])
        kids.append(k)
    os.write(w, (" ".join(map(str, kids)) + "\n").encode())
    signal.pause()
    os._exit(0)
os.close(w)
kids = [int(x) for x in os.fdopen(r).readline().split()]
fds = {os.pidfd_open(k): k for k in kids}
# Every child has set up its death signal (or been bound) once it runs sleep.
def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None
while any(comm(k) != "sleep" for k in kids):
    time.sleep(0.01)
pfd = os.pidfd_open(parent)
print(json.dumps({"parent": parent, "children": kids}), flush=True)
sys.stdin.readline()  # the test checks orphand's bindings first
ep = select.epoll()
for fd in fds:
    ep.register(fd, select.EPOLLIN)
ep.register(pfd, select.EPOLLIN)
parent_dead = None
left = set(fds)
t0 = time.monotonic()
signal.pidfd_send_signal(pfd, signal.SIGKILL)
first = None
while left:
    if time.monotonic() - t0 > 20:  # a child that outlived its parent: say which, end it
        stuck = {}
        for fd in left:
            try:
                with open(f"/proc/{fds[fd]}/status") as f:
                    stuck[fds[fd]] = [l.strip() for l in f if l.split(":")[0] in
                                      ("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")]
            except OSError as e:
                stuck[fds[fd]] = str(e)
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        print(json.dumps({"stuck": stuck}), flush=True)
        sys.exit(1)
    for fd, _ in ep.poll(10):
        if fd == pfd and parent_dead is None:
            parent_dead = time.monotonic()
            ep.unregister(pfd)
        if fd in left:
            left.discard(fd)
            ep.unregister(fd)
            first = first or time.monotonic()
last = time.monotonic()
while True:
    try:
        if os.waitpid(-1, 0)[0] <= 0:
            break
    except ChildProcessError:
        break
print(json.dumps({"parent_ms": ((parent_dead or last) - t0) * 1000, "first_ms": (first - t0) * 1000,
                  "last_ms": (last - t0) * 1000}), flush=True)
"""


def fanout_round(c, mode, n):
    """One parent with n children (sleep), SIGKILLed: ms until the first and last child died."""
    env = ["env", f"LD_PRELOAD={SHIM}"] if mode == "orphand" else []
    cmd = ["nsenter", "-t", str(c.init), "-a", "--", "env", "-i", f"PATH={PATH}", *env,
           "python3", "/etc/orphtest-fanout.py", mode, str(n)]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(p.stdout.readline())
        if mode == "orphand":
            c.wait_until(lambda: sum(1 for b in bindings(c) if b[0] == info["parent"]) == n,
                         f"{n} bindings of the fan-out parent", timeout=TIMEOUT * 3)
        p.stdin.write("go\n")
        p.stdin.flush()
        result = json.loads(p.stdout.readline())
        check("stuck" not in result, f"{mode}: children outlived their parent: {result}")
        p.wait(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            pidfd_kill(p.pid)
            p.wait()
    return result


def scenario3_fanout(c):
    c.sh("cat > /etc/orphtest-fanout.py", input=FANOUT)
    n, rounds = 400, int(os.environ.get("ORPHTEST_FANOUT_ROUNDS", "3"))
    results = {"orphand": [], "pdeathsig": []}
    for r in range(rounds):
        for mode in (("orphand", "pdeathsig") if r % 2 == 0 else ("pdeathsig", "orphand")):
            results[mode].append(fanout_round(c, mode, n))
    med = {m: sorted(x["last_ms"] for x in v)[len(v) // 2] for m, v in results.items()}
    first = {m: sorted(x["first_ms"] for x in v)[len(v) // 2] for m, v in results.items()}
    parent = {m: sorted(x["parent_ms"] for x in v)[len(v) // 2] for m, v in results.items()}
    timings["fan-out 400: last child dead, orphand"] = med["orphand"] / 1000
    timings["fan-out 400: last child dead, PR_SET_PDEATHSIG"] = med["pdeathsig"] / 1000
    print(f"scenario 3: fan-out of {n} children, parent SIGKILLed, {rounds} rounds interleaved: "
          f"last child dead after {med['orphand']:.1f} ms with orphand (parent's pidfd readable "
          f"{parent['orphand']:.2f} ms, first child {first['orphand']:.2f} ms) against "
          f"{med['pdeathsig']:.1f} ms with PR_SET_PDEATHSIG (parent {parent['pdeathsig']:.2f} "
          f"ms, first child {first['pdeathsig']:.2f} ms): "
          f"{med['orphand'] / med['pdeathsig']:.2f}x; "
          f"each round: " + ", ".join(f"{m} {[round(x['last_ms'], 1) for x in v]}"
                                       for m, v in results.items()))
    # Every kill was logged, with its own latency.
    def kills():
        return [e for e in journal(c) if e.get("MESSAGE_ID") == MSG_KILL]
    c.wait_until(lambda: len(kills()) >= rounds * n, f"{rounds * n} kill entries",
                 timeout=TIMEOUT * 3)
    lat = sorted(int(e["ORPHAND_LATENCY_USEC"]) for e in kills()[-n:])
    print(f"  orphand's logged latencies of the last round: first {lat[0]} us, median "
          f"{lat[len(lat) // 2]} us, last {lat[-1]} us")


def scenario4_restart(c):
    parent = spawn(c, "orphtest-p3", ["sleep", "1000"])
    child = spawn(c, "orphtest-c3", ["sleep", "1000"])
    c.run("orphanctl", "register", str(parent), str(child))
    old = main_pid(c)
    t0 = time.monotonic()
    c.run("systemctl", "restart", "orphand.service")
    timings["systemctl restart"] = time.monotonic() - t0
    check(main_pid(c) not in (0, old), "orphand did not restart")
    check((parent, child) in bindings(c), "the binding did not survive the restart")
    t0 = time.monotonic()
    c.run("kill", "-KILL", str(parent))
    took = c.wait_dead([child], since=t0)
    timings["restart: child dead after its parent's death"] = took
    # Nothing goes through PID 1's fd store any more.
    check(show(c, "orphand.service", "NFileDescriptorStore") == "0", "fds in the fd store")
    print(f"scenario 4: restart took {timings['systemctl restart'] * 1000:.0f} ms; binding "
          f"restored; child dead {took * 1000:.0f} ms after the parent's SIGKILL")

    # Many bindings, made by the shim in a bash loop as a user would, survive a restart and then
    # a crash, and all die with their parent.
    n = 3000
    c.sh("cat > /etc/orphtest-many.sh", input=(
        f"for i in $(seq {n}); do sleep 1000 & done\n"
        "echo $(jobs -p) > /run/orphtest-many.pids\nexec sleep infinity\n"))
    # KillMode=process: when the parent dies, systemd leaves its children to orphand.
    parent = spawn(c, "orphtest-many", ["/bin/bash", "/etc/orphtest-many.sh"],
                   props=[f"Environment=LD_PRELOAD={SHIM}", "KillMode=process",
                          "TasksMax=infinity"])
    pids_file = f"/proc/{c.init}/root/run/orphtest-many.pids"
    c.wait_until(lambda: os.path.exists(pids_file) and
                 len(open(pids_file).read().split()) == n, f"{n} sleepers", timeout=TIMEOUT * 6)
    children = [int(x) for x in open(pids_file).read().split()]

    def bound():
        return sum(1 for b in bindings(c) if b[0] == parent)
    c.wait_until(lambda: bound() == n, f"{n} bindings", timeout=TIMEOUT * 3)
    log_path = f"/proc/{c.init}/root/run/orphand/state/bindings"
    check(os.path.exists(log_path), "no binding log in /run/orphand/state")
    t0 = time.monotonic()
    c.run("systemctl", "restart", "orphand.service")
    timings[f"restart with {n} bindings"] = time.monotonic() - t0
    check(bound() == n, f"{bound()} of {n} bindings survived the restart")
    old = main_pid(c)
    t0 = time.monotonic()
    c.run("kill", "-KILL", str(old))
    c.wait_until(lambda: main_pid(c) not in (0, old) and
                 show(c, "orphand.service", "ActiveState") == "active", "orphand's restart")
    timings[f"crash with {n} bindings: back after"] = time.monotonic() - t0
    check(bound() == n, f"{bound()} of {n} bindings survived the crash")
    restored = [e for e in journal(c) if "restored" in e.get("MESSAGE", "")]
    check(restored and f"restored {n} bindings" in restored[-1]["MESSAGE"],
          f"no restore entry for {n} bindings: {[e['MESSAGE'] for e in restored[-2:]]}")
    t0 = time.monotonic()
    c.run("systemctl", "kill", "--signal=KILL", "--kill-who=main", "orphtest-many.service")
    took = c.wait_dead(children, since=t0, timeout=TIMEOUT * 3)
    check(show(c, "orphand.service", "NFileDescriptorStore") == "0", "fds in the fd store")
    print(f"scenario 4: {n} shim bindings survived a restart "
          f"({timings[f'restart with {n} bindings'] * 1000:.0f} ms) and a crash (back after "
          f"{timings[f'crash with {n} bindings: back after'] * 1000:.0f} ms); all {n} children "
          f"dead {took * 1000:.0f} ms after their parent's SIGKILL; "
          f"{restored[-1]['MESSAGE']!r}")
    c.run("systemctl", "stop", "orphtest-many.service", check=False)


def scenario5_crash(c):
    c.run("systemctl", "reset-failed", "orphand.service", check=False)
    parent = spawn(c, "orphtest-p4", ["sleep", "1000"])
    child = spawn(c, "orphtest-c4", ["sleep", "1000"])
    # SIGKILLed as soon as the registration is acknowledged: the binding is 0 ms old.
    old = main_pid(c)
    c.sh(f"orphanctl register {parent} {child} && kill -KILL {old}")
    t0 = time.monotonic()
    c.wait_until(lambda: main_pid(c) not in (0, old) and
                 show(c, "orphand.service", "ActiveState") == "active", "orphand's restart")
    timings["crash: back after SIGKILL"] = time.monotonic() - t0
    check((parent, child) in bindings(c), "the 0 ms old binding did not survive the crash")
    t0 = time.monotonic()
    c.run("kill", "-KILL", str(parent))
    took = c.wait_dead([child], since=t0)
    print(f"scenario 5: orphand SIGKILLed right after acknowledging a binding; back "
          f"{timings['crash: back after SIGKILL'] * 1000:.0f} ms later with the binding; child "
          f"dead {took * 1000:.0f} ms after its parent")

    # A parent that dies while orphand is down: its child dies as soon as orphand is back.
    c.sh("mkdir -p /etc/systemd/system/orphand.service.d && cat > "
         "/etc/systemd/system/orphand.service.d/orphtest.conf && systemctl daemon-reload",
         input="[Service]\nRestartSec=2s\n")
    c.run("systemctl", "reset-failed", "orphand.service", check=False)
    parent = spawn(c, "orphtest-p4b", ["sleep", "1000"])
    child = spawn(c, "orphtest-c4b", ["sleep", "1000"])
    c.run("orphanctl", "register", str(parent), str(child))
    old = main_pid(c)
    c.run("kill", "-KILL", str(old))
    c.wait_until(lambda: main_pid(c) == 0, "orphand's death")
    t0 = time.monotonic()
    c.run("kill", "-KILL", str(parent))
    c.wait_dead([parent])  # reaped by the container's systemd while orphand is down
    check(c.alive(child), "the child died while orphand was down")
    c.wait_until(lambda: main_pid(c) != 0, "orphand's delayed restart", timeout=TIMEOUT + 5)
    back = time.monotonic()
    took = c.wait_dead([child])
    timings["down: child dead after orphand came back"] = time.monotonic() - back
    entries = wait_journal(c, lambda e: e.get("MESSAGE_ID") == MSG_ALREADY_DEAD and
                           e.get("ORPHAND_CHILD_PID") == str(child), "the already-dead entry")
    check(entries[0].get("ORPHAND_PARENT_PID") == str(parent), "already-dead entry's parent")
    print(f"scenario 5: parent killed while orphand was down ({time.monotonic() - t0:.1f} s "
          f"restart delay); child dead {took * 1000:.0f} ms after orphand's new main pid "
          f"appeared; entry: {entries[0]['MESSAGE']!r}")
    c.sh("rm -r /etc/systemd/system/orphand.service.d && systemctl daemon-reload")

    # A stop ends every binding: the binding log goes with the runtime directory.
    parent = spawn(c, "orphtest-p4c", ["sleep", "1000"])
    child = spawn(c, "orphtest-c4c", ["sleep", "1000"])
    c.run("orphanctl", "register", str(parent), str(child))
    c.run("systemctl", "stop", "orphand.service")
    check(not os.path.exists(f"/proc/{c.init}/root/run/orphand/state"),
          "/run/orphand/state outlived systemctl stop")
    check(os.path.exists(f"/proc/{c.init}/root/run/orphand/orphand.sock"),
          "systemctl stop orphand.service removed the socket")
    check(bindings(c) == set(), "a binding outlived systemctl stop")  # socket-activates again
    c.run("kill", "-KILL", str(parent))
    time.sleep(0.5)
    check(c.alive(child), "a binding ended by systemctl stop still killed its child")
    c.run("systemctl", "stop", "orphtest-c4c.service", "orphtest-p4c.service", check=False)
    print("scenario 5: systemctl stop removed the binding log and ended the binding; the "
          "socket stayed")


def scenario6_hardened(c):
    pid = main_pid(c)
    status = open(f"/proc/{c.init}/root/proc/{pid}/status").read()
    uid = int(re.search(r"^Uid:\s*(\d+)", status, re.M).group(1))
    capeff = int(re.search(r"^CapEff:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    check(uid != 0, "orphand runs as root")
    check(capeff == 1 << 5, f"orphand's effective capabilities are {capeff:#x}, not CAP_KILL")
    # Another user (nobody) registers its own processes; orphand kills that user's child.
    parent = spawn(c, "orphtest-p5", ["sleep", "1000"], uid="nobody")
    child = spawn(c, "orphtest-c5", ["sleep", "1000"], uid="nobody")
    c.run("runuser", "-u", "nobody", "--", "orphanctl", "register", str(parent), str(child))
    check((parent, child) in bindings(c), "nobody's binding is not listed")
    # Unregistering by pid (no pidfds) works for another user's peer too.
    other = spawn(c, "orphtest-c5b", ["sleep", "1000"], uid="nobody")
    c.run("runuser", "-u", "nobody", "--", "orphanctl", "register", str(parent), str(other))
    c.run("runuser", "-u", "nobody", "--", "orphanctl", "unregister", str(parent), str(other))
    check((parent, other) not in bindings(c), "nobody could not unregister its binding")
    # nobody may not bind root's processes.
    r = c.run("runuser", "-u", "nobody", "--", "orphanctl", "register", str(parent),
              str(main_pid(c)), check=False)
    check(r.returncode != 0, "nobody bound a process it does not own")
    t0 = time.monotonic()
    c.run("kill", "-KILL", str(parent))
    took = c.wait_dead([child], since=t0)
    check(c.alive(other), "the unregistered child was killed")
    c.run("systemctl", "stop", "orphtest-c5b.service")
    out = c.run("systemd-analyze", "security", "--no-pager", "orphand.service").stdout
    m = re.search(r"Overall exposure level for orphand\.service: (\d+\.\d+)", out)
    check(m, f"no exposure level in: {out[-500:]}")
    timings["security exposure"] = float(m.group(1))
    print(f"scenario 6: orphand runs as uid {uid} with CapEff {capeff:#x}; nobody's child "
          f"dead {took * 1000:.0f} ms after its parent; systemd-analyze security "
          f"orphand.service: {m.group(1)}")
    check(float(m.group(1)) <= 1.0, f"exposure {m.group(1)} is above 1.0")


def scenario7_user_instance(c):
    c.sh(f"grep -q '^{USER}:' /etc/passwd || {{ "
         f"echo '{USER}:x:{UID}:{UID}::/tmp:/bin/sh' >> /etc/passwd && "
         f"echo '{USER}:x:{UID}:' >> /etc/group && "
         f"{{ [ ! -e /etc/shadow ] || echo '{USER}:!*:19000::::::' >> /etc/shadow; }}; }}")
    c.sh(f"mkdir -p /etc/systemd/user && cp {STAGE_IN}{USER_UNIT_DIR}/orphand.socket "
         f"{STAGE_IN}{USER_UNIT_DIR}/orphand.service /etc/systemd/user/")
    c.run("systemctl", "start", f"user@{UID}.service")
    c.run("systemctl", "--user", "enable", "--now", "orphand.socket", user=USER)
    state = c.run("systemctl", "--user", "is-active", "orphand.service", user=USER,
                  check=False).stdout.strip()
    check(state == "inactive", f"the user's orphand.service started before a client: {state}")
    parent = spawn(c, "orphtest-p6", ["sleep", "1000"], user=USER)
    child = spawn(c, "orphtest-c6", ["sleep", "1000"], user=USER)
    t0 = time.monotonic()
    c.run("orphanctl", "register", str(parent), str(child), user=USER)
    timings["user: first registration (socket activation)"] = time.monotonic() - t0
    check(c.run("systemctl", "--user", "is-active", "orphand.service",
                user=USER).stdout.strip() == "active", "the user's orphand did not start")
    upid = int(c.run("systemctl", "--user", "show", "-P", "MainPID", "orphand.service",
                     user=USER).stdout)
    status = open(f"/proc/{c.init}/root/proc/{upid}/status").read()
    check(re.search(r"^Uid:\s*(\d+)", status, re.M).group(1) == str(UID),
          "the user's orphand does not run as the user")
    check(re.search(r"^CapEff:\s*0+$", status, re.M), "the user's orphand has capabilities")
    check((parent, child) in bindings(c, user=USER), "the user's binding is not listed")
    c.run("systemctl", "--user", "restart", "orphand.service", user=USER)
    check(os.path.exists(f"/proc/{c.init}/root/run/user/{UID}/orphand/state/bindings"),
          "the user's binding log is not in $XDG_RUNTIME_DIR/orphand/state")
    check((parent, child) in bindings(c, user=USER),
          "the user's binding did not survive a restart of the user's orphand")
    t0 = time.monotonic()
    c.run("kill", "-KILL", str(parent), user=USER)
    took = c.wait_dead([child], since=t0)
    print(f"scenario 7: user {USER}'s orphand (uid {UID}, no capabilities) socket-activated "
          f"in {timings['user: first registration (socket activation)'] * 1000:.0f} ms; "
          f"its binding survived a restart; "
          f"child dead {took * 1000:.0f} ms after its parent")


CGROUP_SCRIPT = r"""
# The main process of a service with Delegate=yes: it moves itself into a leaf of its delegated
# cgroup (a cgroup with controllers may hold processes only in its leaves), starts a parent
# (sleep) there, and a child with two descendants in a sibling cgroup, job; then binds the child
# to the parent with scope cgroup.
mnt=$(findmnt -n -t cgroup2 -o TARGET | head -n 1)
if [ -z "$mnt" ]; then
  # No cgroup2 here (a host with the legacy hierarchy only): the scope must be refused.
  sleep 1000 & parent=$!
  sleep 1000 & child=$!
  out=$(@ORPHANCTL@ register --scope=cgroup "$parent" "$child" 2>&1)
  echo "nocgroup2 $? $parent $child $out" > /run/orphtest-cgroup.info
  exec sleep infinity
fi
cg=$mnt$(sed -n 's/^0:://p' /proc/self/cgroup)
mkdir "$cg/main" "$cg/job"
echo $$ > "$cg/main/cgroup.procs"
sleep 1000 &
parent=$!
( echo $BASHPID > "$cg/job/cgroup.procs"
  exec bash -c 'sleep 1000 & bash -c "sleep 1000 & wait" & wait' ) &
child=$!
until [ "$(wc -l < "$cg/job/cgroup.procs")" -ge 4 ]; do sleep 0.01; done
out=$(@ORPHANCTL@ register --scope=cgroup "$parent" "$child" 2>&1)
echo "$? $parent $child $cg $out" > /run/orphtest-cgroup.info
exec sleep infinity
"""


def scenario8_cgroup_scope(c):
    c.sh("cat > /etc/orphtest-cgroup.sh",
         input=CGROUP_SCRIPT.replace("@ORPHANCTL@", f"{BINDIR}/orphanctl"))
    c.sh("cat > /etc/systemd/system/orphtest-cgroup.service && systemctl daemon-reload",
         input="[Service]\nDelegate=yes\nExecStart=/bin/bash /etc/orphtest-cgroup.sh\n")
    t0 = time.monotonic()
    c.run("systemctl", "start", "orphtest-cgroup.service")
    main = int(show(c, "orphtest-cgroup.service", "MainPID"))
    info_file = f"/proc/{c.init}/root/run/orphtest-cgroup.info"
    c.wait_until(lambda: os.path.exists(info_file) and open(info_file).read().endswith("\n"),
                 "the cgroup service's registration")
    info = open(info_file).read()
    if info.startswith("nocgroup2 "):
        _, status, parent, child, out = info.split(maxsplit=4)
        check(status != "0" and "not supported" in out,
              f"without cgroup2, orphanctl register --scope=cgroup gave {status}: {out!r}")
        check((int(parent), int(child)) not in bindings(c), "a cgroup binding without cgroup2")
        # The service is left to the container's power-off: in a fresh container with the legacy
        # hierarchy only, `systemctl stop` of this Delegate=yes unit once left the container's
        # systemd unresponsive for minutes. Its two sleepers are ended here, by pid.
        c.run("kill", "-KILL", parent, child)
        print(f"scenario 8: NOT CHECKED: this container has no cgroup2 file system (the host "
              f"mounts only the legacy hierarchy); scope cgroup was refused: {out.strip()!r}")
        return
    status, parent, child, cg, *out = info.split(maxsplit=4)
    parent, child = int(parent), int(child)
    check(status == "0", f"orphanctl register --scope=cgroup failed ({status}): {out}")
    job = f"{cg}/job"

    def procs(path):
        return [int(x) for x in c.run("cat", f"{path}/cgroup.procs").stdout.split()]

    def populated(path):
        return "populated 1" in c.run("cat", f"{path}/cgroup.events").stdout
    members = procs(job)
    check(len(members) == 4 and child in members, f"job holds {members}, child {child}")
    check(sorted(procs(f"{cg}/main")) == sorted([main, parent]),
          f"main holds {procs(f'{cg}/main')}, not the main process and the parent")
    listed = [line for line in c.run("orphanctl", "list").stdout.splitlines()
              if f"[{child}]" in line]
    check(len(listed) == 1 and re.search(r"\scgroup\s", listed[0]),
          f"orphanctl list does not show the binding with scope cgroup: {listed}")
    t1 = time.monotonic()
    c.run("kill", "-KILL", str(parent))
    took = c.wait_dead(members, since=t1)
    c.wait_until(lambda: not populated(job), f"{job} to be empty")
    check(procs(job) == [], f"{job} still holds {procs(job)}")
    check(c.alive(main), "the service's main process died")
    check(c.run("systemctl", "is-active", "orphtest-cgroup.service").stdout.strip() == "active",
          "the cgroup service is no longer active")
    entries = wait_journal(c, lambda e: e.get("MESSAGE_ID") == MSG_KILL and
                           e.get("ORPHAND_CHILD_PID") == str(child), "the cgroup kill entry")
    e = entries[-1]
    check(e.get("ORPHAND_SCOPE") == "cgroup" and e.get("ORPHAND_SIGNALLED") == "4" and
          e.get("ORPHAND_PARENT_PID") == str(parent),
          f"kill entry: ORPHAND_SCOPE {e.get('ORPHAND_SCOPE')!r}, ORPHAND_SIGNALLED "
          f"{e.get('ORPHAND_SIGNALLED')!r}, ORPHAND_PARENT_PID {e.get('ORPHAND_PARENT_PID')!r}")
    c.run("systemctl", "stop", "orphtest-cgroup.service")
    print(f"scenario 8: Delegate=yes service bound its job cgroup ({job}, 4 processes) to a parent "
          f"in {cg}/main; all 4 dead {took * 1000:.0f} ms after the parent's SIGKILL, the cgroup "
          f"empty, the main process alive ({time.monotonic() - t0:.2f} s in all); "
          f"MESSAGE={e['MESSAGE']!r}")


def check_catalog(stage):
    """The installed catalog parses and explains every MESSAGE_ID."""
    r = subprocess.run(["journalctl", f"--root={stage}", "--update-catalog"],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"journalctl --update-catalog: {r.stderr}")
    out = subprocess.run(["journalctl", f"--root={stage}", "--list-catalog"],
                         capture_output=True, text=True).stdout
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "daemon", "log.hpp")) as f:
        ids = re.findall(r'"([0-9a-f]{32})"', f.read())
    check(ids, "no MESSAGE_IDs in daemon/log.hpp")
    for i in ids:
        check(i in out, f"MESSAGE_ID {i} is not in the installed catalog")
    print(f"catalog: {len(ids)} MESSAGE_IDs explained")


def main():
    if os.geteuid() != 0:
        skip("needs root to boot a container")
    for tool in ("systemd-nspawn", "nsenter", "systemctl", "journalctl"):
        if not shutil.which(tool):
            skip(f"{tool} is not installed (.ci/build installs it)")
    if not os.path.isdir("/sys/fs/cgroup"):
        skip("no cgroup file system")
    work = tempfile.mkdtemp(prefix="orphand-system-")
    stage = os.path.join(work, "stage")
    container = None
    try:
        r = subprocess.run(["meson", "install", "-C", BUILD, "--destdir", stage,
                            "--no-rebuild", "--quiet"], capture_output=True, text=True)
        check(r.returncode == 0, f"meson install failed: {r.stdout}{r.stderr}")
        for path in (SBINDIR + "/orphand", BINDIR + "/orphanctl", SHIM,
                     SYSTEM_UNIT_DIR + "/orphand.socket", USER_UNIT_DIR + "/orphand.socket",
                     CATALOG_DIR + "/orphand.catalog"):
            check(os.path.exists(stage + path), f"{path} is not installed")
        check_catalog(stage)
        container = Container(work, PATH, users={USER: UID}, nspawn_args=[
            "--bind-ro=/etc/pam.d", "--bind-ro=/etc/security",
            f"--bind-ro={stage}:{STAGE_IN}",
            f"--overlay-ro={PREFIX}:{stage}{PREFIX}:{PREFIX}"])
        container.start()
        timings["boot"] = container.boot_seconds
        scenarios = (scenario1_socket_activation, scenario2_shim_service,
                     scenario3_fanout, scenario4_restart, scenario5_crash,
                     scenario6_hardened, scenario7_user_instance,
                     scenario8_cgroup_scope)
        # ORPHTEST_SCENARIOS=1,3 runs only those (while working on one); CI runs them all.
        only = os.environ.get("ORPHTEST_SCENARIOS")
        if only:
            scenarios = [scenarios[int(i) - 1] for i in only.split(",")]
        for scenario in scenarios:
            t0 = time.monotonic()
            scenario(container)
            print(f"  ({scenario.__name__}: {time.monotonic() - t0:.2f} s)")
        print("timings: " + "; ".join(
            f"{k} {v:.3f}" + ("" if k == "security exposure" else " s")
            for k, v in timings.items()))
    except Exception as e:  # noqa: BLE001 - any failure: report it with orphand's journal
        report_failure(e, container)
        return 1
    finally:
        if container:
            container.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
