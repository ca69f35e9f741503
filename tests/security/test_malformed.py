# SPDX-License-Identifier: MIT
"""Malformed input of every kind the protocol allows: each refused with its reason, none fatal.

Sent as nobody. Afterwards the daemon still answers PING, a binding made before still kills,
no process but the one nobody legitimately bound is killed, and no fd is leaked.
"""

import random
import signal

import orphtest as ot
import sectest as st
from sectest import (BAD_PID, BAD_POLICY, NOBODY, NO_SUCH_PROCESS, NOT_PIDFD, OK,
                     PARENT_ALREADY_DEAD, SAME_PROCESS, TOO_MANY_FDS, UNKNOWN_ACTION)

REG, UNREG, PING, HELLO = ot.REGISTER, ot.UNREGISTER, ot.PING, ot.HELLO
EINVAL, ESRCH, EBADF, E2BIG = -22, -3, -9, -7


def garbage(n, seed):
    """n v1 requests of random bytes, each answered by exactly one reply: the action is never
    REGISTER or UNREGISTER (random pids must not name real processes) nor LIST or STATUS."""
    rng = random.Random(seed)
    out = b""
    for i in range(n):
        action = rng.choice([0, 3, 4, 7, 8, 0xFFFF, 0xFFFFFFFF, rng.getrandbits(32) | 8])
        if i % 2:
            out += ot.request(rng.getrandbits(32), rng.getrandbits(32), action, seq=i)
        else:
            out += ot.request(rng.getrandbits(32), rng.getrandbits(32), action, seq=i,
                              flags=rng.getrandbits(32), sig=rng.getrandbits(31),
                              grace_ms=rng.getrandbits(32), scope=rng.getrandbits(32))
    return out


