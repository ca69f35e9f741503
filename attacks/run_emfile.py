#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run as root: orphand with an fd limit of NOFILE (default 2048); nobody makes one recvmmsg()
bring it more fds than it has left (attacker mode "emfile"), the fd the kernel then cannot
install being a lingering TCP socket. Measures PING, a root witness's kill, and where the
daemon's main thread is.

  nice -n 19 python3 attacks/run_emfile.py [build-dir [NOFILE]]
"""
import os, select, shutil, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_closer_fill import (DAEMON, HERE, NOBODY, as_user, ping_latency, sleeper, fd_count,
                             stream_register)

NOFILE = int(sys.argv[2]) if len(sys.argv) > 2 else 2048


def stack(pid):
    try:
        with open(f"/proc/{pid}/stack") as f:
            return " < ".join(l.split()[1].split("+")[0] for l in f if l.strip())[:160]
    except OSError:
        return "?"


def main():
    d = tempfile.mkdtemp(prefix="atk-")
    os.chmod(d, 0o755)
    sock = os.path.join(d, "orphand.sock")
    log = open(os.path.join(d, "log"), "wb")
    daemon = subprocess.Popen(["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--", DAEMON, "--socket",
                               sock, "--log-target", "stderr"], stdout=log, stderr=log)
    attacker = None
    procs = []
    try:
        for _ in range(200):
            if ping_latency(sock, 0.1) is not None:
                break
            time.sleep(0.02)
        # a root witness bound before the attack
        p, pfd = sleeper(); c, cfd = sleeper(); procs += [p, c]
        print("witness:", stream_register(sock, p.pid, cfd, c.pid))
        time.sleep(0.2)
        shutil.copy(os.path.join(HERE, "dgram_attacker.py"), os.path.join(d, "a.py"))
        os.chmod(os.path.join(d, "a.py"), 0o644)
        attacker = subprocess.Popen(as_user(NOBODY, ["/usr/bin/python3", os.path.join(d, "a.py"),
                                                      sock + ".dgram", "emfile", "2", "3600",
                                                      "10"]),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        print("attacker:", attacker.stdout.readline().strip(), "|",
              attacker.stdout.readline().strip())
        time.sleep(3)  # the short linger ends; reading resumes
        print(f"daemon fds {fd_count(daemon.pid)}; main thread: {stack(daemon.pid)}")
        lat = ping_latency(sock, 3)
        print(f"PING under attack: {'none in 3 s' if lat is None else f'{lat*1000:.2f} ms'}")
        p.kill()
        print("witness child killed within 3 s of its parent's SIGKILL:",
              bool(select.select([cfd], [], [], 3)[0]))
        attacker.stdin.close(); attacker.wait(); attacker = None
        lat = ping_latency(sock, 5)
        print(f"after the attacker left: PING {lat}; witness child dead: "
              f"{bool(select.select([cfd], [], [], 3)[0])}; daemon alive {daemon.poll() is None}")
    finally:
        if attacker:
            attacker.kill(); attacker.wait()
        for v in procs:
            if v.poll() is None:
                v.kill()
            v.wait()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill(); daemon.wait()
        log.close()
        with open(os.path.join(d, "log"), "rb") as f:
            print(b"\n".join(f.read().splitlines()[-6:]).decode(errors="replace"))
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
