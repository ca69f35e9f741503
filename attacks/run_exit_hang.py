#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run as root: nobody pauses the daemon's reading (closer-fill), then queues one more datagram
whose fd is a lingering TCP socket (and one stream connection with another in the backlog);
then orphand is sent SIGTERM and the time it takes to exit is measured.

  nice -n 19 python3 attacks/run_exit_hang.py [build-dir [dgram|stream|dgram,stream]]
"""
import os, shutil, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_closer_fill import DAEMON, HERE, NOBODY, as_user, ping_latency


WHICH = sys.argv[2] if len(sys.argv) > 2 else "dgram"


def main():
    d = tempfile.mkdtemp(prefix="atk-")
    os.chmod(d, 0o755)
    sock = os.path.join(d, "orphand.sock")
    log = open(os.path.join(d, "log"), "wb")
    daemon = subprocess.Popen([DAEMON, "--socket", sock, "--log-target", "stderr"],
                              stdout=log, stderr=log)
    attacker = None
    try:
        for _ in range(200):
            if ping_latency(sock, 0.1) is not None:
                break
            time.sleep(0.02)
        shutil.copy(os.path.join(HERE, "dgram_attacker.py"), os.path.join(d, "a.py"))
        os.chmod(os.path.join(d, "a.py"), 0o644)
        attacker = subprocess.Popen(as_user(NOBODY, ["/usr/bin/python3", os.path.join(d, "a.py"),
                                                      sock + ".dgram", "exit-hang", "60", "3", WHICH]),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        print("attacker:", attacker.stdout.readline().strip(), attacker.stdout.readline().strip())
        time.sleep(0.3)
        t0 = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(15)
            print(f"daemon exited {time.monotonic() - t0:.3f} s after SIGTERM")
        except subprocess.TimeoutExpired:
            with open(f"/proc/{daemon.pid}/stack") as f:
                stack = " < ".join(l.split()[1].split("+")[0] for l in f if l.strip())
            print(f"daemon still running 15 s after SIGTERM; main thread in: {stack[:200]}")
        with open(os.path.join(d, "log"), "rb") as f:
            print(f.read().decode(errors="replace")[-600:])
    finally:
        if attacker:
            attacker.stdin.close(); attacker.wait()
        t0 = time.monotonic()
        try:
            daemon.wait(10)
            print(f"daemon exited {time.monotonic() - t0:.3f} s after the attacker left")
        except subprocess.TimeoutExpired:
            daemon.kill(); daemon.wait()
        log.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
