# SPDX-License-Identifier: MIT
"""The binding log: bindings and pending escalations survive a crash of orphand whatever their
age; a process whose identity does not match its record is never signalled; damaged, foreign
and missing files, and a full file system, cost durability at most, never enforcement."""

import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import itest as it
import orphtest as ot

RECORD = 96
BINDING, ESCALATION = 0x444E4942, 0x4C494B53


def checksum(rec):
    """FNV-1a over a record, skipping state, checksum, the identities and the parent's name
    (daemon/binding_log.cpp)."""
    h = 2166136261
    for i in range(24, RECORD):
        if 64 <= i < 80:
            continue
        h = ((h ^ rec[i]) * 16777619) & 0xFFFFFFFF
    return h


def records(path):
    """(offset, state, child_pid, raw bytes) of every non-free record."""
    data = open(path, "rb").read()
    out = []
    for off in range(RECORD, len(data) - RECORD + 1, RECORD):
        state = struct.unpack_from("<I", data, off)[0]
        if state:
            child = struct.unpack_from("<i", data, off + 36)[0]
            out.append((off, state, child, bytearray(data[off:off + RECORD])))
    return out


def rewrite(path, off, rec, fix_checksum=True):
    if fix_checksum:
        struct.pack_into("<I", rec, 4, checksum(rec))
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(rec)


def crash(d):
    """SIGKILL the daemon (a crash), keeping its log for the checks."""
    signal.pidfd_send_signal(d.pidfd, signal.SIGKILL)
    d.proc.wait()
    log = d.read_log()
    d.stop()
    return log


def expect_enforced(d, what):
    """A new binding of `d` kills its child when its parent dies."""
    parent, parent_fd = it.sleeper("dur-parent")
    child, child_fd = it.sleeper("dur-child")
    register_all(d, parent, [child])
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    it.expect_dead(d, child, child_fd, what)


def register_all(d, parent, children, **kw):
    with d.client() as c:
        for ch in children:
            r = c.register(parent.pid, ch.pid, **kw)
            ot.check(r["error"] == 0, f"REGISTER {parent.pid} {ch.pid}: {r}")


def test_crash_at_once(state):
    """Bindings acknowledged and orphand SIGKILLed at once: every child still dies with its
    parent, killed by the next orphand."""
    d = ot.Daemon("--state-dir", state).start()
    parent, parent_fd = it.sleeper("dur-parent")
    kids = [it.sleeper(f"dur-child{i}") for i in range(20)]
    register_all(d, parent, [k for k, _ in kids])
    crash(d)
    with ot.Daemon("--state-dir", state) as d2:
        ot.check(d2.wait_log("restored 20 bindings"), f"no restore entry:\n{d2.read_log()}")
        got = {b["child"] for b in d2.bindings() if b["parent"] == parent.pid}
        ot.check(got == {k.pid for k, _ in kids}, f"restored {len(got)} of 20 bindings")
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        for k, kfd in kids:
            it.expect_dead(d2, k, kfd, "a child bound 0 ms before the crash", sig=signal.SIGTERM)
        line = it.wait_kill_line(d2, kids[0][0].pid)
        ot.check(f"parent dur-parent[{parent.pid}] died" in line, f"kill line: {line!r}")
    print("crash right after the acknowledgements: 20 of 20 bindings restored and enforced")


def test_parent_died_while_down(state):
    d = ot.Daemon("--state-dir", state).start()
    parent, parent_fd = it.sleeper("dur-parent")
    child, child_fd = it.sleeper("dur-child")
    register_all(d, parent, [child])
    # The parent's name goes into its records once the loop is idle after the registration.
    d.wait_until(lambda: open(os.path.join(state, "bindings"), "rb").read().find(b"dur-parent")
                 > 0, "the parent's name in the binding log")
    crash(d)
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    parent.wait()
    it.expect_alive(child, child_fd, "the child, while orphand is down")
    with ot.Daemon("--state-dir", state) as d2:
        it.expect_dead(d2, child, child_fd, "the child of a parent that died while orphand was "
                       "down", sig=signal.SIGTERM)
        line = it.wait_kill_line(d2, child.pid)
        ot.check(f"parent dur-parent[{parent.pid}] died while orphand was not running" in line,
                 f"kill line: {line!r}")
    print(f"parent died while orphand was down: {line!r}")


