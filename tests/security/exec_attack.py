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
import socket
import struct
import sys
import time

from orphtest import recv_exact  # copied beside this script: sectest.shared_dir()

REGISTER, HELLO = 1, 4
HELLO_MAGIC = 0x4850524F


def euid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[2])
    return None


def main():
    path, program, parent, child = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(struct.pack("=III", HELLO_MAGIC, 1, HELLO))
    recv_exact(s, 32)
    connector = os.getpid()
    if os.fork() != 0:
        os.execv(program, [program, "600"])
    deadline = time.monotonic() + 10
    while euid_of(connector) != 0:
        if time.monotonic() > deadline:
            print(json.dumps({"exception": "the set-user-ID program did not run"}), flush=True)
            os._exit(1)
        time.sleep(0.01)
    s.sendall(struct.pack("=IIIIIiII", parent, child, REGISTER, 1, 0, 0, 0, 0))
    _, _, error, reason, _ = struct.unpack("=IIiII", recv_exact(s, 32)[:20])
    print(json.dumps({"error": error, "reason": reason, "connector": connector}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
