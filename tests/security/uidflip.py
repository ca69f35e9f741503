# SPDX-License-Identifier: MIT
"""A process that belongs to nobody when registered and to another user afterwards.

Started as root, it keeps saved uid 0 while its real and effective uids are nobody's, so nobody
may bind it. Then, on a line on stdin ("stdin" mode) or on SIGTERM ("sigterm" mode, which also
survives the SIGTERM), it regains root through the saved uid and becomes wholly uid OTHER.
"""

import os
import signal
import sys

NOBODY, OTHER = 65534, 4242


def become_other(*_):
    os.setresuid(0, 0, 0)
    os.setresgid(OTHER, OTHER, OTHER)
    os.setresuid(OTHER, OTHER, OTHER)
    print("changed", flush=True)


def main():
    mode = sys.argv[1]
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, 0)
    os.setresuid(NOBODY, NOBODY, 0)
    if mode == "sigterm":
        signal.signal(signal.SIGTERM, become_other)
    print("ready", flush=True)
    if mode == "stdin":
        sys.stdin.readline()
        become_other()
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
