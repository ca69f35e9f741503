# SPDX-License-Identifier: MIT
"""PID reuse, in a private pid namespace where the test chooses the next pid (ns_last_pid).

(a) A registered child exits and is reaped, an unrelated process gets its pid, then the parent
dies: the newcomer survives. (b) The parent dies and is reaped, an unrelated process gets its pid:
the original parent's children are still killed and nothing is bound to the newcomer; a
registration naming that pid afterwards binds the newcomer, not the dead parent. Each case runs
once normally and once with the daemon stopped (SIGSTOP) across the reuse, so that it sees the
new process before the old one's exit.
"""

import os
import signal
import subprocess
import sys

import orphtest as ot

MARK = "ORPHAND_TEST_PIDNS"


def spawn_at(pid, argv):
    """Start argv with exactly this pid (the namespace is ours; retried if something raced)."""
    for _ in range(20):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        p, fd = ot.spawn(argv)
        if p.pid == pid:
            return p, fd
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        p.wait()
    ot.fail(f"could not start a process with pid {pid}")


def kill_and_reap(p, fd):
    signal.pidfd_send_signal(fd, signal.SIGKILL)
    p.wait()


def pause(d, stopped):
    if stopped:
        signal.pidfd_send_signal(d.pidfd, signal.SIGSTOP)


def resume(d, stopped):
    if stopped:
        signal.pidfd_send_signal(d.pidfd, signal.SIGCONT)


def case_a(d, stopped):
    parent, parent_fd = ot.sleeper()
    child, child_fd = ot.sleeper()
    witness, witness_fd = ot.sleeper()
    with d.client() as c:
        ot.check(c.register(parent.pid, child.pid)["error"] == 0, "register child")
        ot.check(c.register(parent.pid, witness.pid)["error"] == 0, "register witness")
    old = child.pid
    pause(d, stopped)
    kill_and_reap(child, child_fd)
    newcomer, newcomer_fd = spawn_at(old, ["sleep", "600"])
    kill_and_reap(parent, parent_fd)
    resume(d, stopped)
    ot.check(ot.wait_pidfd(witness_fd), "witness not killed: parent's death not handled")
    ot.check(not ot.pidfd_dead(newcomer_fd),
             f"the unrelated process on the child's old pid {old} was killed")
    ot.check(all(b["child"] != old for b in d.bindings()), "the newcomer is bound")
    print(f"  (a){' daemon stopped:' if stopped else ''} child's pid {old} reused; "
          "parent died; newcomer alive")
    witness.wait()
    kill_and_reap(newcomer, newcomer_fd)


def case_b(d, stopped, register_during):
    parent, parent_fd = ot.sleeper()
    kids = [ot.sleeper() for _ in range(2)]
    extra, extra_fd = ot.sleeper()
    with d.client() as c:
        for k, _ in kids:
            ot.check(c.register(parent.pid, k.pid)["error"] == 0, "register child")
    old = parent.pid
    pending = d.client() if register_during else None
    pause(d, stopped)
    kill_and_reap(parent, parent_fd)
    newcomer, newcomer_fd = spawn_at(old, ["sleep", "600"])
    if pending:
        # Queued while the daemon may be stopped: names the old pid, now the newcomer's.
        pending.seq += 1
        pending.sock.sendall(ot.request(old, extra.pid, ot.REGISTER, seq=pending.seq))
    resume(d, stopped)
    for k, fd in kids:
        ot.check(ot.wait_pidfd(fd), f"child {k.pid} of the dead parent {old} not killed")
        k.wait()
    ot.check(not ot.pidfd_dead(newcomer_fd), "the newcomer on the parent's pid was killed")
    if pending:
        r = ot.recv_reply(pending.sock)
        pending.sock.close()
        ot.check(r["error"] == 0 and r["reason"] == ot.Reason.OK,
                 f"registration on the reused pid: {r}")
    bindings = {(b["parent"], b["child"]) for b in d.bindings()}
    want = {(old, extra.pid)} if register_during else set()
    ot.check(bindings == want, f"bindings after the reuse: {bindings}, expected {want}")
    ot.check(not ot.pidfd_dead(extra_fd), "an unbound process was killed")
    print(f"  (b){' daemon stopped:' if stopped else ''} parent's pid {old} reused; its "
          f"children killed, newcomer alive{', later binding is the newcomer' if pending else ''}")
    if register_during:
        # The binding is the newcomer's: its death kills the extra child.
        kill_and_reap(newcomer, newcomer_fd)
        ot.check(ot.wait_pidfd(extra_fd), "binding made on the reused pid not enforced")
        extra.wait()
    else:
        kill_and_reap(newcomer, newcomer_fd)
        kill_and_reap(extra, extra_fd)


def main():
    with ot.Daemon() as d:
        for stopped in (False, True):
            case_a(d, stopped)
        for stopped in (False, True):
            for register_during in (False, True):
                case_b(d, stopped, register_during)
        ot.check(d.alive() and d.ping(), "daemon not serving")


if __name__ == "__main__":
    if os.environ.get(MARK) != "1":
        if os.geteuid() != 0:
            ot.skip("needs root for a private pid namespace and ns_last_pid")
        env = dict(os.environ, **{MARK: "1"})
        r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                            os.path.abspath(__file__)], env=env)
        sys.exit(r.returncode)
    ot.run(main)
