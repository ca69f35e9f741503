# SPDX-License-Identifier: MIT
"""A program that uses the orphand module as a packaged one would: run by test_python.py with
PYTHONPATH naming only the staged install. Prints one JSON line.

Usage: python_client.py bind      binds three children of its own (Popen helper, a Connection
                                  with a policy, bind_child), checks the errors and their
                                  reasons, prints their pids and waits on stdin to be killed
       python_client.py refused PID
                                  binds PID (another user's, as this one runs as nobody)
       python_client.py rule LIB  the socket rule, against liborphand's (ctypes, LIB)
"""

import ctypes
import errno
import json
import os
import signal
import subprocess
import sys
import tempfile

import orphand


def refusal(call, *args, **kw):
    """(errno, reason name) of the Error the call raises, or what it returned."""
    try:
        return ["returned", str(call(*args, **kw))]
    except orphand.Error as e:
        return [errno.errorcode.get(e.errno, e.errno), orphand.reason_name(e.reason)]


def sleeper():
    return subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)


def bind():
    out = {"module": orphand.__file__, "checks": {}}
    checks = out["checks"]
    a, b, c = sleeper(), sleeper(), sleeper()
    checks["bind_popen"] = orphand.reason_name(orphand.bind_popen(a))
    with orphand.Connection() as conn:
        conn.ping()
        checks["version"] = conn.version
        checks["bind"] = orphand.reason_name(conn.bind(b.pid, signal=signal.SIGINT,
                                                       grace_ms=1500, scope=orphand.Scope.TREE))
        checks["bind again"] = orphand.reason_name(conn.bind(b.pid))
        mine = [x for x in conn.list2() if x.info.child_pid == b.pid]
        checks["listed"] = [(x.info.parent_pid, x.info.signal, x.info.grace_ms,
                             orphand.Scope(x.scope).name) for x in mine]
        checks["status pid"] = conn.status().daemon_pid

        checks["pid 1"] = refusal(conn.bind, 1)
        gone = subprocess.Popen(["true"])
        gone.wait()
        checks["reaped child"] = refusal(conn.bind, gone.pid)
        checks["reaped Popen"] = refusal(conn.bind_popen, gone)
        r, w = os.pipe()
        checks["a pipe as pidfd"] = refusal(conn.bind_pidfd, r)
        os.close(r)
        os.close(w)
        checks["signal 99"] = refusal(conn.bind, c.pid, signal=99)
        checks["scope 4"] = refusal(conn.bind, c.pid, scope=orphand.SCOPE_COUNT)
        checks["same process"] = refusal(conn.bind, c.pid, c.pid)
        checks["unbind"] = orphand.reason_name(conn.unbind(a.pid))
        checks["unbind again"] = orphand.reason_name(conn.unbind(a.pid))
        checks["bind_popen again"] = orphand.reason_name(conn.bind_popen(a))
    checks["bind_child"] = orphand.reason_name(orphand.bind_child(c.pid))
    out["children"] = [a.pid, b.pid, c.pid]
    print(json.dumps(out), flush=True)
    sys.stdin.readline()  # killed here by the test


def refused(victim):
    print(json.dumps({"module": orphand.__file__, "uid": os.getuid(),
                      "bind": refusal(orphand.bind_child, victim)}), flush=True)


def rule(lib_path):
    """Each case's path from the module and from liborphand: [[case, module, C], ...]."""
    lib = ctypes.CDLL(lib_path)
    lib.orphand_socket_path.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]

    def c_rule(path):
        buf = ctypes.create_string_buffer(256)
        n = lib.orphand_socket_path(path.encode() if path else None, buf, 256)
        return buf.value.decode() if n >= 0 else n

    out = []
    with tempfile.TemporaryDirectory() as runtime:
        cases = [("explicit", "/x/y.sock", {}), ("none", None, {}),
                 ("empty", "", {"ORPHAND_SOCKET": "/env.sock"}),
                 ("env", None, {"ORPHAND_SOCKET": "/env.sock"}),
                 ("empty env", None, {"ORPHAND_SOCKET": ""}),
                 ("runtime without socket", None, {"XDG_RUNTIME_DIR": runtime}),
                 ("relative runtime", None, {"XDG_RUNTIME_DIR": "run"}),
                 ("runtime with socket", None, {"XDG_RUNTIME_DIR": runtime, "make": ""})]
        for name, path, env in cases:
            os.environ.pop("ORPHAND_SOCKET", None)
            os.environ.pop("XDG_RUNTIME_DIR", None)
            if "make" in env:
                open(os.path.join(runtime, orphand.USER_SOCKET_NAME), "w").close()
            os.environ.update({k: v for k, v in env.items() if k != "make"})
            out.append([name, orphand.socket_path(path), c_rule(path)])
    print(json.dumps({"uid": os.geteuid(), "rule": out}), flush=True)


if __name__ == "__main__":
    {"bind": lambda: bind(), "refused": lambda: refused(int(sys.argv[2])),
     "rule": lambda: rule(sys.argv[2])}[sys.argv[1]]()
