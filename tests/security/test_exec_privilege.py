# SPDX-License-Identifier: MIT
"""A client that connects unprivileged and then execs a set-user-ID-root program stays
unprivileged: privilege is not read from whatever its pid runs by the time it asks.

The set-user-ID program is a copy of sleep(1) made by this test in its own directory. The same
user holding CAP_KILL (ambient) from the start is privileged, so the check still admits it.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile

import orphtest as ot
import sectest as st
from sectest import NOBODY, NOT_PERMITTED, OK

EPERM = -1


def suid_dir():
    """A directory for the set-user-ID program, on a file system that honours the bit: a
    container's /tmp is often mounted nosuid, where the program would run unprivileged."""
    for base in (tempfile.gettempdir(), "/var/tmp"):
        if not os.statvfs(base).f_flag & os.ST_NOSUID:
            return tempfile.mkdtemp(prefix="orphand-setuid-", dir=base)
    ot.fail("no file system for a set-user-ID program: /tmp and /var/tmp are mounted nosuid")


def main():
    workdir = suid_dir()
    try:
        os.chmod(workdir, 0o755)
        program = os.path.join(workdir, "setuid-sleep")
        shutil.copy(shutil.which("sleep"), program)
        os.chown(program, 0, 0)
        os.chmod(program, 0o4755)
        with st.daemon() as d:
            victim, victim_fd = ot.sleeper()
            parent, parent_fd = st.user_sleeper(NOBODY)
            witness, witness_fd = st.user_sleeper(NOBODY)
            res = st.hostile(d, [{"v1": [parent.pid, witness.pid, ot.REGISTER]}])
            st.expect(res[0], 0, OK, "nobody binds its witness")
            attacker, _ = ot.spawn(st.as_user(NOBODY, st.script(
                "exec_attack.py", d.socket, program, str(parent.pid), str(victim.pid))),
                stdout=subprocess.PIPE, text=True)
            line = attacker.stdout.readline()
            ot.check(line, "the attack script printed nothing")
            r = json.loads(line)
            ot.check("exception" not in r, f"attack did not run: {r}")
            with open(f"/proc/{attacker.pid}/status") as f:
                uids = next(x for x in f if x.startswith("Uid:")).split()[1:4]
            ot.check(uids == [str(NOBODY), "0", "0"], f"the connector is not set-user-ID: {uids}")
            st.expect(r, EPERM, NOT_PERMITTED,
                      "REGISTER of a root process once the connector runs set-user-ID root")
            # The same user holding CAP_KILL from the start is privileged (and may unbind).
            capable = ["--inh-caps=+kill", "--ambient-caps=+kill"]
            res = st.hostile(d, [{"v1": [parent.pid, victim.pid, ot.REGISTER]},
                                 {"v1": [parent.pid, victim.pid, ot.UNREGISTER]}],
                             uid=None, wrap=st.as_user(NOBODY, capable))
            st.expect(res[0], 0, OK, "nobody with CAP_KILL binds a root process")
            st.expect(res[1], 0, OK, "and removes the binding")
            signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
            ot.check(ot.wait_pidfd(witness_fd), "witness not killed")
            ot.check(st.alive(victim_fd), "root's process was killed")
            print("  root's process alive after the parent died")
    finally:
        shutil.rmtree(workdir)


ot.run(main)
