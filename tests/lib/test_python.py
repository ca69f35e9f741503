# SPDX-License-Identifier: MIT
"""The orphand module from a staged `meson install`, as a packaged one is used: a program that
imports it from the stage alone binds its children (the Popen helper, a Connection with a policy,
bind_child) against a private daemon, and when it is SIGKILLed orphand kills them. Its errors
carry the documented errno and reason, also for a binding nobody may not make, and its socket
rule is liborphand's, for root and for another user."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import orphtest as ot

HERE = os.path.dirname(os.path.abspath(__file__))
NOBODY = 65534
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def find(root, name):
    for d, _, files in os.walk(root):
        if name in files:
            return os.path.join(d, name)
    ot.fail(f"{name} is not in the staged install")


def run_client(work, module_dir, args, uid=None, **kw):
    """python_client.py (copied into `work`) with only the stage's module dir on its path."""
    argv = [PYTHON, os.path.join(work, "python_client.py"), *args]
    if uid is not None:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ORPHAND_SOCKET")}
    env.update(PYTHONPATH=module_dir, PYTHONDONTWRITEBYTECODE="1", **kw.pop("env", {}))
    return argv, dict(env=env, cwd=work, **kw)


def one_line(argv, kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=ot.TIMEOUT * 3, **kw)
    ot.check(r.returncode == 0, f"{argv} failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout)


def check_rule(work, module_dir, lib, uid=None):
    out = one_line(*run_client(work, module_dir, ["rule", lib], uid=uid))
    for case, module, c in out["rule"]:
        ot.check(module == c, f"uid {out['uid']}, {case}: the module says {module!r}, "
                 f"liborphand {c!r}")
    print(f"  socket rule for uid {out['uid']}: {len(out['rule'])} cases as liborphand's")


def main():
    if not shutil.which("meson"):
        ot.skip("meson is not installed")
    work = tempfile.mkdtemp(prefix="orphand-python-")
    try:
        os.chmod(work, 0o755)  # nobody runs the client from here
        stage = os.path.join(work, "stage")
        r = subprocess.run(["meson", "install", "-C", ot.BUILD, "--destdir", stage,
                            "--no-rebuild", "--quiet"], capture_output=True, text=True)
        ot.check(r.returncode == 0, f"meson install failed: {r.stdout}{r.stderr}")
        module = find(stage, "orphand.py")
        ot.check("-packages" in module, f"orphand.py staged outside a python path: {module}")
        module_dir = os.path.dirname(module)
        for d, dirs, files in os.walk(stage):
            for name in dirs:
                os.chmod(os.path.join(d, name), 0o755)
            for name in files:
                os.chmod(os.path.join(d, name), 0o644)
        shutil.copy(os.path.join(HERE, "python_client.py"), work)
        os.chmod(os.path.join(work, "python_client.py"), 0o644)

        lib = find(stage, "liborphand.so.0")
        check_rule(work, module_dir, lib)
        if os.geteuid() == 0:
            check_rule(work, module_dir, lib, uid=NOBODY)

        with ot.Daemon() as d:
            os.chmod(d.dir, 0o755)
            argv, kw = run_client(work, module_dir, ["bind"], env={"ORPHAND_SOCKET": d.socket})
            p, pfd = ot.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              **kw)
            line = p.stdout.readline()
            ot.check(line, f"the client printed nothing (exit {p.poll()})\n{d.read_log()}")
            out = json.loads(line)
            ot.check(out["module"] == module, f"imported {out['module']}, not the staged one")
            children = out["children"]
            fds = [ot.track(pid) for pid in children]
            want = {
                "bind_popen": "OK", "version": 2, "bind": "OK", "bind again": "ALREADY_BOUND",
                "listed": [[p.pid, 2, 1500, "TREE"]], "status pid": d.pid,
                "pid 1": ["EPERM", "PROTECTED_TARGET"],
                "reaped child": ["ESRCH", "NO_SUCH_PROCESS"],
                "reaped Popen": ["ESRCH", "NO_SUCH_PROCESS"],
                "a pipe as pidfd": ["EBADF", "NOT_PIDFD"],
                "signal 99": ["EINVAL", "BAD_POLICY"], "scope 4": ["EINVAL", "BAD_POLICY"],
                "same process": ["EINVAL", "SAME_PROCESS"], "unbind": "OK",
                "unbind again": "NOT_BOUND", "bind_popen again": "OK", "bind_child": "OK"}
            for what, expected in want.items():
                ot.check(out["checks"][what] == expected,
                         f"{what}: {out['checks'][what]}, expected {expected}")
            listed = {b["child"] for b in d.bindings() if b["parent"] == p.pid}
            ot.check(listed == set(children), f"bound {sorted(listed)}, not {children}")

            if os.geteuid() == 0:
                # nobody may not signal a process of root's: EPERM, NOT_PERMITTED.
                victim, victim_fd = ot.sleeper()
                got = one_line(*run_client(work, module_dir, ["refused", str(victim.pid)],
                                           uid=NOBODY, env={"ORPHAND_SOCKET": d.socket}))
                ot.check(got["uid"] == NOBODY and got["bind"] == ["EPERM", "NOT_PERMITTED"],
                         f"nobody binding root's process: {got}")
                ot.check(not ot.pidfd_dead(victim_fd), "the refused binding's child died")
                print("  nobody binding root's process: EPERM, NOT_PERMITTED")

            ot.check(not any(ot.pidfd_dead(fd) for fd in fds), "a child died before its parent")
            signal.pidfd_send_signal(pfd, signal.SIGKILL)
            p.wait()
            alive = [pid for pid, fd in zip(children, fds) if not ot.wait_pidfd(fd)]
            ot.check(not alive, f"children outlived the client: {alive}\n{d.read_log()}")
        print(f"the staged module ({module}) bound {len(children)} children, which died with "
              f"their parent; {len(want)} results and errors as documented")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    ot.run(main)
