#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run as root from the worktree: starts a private orphand, lets nobody send three datagrams of
253 fds (the first a lingering TCP socket), then measures what other users still get.

  nice -n 19 python3 attacks/run_closer_fill.py [build-dir [closer-fill|stream-fill]]
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build")
DAEMON = os.path.join(BUILD, "daemon", "orphand")
NOBODY = 65534
LINGER = 3600
# "closer-fill" (datagrams) or "stream-fill" (the same fds over stream connections: control)
MODE = sys.argv[2] if len(sys.argv) > 2 else "closer-fill"


def as_user(uid, argv):
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


def ping_latency(path, timeout=3.0):
    t0 = time.monotonic()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            rec = struct.pack("III", 0x11223344, 0x55667788, 3)
            s.sendall(rec)
            got = b""
            while len(got) < 12:
                chunk = s.recv(12 - len(got))
                if not chunk:
                    return None
                got += chunk
            return time.monotonic() - t0 if got == rec else None
    except OSError:
        return None


def sleeper(uid=None):
    argv = ["sleep", "600"]
    p = subprocess.Popen(as_user(uid, argv) if uid is not None else argv)
    return p, os.pidfd_open(p.pid)


def dead_within(pidfd, timeout):
    import select
    return bool(select.select([pidfd], [], [], timeout)[0])


def dgram_register(dpath, parent_pid, child_pidfd, child_pid):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setblocking(False)
    import array
    try:
        s.sendmsg([struct.pack("III", parent_pid, child_pid, 1)],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [child_pidfd]))],
                  0, dpath)
        return "queued"
    except OSError as e:
        return f"send failed: {e}"
    finally:
        s.close()


def stream_register(path, parent_pid, child_pidfd, child_pid, timeout=3.0):
    import array
    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
            s.sendmsg([struct.pack("III", parent_pid, child_pid, 1)],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [child_pidfd]))])
        except OSError as e:
            return f"failed: {e}"
    return f"sent in {time.monotonic() - t0:.3f}s"


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def closer_threads(pid):
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stack") as f:
                n += "sk_stream_wait_close" in f.read()
        except OSError:
            pass
    return n


def main():
    d = tempfile.mkdtemp(prefix="atk-")
    os.chmod(d, 0o755)
    sock = os.path.join(d, "orphand.sock")
    log = open(os.path.join(d, "log"), "wb")
    daemon = subprocess.Popen([DAEMON, "--socket", sock, "--log-target", "stderr"],
                              stdout=log, stderr=log)
    attacker = None
    victims = []
    try:
        for _ in range(200):
            if ping_latency(sock, 0.1) is not None:
                break
            time.sleep(0.02)
        print(f"daemon pid {daemon.pid}; PING before: {ping_latency(sock):.4f}s; "
              f"fds {fd_count(daemon.pid)}")
        shutil.copy(os.path.join(HERE, "dgram_attacker.py"), os.path.join(d, "a.py"))
        os.chmod(os.path.join(d, "a.py"), 0o644)
        attacker = subprocess.Popen(as_user(NOBODY, ["/usr/bin/python3", os.path.join(d, "a.py"),
                                                      sock + ".dgram", MODE,
                                                      str(LINGER), "3"]),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        print("attacker:", attacker.stdout.readline().strip())
        time.sleep(0.5)
        print(f"daemon fds {fd_count(daemon.pid)}; threads in lingering close: "
              f"{closer_threads(daemon.pid)}")
        lat = ping_latency(sock)
        print(f"PING on a new connection under attack: {'none in 3 s' if lat is None else f'{lat:.4f}s'}")
        # Another user's registration through a datagram (the shim's way): parent dies.
        parent, parent_fd = sleeper(4242)
        child, child_fd = sleeper(4242)
        victims += [parent, child]
        time.sleep(0.2)
        print("victim (uid 4242-owned processes, registered by root via datagram):",
              dgram_register(sock + ".dgram", parent.pid, child_fd, child.pid))
        parent2, parent2_fd = sleeper()
        child2, child2_fd = sleeper()
        victims += [parent2, child2]
        print("root registration over a new stream connection:",
              stream_register(sock, parent2.pid, child2_fd, child2.pid))
        time.sleep(0.2)
        parent.kill(); parent2.kill()
        print("datagram-registered child killed within 3 s of its parent's death:",
              dead_within(child_fd, 3))
        print("stream-registered child killed within 3 s of its parent's death:",
              dead_within(child2_fd, 3))
        print(f"daemon alive: {daemon.poll() is None}; fds {fd_count(daemon.pid)}")
        # The attacker leaves: its peer socket resets, the lingering close returns.
        attacker.stdin.close(); attacker.wait(); attacker = None
        t0 = time.monotonic()
        lat = ping_latency(sock, 10)
        print(f"after the attacker exits: PING {lat}; children dead now: "
              f"dgram {dead_within(child_fd, 3)}, stream {dead_within(child2_fd, 3)}; "
              f"fds {fd_count(daemon.pid)}")
    finally:
        if attacker:
            attacker.kill(); attacker.wait()
        for v in victims:
            if v.poll() is None:
                v.kill()
            v.wait()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            print("daemon did not stop on SIGTERM within 10 s"); daemon.kill(); daemon.wait()
        log.close()
        print("--- daemon log (tail) ---")
        with open(os.path.join(d, "log"), "rb") as f:
            print(b"\n".join(f.read().splitlines()[-15:]).decode(errors="replace"))
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