def main():
    with st.daemon() as d:
        guard_parent, guard_parent_fd, guard_child, guard_child_fd = st.root_binding(d)
        fds_before = st.settled_fds(d)

        parent, parent_fd = st.user_sleeper(NOBODY)
        mine, mine_fd = st.user_sleeper(NOBODY)
        bystander, bystander_fd = st.user_sleeper(NOBODY)
        sacrifice, sacrifice_fd = st.user_sleeper(NOBODY)
        P, M = parent.pid, mine.pid

        print("malformed requests as nobody (acknowledged mode):")
        cases = [
            ({"v1": [P, M, 0]}, EINVAL, UNKNOWN_ACTION, "action 0"),
            ({"v1": [P, M, 7]}, EINVAL, UNKNOWN_ACTION, "action 7"),
            ({"v1": [P, M, 0xFFFFFFFF]}, EINVAL, UNKNOWN_ACTION, "action 2^32-1"),
            ({"v1": [P, 0, REG]}, EINVAL, BAD_PID, "child pid 0"),
            ({"v1": [0, M, REG]}, EINVAL, BAD_PID, "parent pid 0"),
            ({"v1": [P, -1, REG]}, EINVAL, BAD_PID, "child pid -1 (2^32-1)"),
            ({"v1": [-1, M, REG]}, EINVAL, BAD_PID, "parent pid -1 (2^32-1)"),
            ({"v1": [P, 0x80000000, REG]}, EINVAL, BAD_PID, "child pid 2^31"),
            ({"v1": [0x80000000, M, REG]}, EINVAL, BAD_PID, "parent pid 2^31"),
            ({"v1": [0, 0, REG]}, EINVAL, BAD_PID, "both pids 0"),
            ({"v1": [M, M, REG]}, EINVAL, SAME_PROCESS, "parent equal to the child"),
            ({"v1": [M, M, REG], "fds": [f"pidfd:{M}", f"pidfd:{M}"]}, EINVAL, SAME_PROCESS,
             "parent equal to the child, by pidfds"),
            ({"v1": [P, 0x7FFFFFFF, REG]}, ESRCH, NO_SUCH_PROCESS, "child that never existed"),
            ({"v1": [P, 4194304, REG]}, ESRCH, NO_SUCH_PROCESS, "child above pid_max"),
            ({"v1": [P, M, REG], "fds": ["devnull"]}, EBADF, NOT_PIDFD, "fd of /dev/null"),
            ({"v1": [P, M, REG], "fds": ["socket"]}, EBADF, NOT_PIDFD, "fd of a socket"),
            ({"v1": [P, M, REG], "fds": ["pipe"]}, EBADF, NOT_PIDFD, "fd of a pipe"),
            ({"v1": [P, M, REG], "fds": ["memfd"]}, EBADF, NOT_PIDFD, "fd of a memfd"),
            ({"v1": [P, M, REG], "fds": ["eventfd"]}, EBADF, NOT_PIDFD, "fd of an eventfd"),
            ({"v1": [P, M, REG], "fds": ["epoll"]}, EBADF, NOT_PIDFD, "fd of an epoll"),
            ({"v1": [P, M, REG], "fds": [f"pidfd:{M}", "devnull"]}, EBADF, NOT_PIDFD,
             "parent fd of /dev/null"),
            ({"v1": [P, M, REG], "fds": ["reaped-pidfd"]}, ESRCH, NO_SUCH_PROCESS,
             "pidfd of a reaped process"),
            ({"v1": [P, M, REG], "fds": ["many:3"]}, E2BIG, TOO_MANY_FDS, "3 fds"),
            ({"v1": [P, M, REG], "fds": ["many:64"]}, E2BIG, TOO_MANY_FDS, "64 fds"),
            ({"v1": [P, M, REG], "fds": ["many:250"]}, E2BIG, TOO_MANY_FDS, "250 fds"),
            ({"v1": [P, M, REG], "flags": 1 << 7}, EINVAL, BAD_POLICY, "unknown flag"),
            ({"v1": [P, M, REG], "scope": 4}, EINVAL, BAD_POLICY, "unknown scope 4"),
            ({"v1": [P, M, REG], "scope": 0xFFFFFFFF}, EINVAL, BAD_POLICY, "scope 2**32-1"),
            ({"v1": [P, M, UNREG], "scope": 2}, EINVAL, BAD_POLICY, "scope on an UNREGISTER"),
            ({"v1": [P, M, REG], "flags": ot.FLAG_SIGNAL, "signal": 0}, EINVAL, BAD_POLICY,
             "signal 0"),
            ({"v1": [P, M, REG], "flags": ot.FLAG_SIGNAL, "signal": 65}, EINVAL, BAD_POLICY,
             "signal 65"),
            ({"v1": [P, M, REG], "flags": ot.FLAG_SIGNAL, "signal": -1}, EINVAL, BAD_POLICY,
             "signal -1"),
            ({"v1": [0, 0, PING], "fds": ["devnull", "socket"]}, 0, OK, "PING carrying fds"),
            ({"v1": [P, sacrifice.pid, REG]}, 0, OK, "a valid binding among the junk"),
            ({"v1": [0x7FFFFFFF, mine.pid, REG]}, 0, PARENT_ALREADY_DEAD,
             "parent that never existed: its own child killed at once"),
            ({"v1": [0, 0, PING]}, 0, OK, "PING at the end"),
        ]
        res = st.hostile(d, [op for op, *_ in cases])
        for r, (_, err, reason, what) in zip(res, cases):
            st.expect(r, err, reason, what)
        ot.check(ot.wait_pidfd(mine_fd), "nobody's child of a never-existing parent survived")
        ot.reap(mine)

        print("malformed streams as nobody:")
        hello_bytes = ot.record(ot.HELLO_MAGIC, 1, HELLO)
        raw = [
            # A short legacy record, then EOF.
            {"raw": "0102030405", "hello": False},
            # A short v1 request, then EOF.
            {"raw": ot.request(P, M, REG)[:20].hex()},
            # An unknown legacy action, then a legacy PING on the same connection: echoed.
            {"raw": (ot.record(P, M, 99) + ot.record(7, 8, PING)).hex(), "hello": False,
             "read": 12},
            # HELLO with a bad magic or version 0 is no HELLO: the connection stays legacy.
            {"raw": (ot.record(0x1234, 1, HELLO) + ot.record(0, 1, HELLO)
                     + ot.record(9, 9, PING)).hex(), "hello": False, "read": 12},
            # A second HELLO in acknowledged mode is harmless.
            {"raw": ot.request(0, 0, HELLO, seq=5).hex(), "replies": 1},
            # 2,000 requests of junk in one write: one reply each.
            {"raw": garbage(2000, 5).hex(), "replies": 2000},
            # The legacy HELLO record sent again in acknowledged mode is only 12 bytes: with
            # the next 20 it makes one request, here a v1 HELLO, answered as such.
            {"raw": (hello_bytes + ot.request(0, 0, PING)[:20]).hex(), "replies": 1},
        ]
        res = st.hostile(d, raw)
        ot.check(all(not isinstance(r, dict) or "exception" not in r for r in res),
                 f"a raw exchange failed: {res}")
        ot.check(res[2] == ot.record(7, 8, PING).hex(), f"legacy PING after junk: {res[2]}")
        ot.check(res[3] == ot.record(9, 9, PING).hex(), f"PING after bad HELLOs: {res[3]}")
        ot.check(res[4][0]["error"] == 0, f"second HELLO: {res[4]}")
        replies = res[5]
        ot.check(len(replies) == 2000 and all(r["error"] < 0 or r["action"] in (PING, HELLO)
                                              for r in replies), "junk not refused")
        ot.check([r["seq"] for r in replies] == list(range(2000)), "junk replies out of order")
        reasons = sorted({st.REASON_NAMES[r["reason"]] for r in replies})
        print(f"  2000 junk requests: 2000 replies in order, reasons {reasons}")
        ot.check(res[6][0]["action"] == HELLO and res[6][0]["error"] == 0,
                 f"HELLO record inside a request: {res[6]}")
        print("  short records, unknown legacy actions, bad HELLOs: connection keeps serving")

        # Clients that send nothing or half a request and hold their connection block no one.
        holders = []
        try:
            for i in range(64):
                s = d.connect()
                if i % 3 == 1:
                    s.sendall(ot.request(P, M, REG)[:7])
                elif i % 3 == 2:
                    s.sendall(ot.record(ot.HELLO_MAGIC, 1, HELLO) + ot.request(P, M, REG)[:31])
                holders.append(s)
            witness, witness_fd = st.user_sleeper(NOBODY)
            res = st.hostile(d, [{"v1": [P, witness.pid, REG]}, {"v1": [0, 0, PING]}])
            st.expect(res[0], 0, OK, "registration while 64 idle or half-sent clients hold on")
            st.expect(res[1], 0, OK, "PING while they hold on")
        finally:
            for s in holders:
                s.close()

        signal.pidfd_send_signal(parent_fd, signal.SIGKILL)
        ot.check(ot.wait_pidfd(witness_fd), "witness of nobody's parent not killed")
        ot.check(ot.wait_pidfd(sacrifice_fd), "the valid binding among the junk not enforced")
        ot.check(st.alive(bystander_fd), "an unbound process was killed")
        ot.check(st.alive(guard_child_fd), "root's child killed early")
        ot.reap(parent)
        ot.reap(witness)
        ot.reap(sacrifice)
        d.wait_until(lambda: st.settled_fds(d) == fds_before, f"daemon fds back to {fds_before}")
        print(f"  daemon fds: {fds_before} before, {st.settled_fds(d)} after")
        signal.pidfd_send_signal(guard_parent_fd, signal.SIGKILL)
        ot.check(ot.wait_pidfd(guard_child_fd), "root's binding not enforced after the junk")
        ot.check(d.alive() and d.ping(), "daemon not serving")


ot.run(main)
