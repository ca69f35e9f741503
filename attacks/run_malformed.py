#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run as root: nobody sends a catalogue of odd datagrams (attacker mode "malformed") to an
orphand from BUILD (an ASan build is the point); checks it survives, its fds, the victim alive.

  nice -n 19 python3 attacks/run_malformed.py [build-dir]
"""
import os, shutil, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_closer_fill import DAEMON, HERE, NOBODY, as_user, ping_latency, sleeper, fd_count


def main():
    d = tempfile.mkdtemp(prefix="atk-")
    os.chmod(d, 0o755)
    sock = os.path.join(d, "orphand.sock")
    log = open(os.path.join(d, "log"), "wb")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    daemon = subprocess.Popen([DAEMON, "--socket", sock, "--log-target", "stderr"],
                              stdout=log, stderr=log, env=env)
    victim, vfd = sleeper()
    attacker = None
    try:
        for _ in range(500):
            if ping_latency(sock, 0.1) is not None:
                break
            time.sleep(0.02)
        fds0 = fd_count(daemon.pid)
        shutil.copy(os.path.join(HERE, "dgram_attacker.py"), os.path.join(d, "a.py"))
        os.chmod(os.path.join(d, "a.py"), 0o644)
        attacker = subprocess.Popen(as_user(NOBODY, ["/usr/bin/python3", os.path.join(d, "a.py"),
                                                      sock + ".dgram", "malformed",
                                                      str(victim.pid)]),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        out = []
        while True:
            line = attacker.stdout.readline()
            if not line:
                break
            out.append(line.strip())
            if line.startswith("kid "):
                break
        print("\n".join(out))
        time.sleep(0.5)
        print(f"daemon alive {daemon.poll() is None}; PING {ping_latency(sock)}; "
              f"fds before {fds0}, now {fd_count(daemon.pid)} (one binding: +2)")
        attacker.stdin.close(); attacker.wait(); attacker = None
        time.sleep(0.5)
        print(f"after the attacker left: fds {fd_count(daemon.pid)}; victim alive "
              f"{victim.poll() is None}")
    finally:
        if attacker:
            attacker.kill(); attacker.wait()
        victim.kill(); victim.wait()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill(); daemon.wait()
        print("daemon exit status", daemon.returncode)
        log.close()
        with open(os.path.join(d, "log"), "rb") as f:
            print(f.read().decode(errors="replace"))
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
