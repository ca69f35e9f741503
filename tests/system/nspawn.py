# SPDX-License-Identifier: MIT
"""This machine's root booted in systemd-nspawn, with systemd as PID 1, for the system tests.

The container is a process tree the test starts in a cgroup of its own; Container.stop powers it
off with SIGTERM to systemd-nspawn and, should that fail, kills by pidfd whatever is left in that
cgroup, so nothing outlives the test.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback

from orphtest import TIMEOUT, check, fail

BOOT_TIMEOUT = 120


def pidfd_kill(pid):
    """SIGKILL a process this test started, through a pidfd (no pid reuse race)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)


class Container:
    """An ephemeral boot of this machine's root: systemd as PID 1, /etc and /var fresh.

    The root is a tmpfs with the host's /usr read-only (--volatile=yes; nspawn refuses
    --volatile=overlay for the host's root, so a test that needs the host's /etc or a writable
    /usr overlays them with --overlay=). `nspawn_args` adds binds and overlays, `init_args`
    arguments of the container's systemd (e.g. systemd.unit=); commands run with PATH `path`;
    `users` maps the user names `run(user=)` takes to their uids.
    """

    def __init__(self, workdir, path, nspawn_args=(), users=None, init_args=()):
        self.name = f"orphtest{os.getpid()}"
        self.path = path
        self.nspawn_args = list(nspawn_args)
        self.init_args = list(init_args)
        self.users = dict(users or {})
        self.boot_seconds = None
        self.log_path = os.path.join(workdir, "nspawn.log")
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            self.cgroups = [f"/sys/fs/cgroup/{self.name}"]
        else:
            self.cgroups = [f"/sys/fs/cgroup/{h}/{self.name}" for h in ("systemd", "unified")
                            if os.path.isdir(f"/sys/fs/cgroup/{h}")]
        self.proc = None
        self.init = None

    def start(self):
        for cg in self.cgroups:
            os.makedirs(cg, exist_ok=True)
        cgroups = self.cgroups

        def enter_cgroup():
            # Before exec: nspawn creates its payload cgroup below its own, never in the root.
            for cg in cgroups:
                with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))

        argv = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
                "--private-network", "--directory=/", "--volatile=yes",
                f"--machine={self.name}", *self.nspawn_args,
                "--", "systemd.firstboot=off", *self.init_args]
        self.log = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, preexec_fn=enter_cgroup)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while self.init is None:
            if self.proc.poll() is not None:
                fail(f"systemd-nspawn exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                fail(f"the container's systemd did not appear: {self.log_tail()}")
            self.init = self.find_init()
            time.sleep(0.05)
        # systemctl fails with "Failed to connect to bus" until PID 1 listens here.
        private = f"/proc/{self.init}/root/run/systemd/private"
        while not os.path.exists(private):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                fail(f"the container's systemd never listened: {self.log_tail()}")
            time.sleep(0.05)
        r = self.run("systemctl", "is-system-running", "--wait", check=False,
                     timeout=BOOT_TIMEOUT)
        state = r.stdout.strip()
        if state not in ("running", "degraded"):
            fail(f"container boot ended {state!r}: {self.log_tail()}")
        self.boot_seconds = time.monotonic() - t0
        print(f"container booted ({state}) in {self.boot_seconds:.2f} s")

    def find_init(self):
        # The container's PID 1: a child of nspawn whose innermost pid is 1.
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as f:
                    status = f.read()
            except OSError:
                continue
            ppid = re.search(r"^PPid:\s*(\d+)", status, re.M)
            nspid = re.search(r"^NSpid:\s*(.*)$", status, re.M)
            if (ppid and int(ppid.group(1)) == self.proc.pid and nspid
                    and nspid.group(1).split()[-1] == "1" and len(nspid.group(1).split()) > 1):
                return int(entry)
        return None

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def run(self, *args, user=None, check=True, input=None, timeout=60):
        """Runs a command inside the container (as root, or as `user` with its runtime dir)."""
        cmd = ["nsenter", "-t", str(self.init), "-a", "--", "env", "-i", f"PATH={self.path}",
               "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=cat"]
        if user:
            cmd += ["runuser", "-u", user, "--", "env",
                    f"XDG_RUNTIME_DIR=/run/user/{self.users[user]}"]
        cmd += list(args)
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            fail(f"{' '.join(args)} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def sh(self, script, **kw):
        return self.run("sh", "-c", script, **kw)

    def state(self, pid):
        """A container pid's state letter, read through the container's /proc; None if gone."""
        try:
            with open(f"/proc/{self.init}/root/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return None

    def alive(self, pid):
        return self.state(pid) not in (None, "Z", "X")

    def wait_dead(self, pids, timeout=TIMEOUT, since=None):
        """Waits until every pid is dead; the seconds since `since` (or since the call)."""
        t0 = time.monotonic() if since is None else since
        while any(self.alive(p) for p in pids):
            if time.monotonic() - t0 > timeout:
                fail(f"still alive after {timeout} s: {[p for p in pids if self.alive(p)]}")
            time.sleep(0.005)
        return time.monotonic() - t0

    def wait_until(self, pred, what, timeout=TIMEOUT):
        t0 = time.monotonic()
        while not pred():
            if time.monotonic() - t0 > timeout:
                fail(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)
        return time.monotonic() - t0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)  # orderly poweroff of the container
            try:
                self.proc.wait(timeout=60)
                print(f"container powered off in {time.monotonic() - t0:.2f} s")
            except subprocess.TimeoutExpired:
                print("container did not power off in 60 s: killing it", file=sys.stderr)
        # Whatever is still in our cgroups was started by this test (nspawn and the container).
        for _ in range(50):
            pids = self.cgroup_pids()
            if not pids:
                break
            for pid in pids:
                pidfd_kill(pid)
            time.sleep(0.1)
        if self.proc:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.log.close()
        for cg in self.cgroups:
            for root, dirs, _ in os.walk(cg, topdown=False):
                try:
                    os.rmdir(root)
                except OSError:
                    pass
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}", ignore_errors=True)

    def cgroup_pids(self):
        pids = set()
        for cg in self.cgroups:
            for root, _, files in os.walk(cg):
                if "cgroup.procs" in files:
                    try:
                        with open(os.path.join(root, "cgroup.procs")) as f:
                            pids.update(int(x) for x in f.read().split())
                    except OSError:
                        pass
        pids.discard(os.getpid())
        return pids


# --- helpers over a container with orphand installed -----------------------------------------

def spawn(c, unit, argv, user=None, uid=None, props=()):
    """Starts argv as a transient service of the container's (or a user's) manager; its pid."""
    opts = ["--user"] if user else []
    if uid is not None:
        opts.append(f"--uid={uid}")
    opts += [f"--property={p}" for p in props]
    c.run("systemd-run", *opts, f"--unit={unit}", "--collect", "--quiet", "--", *argv,
          user=user)
    pid = c.run("systemctl", *(["--user"] if user else []), "show", "-P", "MainPID", unit,
                user=user).stdout.strip()
    check(pid.isdigit() and int(pid) > 0, f"{unit} has no main pid ({pid!r})")
    return int(pid)


def bindings(c, user=None):
    """The (parent, child) pairs `orphanctl list` shows."""
    out = c.run("orphanctl", "list", user=user).stdout
    return set((int(p), int(ch)) for p, ch in re.findall(r"\[(\d+)\]\s+\S*\[(\d+)\]", out))


def show(c, unit, prop):
    return c.run("systemctl", "show", "-P", prop, unit).stdout.strip()


def journal(c, unit="orphand"):
    out = c.run("journalctl", "-u", unit, "-o", "json", "--no-pager").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def main_pid(c):
    return int(show(c, "orphand.service", "MainPID"))


def listeners(c, path):
    """Inodes of the listening sockets bound to `path` in the container's network namespace."""
    # /proc/net/unix: flags 00010000 (__SO_ACCEPTCON) mark a listening socket.
    with open(f"/proc/{c.init}/net/unix") as f:
        return [fields[6] for fields in (line.split() for line in f)
                if len(fields) == 8 and fields[7] == path and fields[3] == "00010000"]


def report_failure(e, container, units=("orphand",)):
    """Prints why a test failed, then the tail of the units' journal in the container."""
    if isinstance(e, AssertionError):
        print(f"FAIL: {e}", file=sys.stderr)
    else:
        traceback.print_exception(e)
    if container and container.init:
        r = container.run("journalctl", *[a for u in units for a in ("-u", u)], "--no-pager",
                          "-n", "40", check=False)
        print(f"orphand's journal:\n{r.stdout}", file=sys.stderr)