def test_identity(state):
    """A record whose child identity does not match (as after pid reuse) signals nothing; one
    whose parent identity does not match counts the parent as dead."""
    d = ot.Daemon("--state-dir", state).start()
    p1, p1_fd = it.sleeper("dur-parent1")
    c1, c1_fd = it.sleeper("dur-child1")
    p2, p2_fd = it.sleeper("dur-parent2")
    c2, c2_fd = it.sleeper("dur-child2")
    register_all(d, p1, [c1])
    register_all(d, p2, [c2])
    crash(d)
    path = os.path.join(state, "bindings")
    for off, _, child, rec in records(path):
        if child == c1.pid:  # another process now: the child's identity differs
            struct.pack_into("<Q", rec, 16, struct.unpack_from("<Q", rec, 16)[0] + 1)
        else:  # the parent's identity differs: the registered parent is gone
            struct.pack_into("<Q", rec, 8, struct.unpack_from("<Q", rec, 8)[0] + 1)
        rewrite(path, off, rec)
    with ot.Daemon("--state-dir", state) as d2:
        it.expect_dead(d2, c2, c2_fd, "the child whose parent's identity changed",
                       sig=signal.SIGTERM)
        signal.pidfd_send_signal(p1_fd, signal.SIGKILL)
        p1.wait()
        time.sleep(0.3)
        it.expect_alive(c1, c1_fd, "a process whose identity is not the registered child's")
        ot.check(not any(b["child"] == c1.pid for b in d2.bindings()),
                 "a record with a foreign child identity was restored")
        ot.check("1 ended meanwhile" in d2.read_log(), f"restore counts:\n{d2.read_log()}")
    print("identity: a mismatched child was not signalled; a mismatched parent counted as dead")


def test_unidentified(state):
    """Records written before their processes were identified (a crash right after the
    registration) take the process at a pid only if it started before the registration."""
    d = ot.Daemon("--state-dir", state).start()
    p1, p1_fd = it.sleeper("dur-parent1")
    c1, c1_fd = it.sleeper("dur-child1")
    p2, p2_fd = it.sleeper("dur-parent2")
    c2, c2_fd = it.sleeper("dur-child2")
    p3, p3_fd = it.sleeper("dur-parent3")
    c3, c3_fd = it.sleeper("dur-child3")
    for p, c in ((p1, c1), (p2, c2), (p3, c3)):
        register_all(d, p, [c])
    crash(d)
    path = os.path.join(state, "bindings")
    for off, _, child, rec in records(path):
        struct.pack_into("<QQ", rec, 8, 0, 0)  # neither process identified yet
        if child == c2.pid:  # p2 started after the registration: not the registered parent
            struct.pack_into("<QQ", rec, 8, 0, os.fstat(c2_fd).st_ino)
            struct.pack_into("<Q", rec, 80, 1)
        if child == c3.pid:  # c3 started after the registration: not the registered child
            struct.pack_into("<QQ", rec, 8, os.fstat(p3_fd).st_ino, 0)
            struct.pack_into("<Q", rec, 80, 1)
        rewrite(path, off, rec)
    with ot.Daemon("--state-dir", state) as d2:
        it.expect_dead(d2, c2, c2_fd, "the child of a parent that started after the registration",
                       sig=signal.SIGTERM)
        it.wait_bound(d2, p1.pid, c1.pid)
        ot.check(not any(b["child"] == c3.pid for b in d2.bindings()),
                 "a child that started after its registration was restored")
        signal.pidfd_send_signal(p1_fd, signal.SIGKILL)
        it.expect_dead(d2, c1, c1_fd, "the child of a parent that started before the "
                       "registration", sig=signal.SIGTERM)
        signal.pidfd_send_signal(p3_fd, signal.SIGKILL)
        p3.wait()
        time.sleep(0.3)
        it.expect_alive(c3, c3_fd, "a process that started after the registration of its pid")
    for p, fd in ((p2, p2_fd), (c3, c3_fd)):
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        p.wait()
    print("unidentified records: processes taken by start time against the registration time")


