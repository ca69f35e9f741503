# SPDX-License-Identifier: MIT
"""A child that becomes another user's after nobody bound it is not killed, nor escalated to.

Case 1: the child changes uid before its parent dies: no signal at all, and the refusal is
logged. Case 2: the child is nobody's when the parent dies (SIGTERM is allowed and sent), changes
uid in its SIGTERM handler, and must then not receive the SIGKILL escalation. Case 3: a registrant
with CAP_KILL is privileged for its own children too, and kills one whose uid changed.
"""

import errno
import re
import signal
import subprocess
import time

import orphtest as ot
import sectest as st
from sectest import NOBODY, OK, OTHER


def flipper(mode):
    p, fd = ot.spawn(st.script("uidflip.py", mode), stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, text=True)
    ot.check(p.stdout.readline().strip() == "ready", "uidflip did not start")
    return p, fd


def uids(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:4]]
    return None


def main():
    with st.daemon() as d:
        # Case 1: the uid changes between registration and the parent's death.
        child, child_fd = flipper("stdin")
        ot.check(uids(child.pid) == [NOBODY, NOBODY, 0], f"flipper uids {uids(child.pid)}")
        parent, parent_fd = st.user_sleeper(NOBODY)
        witness, witness_fd = st.user_sleeper(NOBODY)
        res = st.hostile(d, [{"v1": [parent.pid, child.pid, ot.REGISTER]},
                             {"v1": [parent.pid, witness.pid, ot.REGISTER]}])
        st.expect(res[0], 0, OK, "nobody binds a child that is nobody's now")
        st.expect(res[1], 0, OK, "nobody binds its witness")
        child.stdin.write("go\n")
        child.stdin.flush()
        ot.check(child.stdout.readline().strip() == "changed", "flipper did not change uid")
        ot.check(uids(child.pid) == [OTHER] * 3, f"flipper uids {uids(child.pid)}")
        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        ot.check(ot.wait_pidfd(witness_fd), "witness not killed: parent's death not handled")
        ot.check(st.alive(child_fd), "the child that became another user's was killed")
        ot.check(d.wait_log(f"not killing python3[{child.pid}]"),
                 f"refusal not logged:\n{d.read_log()}")
        print(f"  uid changed before the parent died: child {child.pid} alive, refusal logged")

        # Case 2: the uid changes after SIGTERM, before the SIGKILL escalation.
        child2, child2_fd = flipper("sigterm")
        parent2, parent2_fd = st.user_sleeper(NOBODY)
        # The grace period leaves the child's SIGTERM handler time to run on a busy machine.
        res = st.hostile(d, [{"v1": [parent2.pid, child2.pid, ot.REGISTER],
                              "flags": ot.FLAG_GRACE, "grace_ms": 1000}])
        st.expect(res[0], 0, OK, "nobody binds a child with a 1 s grace period")
        signal.pidfd_send_signal(parent2_fd, signal.SIGKILL)
        ot.check(child2.stdout.readline().strip() == "changed", "child2 got no SIGTERM")
        # A generous wait past the grace period: SIGKILL would have arrived by now.
        time.sleep(3.0)
        ot.check(st.alive(child2_fd), "SIGKILL escalation reached a child of another user")
        ot.check(uids(child2.pid) == [OTHER] * 3, f"child2 uids {uids(child2.pid)}")
        ot.check(d.wait_log(f"[{child2.pid}]: its uid") and
                 re.search(rf"not escalating to SIGKILL for \S+\[{child2.pid}\]", d.read_log()),
                 f"the withheld escalation is not logged:\n{d.read_log()}")
        print(f"  uid changed during the grace period: child {child2.pid} not escalated to")

        # Case 3: the same as case 1, but nobody holds CAP_KILL when it binds its own child. It
        # is privileged for every binding it makes, its own children's too: the kill goes ahead
        # after the child's uid changed, as kill(2) would let it.
        child3, child3_fd = flipper("stdin")
        parent3, parent3_fd = st.user_sleeper(NOBODY)
        capable = ["--inh-caps=+kill", "--ambient-caps=+kill"]
        res = st.hostile(d, [{"v1": [parent3.pid, child3.pid, ot.REGISTER]}], uid=None,
                         wrap=st.as_user(NOBODY, capable))
        st.expect(res[0], 0, OK, "nobody with CAP_KILL binds a child that is nobody's now")
        child3.stdin.write("go\n")
        child3.stdin.flush()
        ot.check(child3.stdout.readline().strip() == "changed", "flipper did not change uid")
        signal.pidfd_send_signal(parent3_fd, signal.SIGKILL)
        ot.check(ot.wait_pidfd(child3_fd),
                 f"a privileged registrant's own child was not killed after its uid changed:\n"
                 f"{d.read_log()}")
        ot.check(f"not killing python3[{child3.pid}]" not in d.read_log(),
                 "a privileged registrant's kill was refused")
        print(f"  nobody with CAP_KILL: its own child {child3.pid} killed after its uid changed")

        # Case 4: privilege is judged when it decides a request, not fixed by one refused for
        # another reason. Nobody holds CAP_KILL, asks to bind pid 1 (protected, refused), drops
        # every capability, then asks to bind root's process on the same connection.
        root_child, root_child_fd = ot.sleeper()
        parent4, parent4_fd = st.user_sleeper(NOBODY)
        res = st.hostile(d, [{"getpid": True},
                             {"v1": [parent4.pid, 1, ot.REGISTER]},
                             {"dropcaps": True},
                             {"v1": [parent4.pid, root_child.pid, ot.REGISTER]}], uid=None,
                         wrap=st.as_user(NOBODY, capable))
        ot.check(res[2] == {"dropped": True}, f"the client could not drop its capabilities: {res}")
        st.expect(res[1], -errno.EPERM, st.PROTECTED_TARGET, "nobody with CAP_KILL binds pid 1")
        st.expect(res[3], -errno.EPERM, st.NOT_PERMITTED,
                  "the same connection, its CAP_KILL dropped, binds root's process")
        ot.check(st.alive(root_child_fd), "root's process was killed")
        print("  a refused request does not fix the connection's privilege")
        ot.check(d.ping(), "daemon does not answer PING")


ot.run(main)
