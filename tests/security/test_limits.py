# SPDX-License-Identifier: MIT
"""Limits: one user over its quota is refused while others go on, and nothing is evicted.

Bindings per uid, bindings per parent, connections per uid and connections in total, each with a
small limit; the refused client gets its reason, other users' requests succeed meanwhile, and
the bindings made before the refusal are all still enforced.
"""

import contextlib
import os
import signal

import orphtest as ot
import sectest as st
from sectest import LIMIT_PARENT, LIMIT_USER, NOBODY, OK, OTHER

EDQUOT = -122
PER_UID, PER_PARENT, CONN_PER_UID, CONN_TOTAL = 10, 20, 8, 24


@contextlib.contextmanager
def euid(uid):
    """Connections made inside are the uid's: SO_PEERCRED records the effective uid at connect."""
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


def try_connect(d):
    """A connection with HELLO answered, or None if the daemon closed it (a refusal)."""
    try:
        return d.client()
    except (ConnectionError, OSError):
        return None


def main():
    d = st.daemon(f"--max-bindings-per-uid={PER_UID}", f"--max-bindings-per-parent={PER_PARENT}",
                  f"--max-connections-per-uid={CONN_PER_UID}",
                  f"--max-connections={CONN_TOTAL}")
    with d:
        print("bindings per uid:")
        parent, parent_fd = st.user_sleeper(NOBODY)
        kids = [st.user_sleeper(NOBODY) for _ in range(PER_UID + 2)]
        oparent, oparent_fd = st.user_sleeper(OTHER)
        okids = [st.user_sleeper(OTHER) for _ in range(PER_UID)]
        res = st.hostile(d, [{"v1": [parent.pid, k.pid, ot.REGISTER]} for k, _ in kids])
        for i, r in enumerate(res[:PER_UID]):
            ot.check(r["error"] == 0 and r["reason"] == OK, f"nobody's binding {i}: {r}")
        for r in res[PER_UID:]:
            st.expect(r, EDQUOT, LIMIT_USER, "nobody over its per-uid limit")
        # Another user is not affected, and nobody is still refused afterwards.
        res = st.hostile(d, [{"v1": [oparent.pid, k.pid, ot.REGISTER]} for k, _ in okids],
                         uid=OTHER)
        ot.check(all(r["error"] == 0 for r in res), f"another user refused: {res}")
        print(f"  uid {OTHER}: {len(res)} bindings accepted while nobody is at its limit")
        st.expect(st.hostile(d, [{"v1": [parent.pid, kids[-1][0].pid, ot.REGISTER]}])[0],
                  EDQUOT, LIMIT_USER, "nobody still over its limit")
        ot.check(d.wait_log("too many bindings for this user"), "refusal not logged")
        by_uid = {}
        for b in d.bindings():
            by_uid[b["uid"]] = by_uid.get(b["uid"], 0) + 1
        ot.check(by_uid == {NOBODY: PER_UID, OTHER: PER_UID}, f"bindings by uid: {by_uid}")

        print("bindings per parent:")
        rparent, rparent_fd = ot.sleeper()
        rkids = [ot.sleeper() for _ in range(PER_PARENT + 1)]
        with d.client() as c:
            res = [c.register(rparent.pid, k.pid) for k, _ in rkids]
        ot.check(all(r["error"] == 0 for r in res[:PER_PARENT]), f"root refused: {res}")
        st.expect(res[PER_PARENT], EDQUOT, LIMIT_PARENT, "root over the per-parent limit")

        print("connections per uid and in total:")
        held = []
        try:
            with euid(NOBODY):
                mine = [try_connect(d) for _ in range(CONN_PER_UID + 1)]
            ot.check(all(mine[:CONN_PER_UID]) and mine[CONN_PER_UID] is None,
                     f"nobody's connections: {[bool(m) for m in mine]}")
            held += mine[:CONN_PER_UID]
            print(f"  nobody: {CONN_PER_UID} connections, the next one refused")
            with euid(OTHER):
                theirs = [try_connect(d) for _ in range(CONN_PER_UID)]
            ot.check(all(theirs), "another user's connections refused")
            held += theirs
            print(f"  uid {OTHER}: {CONN_PER_UID} connections while nobody is at its limit")
            # Root has no per-uid limit, only the total one.
            while len(held) < CONN_TOTAL:
                c = try_connect(d)
                ot.check(c is not None, f"root refused at {len(held)} connections")
                held.append(c)
            ot.check(try_connect(d) is None, "connection over the total limit accepted")
            print(f"  {CONN_TOTAL} connections in total, the next one refused")
            ot.check(d.wait_log("too many connections"), "connection refusal not logged")
            # One closes: room for one more, and the held connections still work.
            held.pop(0).sock.close()
            d.wait_until(lambda: (c := try_connect(d)) is not None and held.append(c) is None,
                         "a free connection slot")
            st.expect(held[0].call(0, 0, ot.PING), 0, OK, "PING on a held connection")
        finally:
            for c in held:
                c.sock.close()

        # Everything accepted before the refusals is enforced.
        for pfd in (parent_fd, oparent_fd, rparent_fd):
            signal.pidfd_send_signal(pfd, signal.SIGKILL)
        for k, fd in kids[:PER_UID] + okids + rkids[:PER_PARENT]:
            ot.check(ot.wait_pidfd(fd), f"bound child {k.pid} not killed")
        for k, fd in kids[PER_UID:] + rkids[PER_PARENT:]:
            ot.check(st.alive(fd), f"refused child {k.pid} killed")
        print(f"  all {2 * PER_UID + PER_PARENT} accepted bindings enforced, refused ones not")
        # nobody's quota is free again.
        st.expect(st.hostile(d, [{"v1": [kids[-1][0].pid, kids[-2][0].pid, ot.REGISTER]}])[0],
                  0, OK, "nobody registers again once its bindings are gone")


ot.run(main)