def test_damaged_and_torn(state):
    d = ot.Daemon("--state-dir", state).start()
    parent, parent_fd = it.sleeper("dur-parent")
    kids = [it.sleeper(f"dur-child{i}") for i in range(3)]
    register_all(d, parent, [k for k, _ in kids])
    crash(d)
    path = os.path.join(state, "bindings")
    recs = records(path)
    ot.check(len(recs) == 3, f"{len(recs)} records for 3 bindings")
    # One record damaged (its checksum no longer matches), one torn before its state was written.
    off, _, damaged, rec = recs[0]
    rec[40] ^= 0xFF
    rewrite(path, off, rec, fix_checksum=False)
    off, _, torn, rec = recs[1]
    struct.pack_into("<I", rec, 0, 0)
    rewrite(path, off, rec)
    with ot.Daemon("--state-dir", state) as d2:
        ot.check(d2.wait_log("restored 1 bindings"), f"restore:\n{d2.read_log()}")
        ot.check("1 damaged records dropped" in d2.read_log(), f"restore:\n{d2.read_log()}")
        got = {b["child"] for b in d2.bindings()}
        ot.check(got == {recs[2][2]}, f"restored {got}, expected only {recs[2][2]}")
    for k, kfd in kids:
        signal.pidfd_send_signal(kfd, signal.SIGKILL)
        k.wait()
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    parent.wait()
    print("a damaged record and a torn one were dropped; the third binding was restored")


def test_foreign_files(state):
    path = os.path.join(state, "bindings")
    # A file of another format version.
    d = ot.Daemon("--state-dir", state).start()
    crash(d)
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", 99))
    with ot.Daemon("--state-dir", state) as d2:
        ot.check(d2.wait_log("written by another version of orphand"), d2.read_log())
        expect_enforced(d2, "a child bound after a foreign file was replaced")
    # Not a binding log at all, and a directory that does not exist or cannot be written.
    with open(path, "wb") as f:
        f.write(b"not a binding log\n" * 100)
    with ot.Daemon("--state-dir", state) as d2:
        ot.check(d2.wait_log("is not a binding log of orphand"), d2.read_log())
    missing = os.path.join(state, "missing")
    with ot.Daemon("--state-dir", missing) as d3:
        ot.check(d3.wait_log("cannot use the state directory"), d3.read_log())
        expect_enforced(d3, "a child bound without a state directory")
    # Two daemons on one directory would overwrite each other's records: the second has none.
    with ot.Daemon("--state-dir", state) as first:
        with ot.Daemon("--state-dir", state) as second:
            ot.check(second.wait_log("another orphand is using it"), second.read_log())
        ot.check(first.alive(), "the first daemon died")
    # A file another user could have written is not believed: records carry authority.
    os.chown(path, 65534, 65534)
    with ot.Daemon("--state-dir", state) as d5:
        ot.check(d5.wait_log("not to orphand alone"), d5.read_log())
    os.chown(path, 0, 0)
    os.chmod(path, 0o622)
    with ot.Daemon("--state-dir", state) as d6:
        ot.check(d6.wait_log("not to orphand alone"), d6.read_log())
    os.unlink(path)
    ro = os.path.join(state, "ro")
    os.mkdir(ro)
    os.chmod(ro, 0o500)
    # As root the mode does not stop orphand: a read-only mount does.
    subprocess.run(["mount", "--bind", ro, ro], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", ro], check=True)
    try:
        with ot.Daemon("--state-dir", ro) as d4:
            ot.check(d4.wait_log("cannot use the state directory"), d4.read_log())
            expect_enforced(d4, "a child bound with a read-only state directory")
    finally:
        subprocess.run(["umount", ro], check=False)
    print("another version's file, a foreign file, one in use by another orphand or writable "
          "by others, a missing and a read-only directory: orphand ran and killed without "
          "durability")


def test_full_file_system(state):
    """tmpfs full: bindings past what the file can hold are enforced, not recorded."""
    fs = os.path.join(state, "tiny")
    os.mkdir(fs)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "orphand-test", fs], check=True)
    try:
        with open(os.path.join(fs, "filler"), "wb") as f:
            f.write(b"\0" * 56 * 1024)  # leaves 72 KiB: the first 64 KiB of the log
        n = 700  # the first 64 KiB of the file hold 681 records
        d = ot.Daemon("--state-dir", fs).start()
        parent, parent_fd = it.sleeper("dur-parent")
        kids = [it.sleeper("dur-child") for _ in range(n)]
        register_all(d, parent, [k for k, _ in kids])
        ot.check(d.wait_log("will not survive a restart or a crash of orphand: the file cannot "
                            "grow"), d.read_log())
        crash(d)
        with ot.Daemon("--state-dir", fs) as d2:
            ot.check(d2.wait_log("restored 681 bindings"), d2.read_log())
            signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
            alive = [k for k, kfd in kids[:681] if not ot.wait_pidfd(kfd)]
            ot.check(not alive, f"{len(alive)} recorded children survived their parent")
        # The rest were not recorded, so the crash ended them: orphand's only loss.
        for k, kfd in kids:
            signal.pidfd_send_signal(kfd, signal.SIGKILL)
            k.wait()
    finally:
        subprocess.run(["umount", fs], check=False)
    print(f"full tmpfs: {n} bindings enforced, 681 recorded and restored after a crash")


