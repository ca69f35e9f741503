#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run as root: nobody floods the datagram socket (NFDS fds per datagram, PROCS senders, SECONDS);
meanwhile PING latency on new connections, the daemon's CPU and fds, and a root witness binding's
kill latency are measured.

  nice -n 19 python3 attacks/run_flood.py [build-dir [NFDS [PROCS [SECONDS]]]]
"""
import os, select, shutil, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_closer_fill import (DAEMON, HERE, NOBODY, as_user, ping_latency, sleeper, fd_count,
                             stream_register, dgram_register)

NFDS = int(sys.argv[2]) if len(sys.argv) > 2 else 253
PROCS = int(sys.argv[3]) if len(sys.argv) > 3 else 4
SECONDS = float(sys.argv[4]) if len(sys.argv) > 4 else 8


def cpu(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    d = tempfile.mkdtemp(prefix="atk-")
    os.chmod(d, 0o755)
    sock = os.path.join(d, "orphand.sock")
    log = open(os.path.join(d, "log"), "wb")
    daemon = subprocess.Popen([DAEMON, "--socket", sock, "--log-target", "stderr"],
                              stdout=log, stderr=log)
    attacker = None
    procs = []
    try:
        for _ in range(200):
            if ping_latency(sock, 0.1) is not None:
                break
            time.sleep(0.02)
        shutil.copy(os.path.join(HERE, "dgram_attacker.py"), os.path.join(d, "a.py"))
        os.chmod(os.path.join(d, "a.py"), 0o644)
        c0 = cpu(daemon.pid)
        attacker = subprocess.Popen(as_user(NOBODY, ["/usr/bin/python3", os.path.join(d, "a.py"),
                                                      sock + ".dgram", "flood", str(NFDS),
                                                      str(SECONDS), str(PROCS)]),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        lats, maxfds = [], 0
        dgram_ok = dgram_fail = 0
        kill_lat = []
        t_end = time.monotonic() + SECONDS - 2
        while time.monotonic() < t_end:
            lats.append(ping_latency(sock, 3))
            maxfds = max(maxfds, fd_count(daemon.pid))
            # a root witness: registered over a stream connection, parent killed
            p, pfd = sleeper(); c, cfd = sleeper(); procs += [p, c]
            r = dgram_register(sock + ".dgram", p.pid, cfd, c.pid)
            if r == "queued":
                dgram_ok += 1
            else:
                dgram_fail += 1
                stream_register(sock, p.pid, cfd, c.pid)
            time.sleep(0.05)
            t0 = time.monotonic(); p.kill()
            kill_lat.append(time.monotonic() - t0 if select.select([cfd], [], [], 3)[0] else None)
            os.close(pfd); os.close(cfd)
            time.sleep(0.1)
        print(attacker.stdout.read().strip())
        attacker.wait(); attacker = None
        c1 = cpu(daemon.pid)
        ok = sorted(l for l in lats if l is not None)
        print(f"NFDS={NFDS} PROCS={PROCS}: PING samples {len(lats)}, unanswered(3s) "
              f"{sum(l is None for l in lats)}, median {ok[len(ok)//2]*1000 if ok else -1:.2f} ms, "
              f"max {ok[-1]*1000 if ok else -1:.2f} ms")
        kl = sorted(l for l in kill_lat if l is not None)
        print(f"witness kills: {len(kill_lat)}, missed(3s) {sum(l is None for l in kill_lat)}, "
              f"median {kl[len(kl)//2]*1000 if kl else -1:.2f} ms, max {kl[-1]*1000 if kl else -1:.2f} ms; "
              f"witness datagrams queued {dgram_ok}, fell back to stream {dgram_fail}")
        print(f"daemon CPU {c1 - c0:.2f} s over ~{SECONDS:.0f} s; max fds seen {maxfds}; "
              f"fds after {fd_count(daemon.pid)}; alive {daemon.poll() is None}")
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
            print(b"\n".join(f.read().splitlines()[-4:]).decode(errors="replace"))
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
