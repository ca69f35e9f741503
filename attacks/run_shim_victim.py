#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run as root: while nobody holds the FdCloser full (attacker mode closer-fill), another user
(uid 4242, fd limit 1024) runs N forks through the LD_PRELOAD shim (a shell running /bin/true),
then one long-lived child whose parent is then killed. Reports fork times, the shim's failures
(ORPHAND_DEBUG), and whether that child is killed during the attack and after it.

  nice -n 19 python3 attacks/run_shim_victim.py [build-dir [N]]
"""
import os, select, shutil, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_closer_fill import DAEMON, BUILD, HERE, NOBODY, as_user, ping_latency

SHIM = os.path.join(BUILD, "shim", "orphand-forkwait.so")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
VICTIM = 4242


def victim_run(sock, script):
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": SHIM, "ORPHAND_SOCKET": sock,
           "ORPHAND_DEBUG": "1"}
    return subprocess.Popen(["prlimit", "--nofile=1024:1024", "--",
                             *as_user(VICTIM, ["/bin/bash", "-c", script])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main():
    global SHIM
    d = tempfile.mkdtemp(prefix="atk-")
    os.chmod(d, 0o755)
    shutil.copy(SHIM, os.path.join(d, "shim.so"))
    os.chmod(os.path.join(d, "shim.so"), 0o755)
    SHIM = os.path.join(d, "shim.so")
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
                                                      sock + ".dgram", "closer-fill", "3600",
                                                      "3"]),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        print("attacker:", attacker.stdout.readline().strip())
        time.sleep(0.3)
        script = ("for b in $(seq 1 %d); do s=$(date +%%s%%N); for i in $(seq 1 100); do "
                  "/bin/true; done; e=$(date +%%s%%N); echo batch $b $(( (e-s)/100000 ))us/fork; "
                  "done" % (N // 100))
        t0 = time.monotonic()
        v = victim_run(sock, script)
        out, err = v.communicate(timeout=900)
        print(f"{N} forks in {time.monotonic() - t0:.1f} s")
        print(" ".join(l.split()[2] for l in out.splitlines()))
        fails = [l for l in err.splitlines() if "not bound" in l]
        print(f"shim reported {len(fails)} children not bound; first: {fails[:1]}; last: {fails[-1:]}")
        # a long-lived child, its parent killed during the attack
        v = victim_run(sock, "sleep 600 & echo $!; wait")
        child = int(v.stdout.readline())
        cfd = os.pidfd_open(child)
        time.sleep(0.3)
        v.kill()
        print("victim's child killed within 3 s of its parent's death, during the attack:",
              bool(select.select([cfd], [], [], 3)[0]))
        attacker.stdin.close(); attacker.wait(); attacker = None
        print("... once the attacker left:", bool(select.select([cfd], [], [], 20)[0]))
        v.wait()
        print("shim, for that child:", v.stderr.read().strip()[:300])
        if not select.select([cfd], [], [], 0)[0]:
            signal.pidfd_send_signal(cfd, signal.SIGKILL)
    finally:
        if attacker:
            attacker.kill(); attacker.wait()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill(); daemon.wait()
        log.close()
        with open(os.path.join(d, "log"), "rb") as f:
            print(b"\n".join(f.read().splitlines()[-3:]).decode(errors="replace"))
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