def test_escalation(state):
    """A SIGKILL escalation pending at the crash still comes, at its deadline."""
    d = ot.Daemon("--state-dir", state, "--grace", "1.5").start()
    parent, parent_fd = it.sleeper("dur-parent")
    child, child_fd = it.sleeper("dur-stubborn", ignore=(signal.SIGTERM,))
    register_all(d, parent, [child])
    killed_at = time.monotonic()
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    it.wait_kill_line(d, child.pid)
    crash(d)
    with ot.Daemon("--state-dir", state, "--grace", "never") as d2:
        ot.check(d2.wait_log("1 escalations re-armed"), d2.read_log())
        it.expect_dead(d2, child, child_fd, "the child whose escalation was pending at the crash",
                       sig=signal.SIGKILL)
        took = time.monotonic() - killed_at
        ot.check(took >= 1.4, f"SIGKILL after {took:.2f} s, before the grace period")
        ot.check(d2.wait_log(f"killed dur-stubborn[{child.pid}] with SIGKILL"), d2.read_log())
    print(f"escalation pending at the crash: SIGKILL {took:.2f} s after the parent's death")


def test_clean_stop(state):
    """orphand never deletes its log: a SIGTERM and a start restore (a service manager removes
    the directory on a stop that is not a restart)."""
    d = ot.Daemon("--state-dir", state).start()
    parent, parent_fd = it.sleeper("dur-parent")
    child, child_fd = it.sleeper("dur-child")
    register_all(d, parent, [child])
    d.stop()
    with ot.Daemon("--state-dir", state) as d2:
        it.wait_bound(d2, parent.pid, child.pid)
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d2, child, child_fd, "the child after a stop and a start")
    print("SIGTERM and start: the binding was restored")


def test_stop_logs_every_kill(state):
    """Kills are described after they are sent; a stop right after a fan-out still logs each."""
    n = 200
    d = ot.Daemon("--state-dir", state).start()
    parent, parent_fd = it.sleeper("dur-parent")
    kids = [it.sleeper("dur-child") for _ in range(n)]
    register_all(d, parent, [k for k, _ in kids])
    signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
    for k, kfd in kids:  # the last kill is out once its child is dead
        ot.check(ot.wait_pidfd(kfd), f"child {k.pid} survived its parent")
    d.stop()
    lines = [l for l in d.final_log.splitlines() if "killed dur-child[" in l]
    ot.check(len(lines) == n, f"{len(lines)} of {n} kills logged before the stop")
    print(f"a stop right after a fan-out of {n}: {len(lines)} kills logged")


