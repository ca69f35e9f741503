# SPDX-License-Identifier: MIT
"""As nobody, every way to get a root or another user's process killed: each refused, none dies.

The victims are a root sleep and a sleep of another uid. nobody's own sleeps serve as parents
and as "witness" children: a witness bound to the same parent dies when the daemon handles that
parent's death, so once it is gone the daemon has decided the victims' fate too.
"""

import os
import signal
import subprocess

import orphtest as ot
import sectest as st
from sectest import (FOREIGN_PIDNS, NOBODY, NOT_BOUND, NOT_PERMITTED, OK, OTHER,
                     PIDFD_MISMATCH, PROTECTED_TARGET, SAME_PROCESS)

REG, UNREG = ot.REGISTER, ot.UNREGISTER
EPERM, EINVAL, EXDEV = -1, -22, -18


def dead_pid():
    """The pid of a nobody process that has exited and been reaped."""
    p = subprocess.Popen(st.as_user(NOBODY, ["true"]))
    p.wait()
    return p.pid


def main():
    with st.daemon() as d:
        # A root binding made before the attacks must still be enforced after them.
        guard_parent, guard_parent_fd, guard_child, guard_child_fd = st.root_binding(d)
        fds_before = st.settled_fds(d)

        victim, victim_fd = ot.sleeper()                # root's
        other, other_fd = st.user_sleeper(OTHER)         # another user's
        parent, parent_fd = st.user_sleeper(NOBODY)      # nobody's parent
        witness, witness_fd = st.user_sleeper(NOBODY)    # nobody's own child
        mine, mine_fd = st.user_sleeper(NOBODY)          # nobody's, for pidfd mismatch
        gone = dead_pid()
        # None in a pid namespace of its own (a container): no kernel thread is visible there,
        # nor kthreadd as pid 2. The rule itself is unit-tested (unit-pidfd).
        kthread = st.kernel_thread()
        P, V, W = parent.pid, victim.pid, other.pid

        print("attacks as nobody (uid 65534):")
        ops = [
            {"v1": [P, V, REG]},                                      # 0 raw record, root's
            {"v1": [P, W, REG]},                                      # 1 raw record, other's
            {"v1": [P, V, REG], "fds": [f"pidfd:{V}"]},              # 2 passed pidfd
            {"v1": [P, V, REG], "fds": [f"pidfd:{V}", f"pidfd:{P}"]},
            {"v1": [P, W, REG], "fds": [f"pidfd:{W}", f"pidfd:{P}"]},
            {"v1": [P, mine.pid, REG], "fds": [f"pidfd:{V}"]},       # 5 pidfd of V, pid of mine
            {"v1": [gone, V, REG]},                                   # 6 dead parent
            {"v1": [gone, W, REG]},
            {"v1": [gone, V, REG], "fds": [f"pidfd:{V}", "reaped-pidfd"]},
            {"v1": [0x7FFFFFFF, V, REG]},                             # 9 never-existing parent
            {"v1": [V, V, REG]},                                      # 10 parent == victim
            {"v1": [V, V, REG], "fds": [f"pidfd:{V}", f"pidfd:{V}"]},
            {"v1": [W, W, REG]},
            {"v1": [P, 1, REG]},                                      # 13 protected targets
            {"v1": [P, d.pid, REG]},
            {"v1": [P, 1, REG], "fds": ["pidfd:1"]},
            {"v1": [guard_parent.pid, guard_child.pid, UNREG]},       # 16 remove root's binding
            {"v1": [P, witness.pid, REG]},                            # 17 its own: accepted
            {"v1": [V, witness.pid, REG]},                            # 18 victim as a parent: ok
            {"v1": [P, witness.pid, UNREG]},
            {"v1": [P, witness.pid, REG]},
        ]
        if kthread is not None:
            ops += [{"v1": [P, 2, REG]}, {"v1": [P, kthread, REG]}]  # 21 kernel threads
        res = st.hostile(d, ops)
        st.expect(res[0], EPERM, NOT_PERMITTED, "raw record naming a root process")
        st.expect(res[1], EPERM, NOT_PERMITTED, "raw record naming another user's process")
        st.expect(res[2], EPERM, NOT_PERMITTED, "passed pidfd of a root process")
        st.expect(res[3], EPERM, NOT_PERMITTED, "passed pidfds of a root process and the parent")
        st.expect(res[4], EPERM, NOT_PERMITTED, "passed pidfds of another user's process")
        st.expect(res[5], EINVAL, PIDFD_MISMATCH, "root's pidfd passed for nobody's pid")
        st.expect(res[6], EPERM, NOT_PERMITTED, "dead parent, root child")
        st.expect(res[7], EPERM, NOT_PERMITTED, "dead parent, another user's child")
        st.expect(res[8], EPERM, NOT_PERMITTED, "reaped parent pidfd, root child pidfd")
        st.expect(res[9], EPERM, NOT_PERMITTED, "never-existing parent, root child")
        st.expect(res[10], EINVAL, SAME_PROCESS, "parent is the root victim itself")
        st.expect(res[11], EINVAL, SAME_PROCESS, "parent is the victim itself, by pidfds")
        st.expect(res[12], EINVAL, SAME_PROCESS, "parent is another user's victim itself")
        st.expect(res[13], EPERM, PROTECTED_TARGET, "pid 1")
        st.expect(res[14], EPERM, PROTECTED_TARGET, "orphand itself")
        st.expect(res[15], EPERM, PROTECTED_TARGET, "pid 1 by pidfd")
        # Answered as if there were no such binding: LIST hides it too (orphand(8), SECURITY).
        st.expect(res[16], 0, NOT_BOUND, "unregistering root's binding")
        st.expect(res[17], 0, OK, "nobody binding its own child")
        st.expect(res[18], 0, OK, "nobody watching a root process as a parent")
        st.expect(res[19], 0, OK, "nobody unregistering its own binding")
        st.expect(res[20], 0, OK, "nobody binding its own child again")
        if kthread is not None:
            st.expect(res[21], EPERM, PROTECTED_TARGET, "pid 2 (kthreadd)")
            st.expect(res[22], EPERM, PROTECTED_TARGET, f"kernel thread {kthread}")
        else:
            print("  kernel threads NOT CHECKED: none is visible in this pid namespace (nor "
                  "kthreadd as pid 2), so no registration can name one here; the rule is "
                  "checked by unit-pidfd on crafted /proc/PID/stat lines")

        # Legacy records get no reply: the outcome is the binding list.
        st.hostile(d, [{"legacy": [P, V, REG]}, {"legacy": [P, W, REG]},
                       {"legacy": [P, V, REG], "fds": [f"pidfd:{V}"]},
                       {"legacy": [gone, V, REG]}, {"legacy": [V, V, REG]},
                       {"legacy": [guard_parent.pid, guard_child.pid, UNREG]}])
        binds = {(b["parent"], b["child"]) for b in d.bindings()}
        ot.check(binds == {(guard_parent.pid, guard_child.pid), (P, witness.pid),
                           (V, witness.pid)}, f"unexpected bindings after attacks: {binds}")
        print("  legacy records naming root's or another user's process: nothing bound")

        # A user namespace gives nobody every capability, but not in orphand's namespace.
        res = st.hostile(d, [{"v1": [P, V, REG]}, {"v1": [P, V, REG], "fds": [f"pidfd:{V}"]}],
                         wrap=["unshare", "--user", "--map-root-user"])
        st.expect(res[0], EPERM, NOT_PERMITTED, "root in its own user namespace, raw record")
        st.expect(res[1], EPERM, NOT_PERMITTED, "root in its own user namespace, pidfd")

        # Another pid namespace: raw pids are refused; pidfds are judged like anyone's.
        vfd = os.pidfd_open(V)
        try:
            os.set_inheritable(vfd, True)
            ns = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount",
                  "--mount-proc"]
            res = st.hostile(d, [{"getpid": True}, {"v1": [P, V, REG]},
                                 {"v1": [1, V, REG], "fds": [f"inherit:{vfd}"]}],
                             wrap=ns, pass_fds=(vfd,))
            st.expect(res[1], EXDEV, FOREIGN_PIDNS, "other pid namespace, raw pids")
            st.expect(res[2], EPERM, NOT_PERMITTED, "other pid namespace, root's pidfd")
            # Root too must pass pidfds from another pid namespace.
            res = st.hostile(d, [{"v1": [P, V, REG]}], uid=None,
                             wrap=["unshare", "--pid", "--fork"])
            st.expect(res[0], EXDEV, FOREIGN_PIDNS, "root in another pid namespace, raw pids")
        finally:
            os.close(vfd)

        # nobody's parent dies: the daemon acts on it (the witness goes) and only on nobody's
        # own process.
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        ot.check(ot.wait_pidfd(witness_fd), "nobody's witness not killed")
        ot.check(st.alive(victim_fd), "root's process was killed")
        ot.check(st.alive(other_fd), "another user's process was killed")
        ot.check(st.alive(mine_fd), "an unbound nobody process was killed")
        ot.check(st.alive(guard_child_fd), "root's bound child killed early")
        ot.check(d.ping(), "daemon does not answer PING")
        print("  after the parent died: root's and the other user's processes alive")

        # Watching a root process as a parent works, and kills only nobody's child.
        witness2, witness2_fd = st.user_sleeper(NOBODY)
        st.expect(st.hostile(d, [{"v1": [V, witness2.pid, REG]}])[0], 0, OK,
                  "nobody watching root's process again")
        signal.pidfd_send_signal(victim_fd, signal.SIGKILL)
        ot.check(ot.wait_pidfd(witness2_fd), "witness bound to root's process not killed")

        ot.reap(victim)
        ot.reap(witness)
        ot.reap(parent)
        ot.reap(witness2)
        # Nothing leaked: the daemon holds the fds it held before the attacks.
        d.wait_until(lambda: st.settled_fds(d) == fds_before, f"daemon fds back to {fds_before}")
        print(f"  daemon fds: {fds_before} before the attacks, {st.settled_fds(d)} after")

        # The root binding made before the attacks still works.
        signal.pidfd_send_signal(guard_parent_fd, signal.SIGKILL)
        ot.check(ot.wait_pidfd(guard_child_fd), "root's binding not enforced after the attacks")
        ot.check(d.alive(), "daemon died")


ot.run(main)
