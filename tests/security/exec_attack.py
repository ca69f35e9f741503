# SPDX-License-Identifier: MIT
"""Connect as an unprivileged user, then exec a set-user-ID-root program: does the daemon judge
the connection by the program the connecting process runs now?

Usage: exec_attack.py SOCKET SETUID_PROGRAM PARENT CHILD. The process connects (so SO_PEERCRED
records its uid and pid), forks, and execs SETUID_PROGRAM (which then runs with euid 0 and every
capability under the same pid). The forked copy keeps the connection and, once the exec is
done, sends REGISTER(PARENT, CHILD); it prints the reply as JSON.
"""

import json
import os
import sys
import time

import orphand  # copied beside this script: sectest.shared_dir()


def euid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[2])
    return None


def main():
    path, program, parent, child = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    conn = orphand.Connection(path, 10, version=1)
    connector = os.getpid()
    if os.fork() != 0:
        os.execv(program, [program, "600"])
    deadline = time.monotonic() + 10
    while euid_of(connector) != 0:
        if time.monotonic() > deadline:
            print(json.dumps({"exception": "the set-user-ID program did not run"}), flush=True)
            os._exit(1)
        time.sleep(0.01)
    conn.send_request(orphand.Action.REGISTER, parent, child)
    r = conn.recv_reply()
    print(json.dumps({"error": r.error, "reason": r.reason, "connector": connector}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