def test_old_fd_store(state):
    """Entries an older orphand left in systemd's fd store are removed from it, with a warning,
    so that systemd stops passing them (their names once outgrew the environment)."""
    d = ot.Daemon()
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(d.socket)
    lsock.listen(16)
    notify_path = os.path.join(d.dir, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    holder, holder_fd = it.sleeper("dur-stored")
    # Moved to 3 and 4 from numbers clear of them.
    a, b = (fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (lsock.fileno(), holder_fd))
    script = f'exec 3<&{a} 4<&{b}; exec {a}<&- {b}<&-; export LISTEN_PID=$$; exec "$0" "$@"'
    env = dict(d.env, LISTEN_FDS="2",
               LISTEN_FDNAMES="orphand:b-left-by-an-older-orphand", NOTIFY_SOCKET=notify_path)
    d.log = open(d.log_path, "ab")
    d.proc, d.pidfd = ot.spawn(["bash", "-c", script, ot.DAEMON, "--log-target=stderr",
                                "--no-state"], stdout=d.log, stderr=d.log, env=env,
                               pass_fds=(a, b))
    try:
        ot.check(d.wait_log("dropped 1 fds (1 entries) of systemd's fd store left by an older "
                            "orphand"), d.read_log())
        notify.settimeout(ot.TIMEOUT)
        messages = []
        while not any("FDSTOREREMOVE=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        removal = next(m for m in messages if "FDSTOREREMOVE=1" in m)
        ot.check("FDNAME=b-left-by-an-older-orphand" in removal, f"removal: {removal!r}")
        ot.check(d.ping(), "orphand does not answer on the passed socket")
    finally:
        d.stop()
        for fd in (a, b):
            os.close(fd)
        lsock.close()
        notify.close()
    print(f"an older orphand's fd store entry: removed ({removal.strip()!r})")


def scopes(d):
    """(parent, child) -> scope of every binding, from a version 2 LIST."""
    with d.client(version=2) as c:
        return {(b["parent"], b["child"]): b["scope"] for b in c.list()}


def test_scope_kept(state):
    """A binding's scope survives a restart and a crash, and is what the kill then reaches."""
    d = ot.Daemon("--state-dir", state).start()
    parent, parent_fd = it.sleeper("dur-parent")
    child, child_fd = it.sleeper("dur-child")
    with d.client() as c:
        r = c.call(parent.pid, child.pid, ot.REGISTER, scope=2)  # tree
        ot.check(r["error"] == 0, f"REGISTER with scope tree: {r}")
    d.stop()
    d = ot.Daemon("--state-dir", state).start()
    ot.check(scopes(d).get((parent.pid, child.pid)) == 2,
             f"after a restart: {scopes(d)}\n{d.read_log()}")
    crash(d)
    with ot.Daemon("--state-dir", state) as d2:
        ot.check(scopes(d2).get((parent.pid, child.pid)) == 2,
                 f"after a crash: {scopes(d2)}\n{d2.read_log()}")
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        it.expect_dead(d2, child, child_fd, "the child of a restored tree binding")
        line = it.wait_kill_line(d2, child.pid)
        ot.check("ORPHAND_SCOPE" not in line and f"dur-child[{child.pid}]" in line,
                 f"kill line: {line!r}")
    print("scope tree kept across a restart and a crash, and enforced")


def main():
    for test in (test_crash_at_once, test_parent_died_while_down, test_identity,
                 test_unidentified, test_damaged_and_torn, test_foreign_files, test_full_file_system,
                 test_escalation, test_clean_stop, test_stop_logs_every_kill,
                 test_old_fd_store, test_scope_kept):
        state = tempfile.mkdtemp(prefix="orphand-state-")
        try:
            test(state)
        finally:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    ot.run(main)
