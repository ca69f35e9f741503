# SPDX-License-Identifier: MIT
"""orphand(3)'s example, as the man page prints it, built from a staged `meson install` with the
staged header and `pkg-config --cflags --libs orphand` only, run against a private daemon: the
child it binds (with scope tree) dies when the example is SIGKILLed."""

import os
import re
import shutil
import signal
import subprocess
import tempfile

import orphtest as ot

MAN = os.path.join(os.environ.get("ORPHAND_SOURCE_DIR", "."), "man", "orphand.3")
MARKER = "The test suite (tests/lib) compiles and runs the program below"


def example_source(man_text):
    """The first .EX block after the marker comment in orphand(3), with roff escapes undone.
    (tests/system/test_package.py takes the packaged page's example with it too.)"""
    lines = man_text.split("\n")
    start = next(i for i, line in enumerate(lines) if MARKER in line)
    begin = next(i for i in range(start, len(lines)) if lines[i] == ".EX")
    end = next(i for i in range(begin, len(lines)) if lines[i] == ".EE")
    body = "\n".join(lines[begin + 1:end]) + "\n"
    body = body.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")
    ot.check("\\" not in body.replace("\\n", ""), f"unhandled roff escape in the example:\n{body}")
    return body


def find(root, name):
    for d, _, files in os.walk(root):
        if name in files:
            return os.path.join(d, name)
    ot.fail(f"{name} is not in the staged install")


def main():
    for t in ("cc", "pkg-config", "meson"):
        if not shutil.which(t):
            ot.skip(f"{t} is not installed")
    work = tempfile.mkdtemp(prefix="orphand-lib-example-")
    try:
        stage = os.path.join(work, "stage")
        r = subprocess.run(["meson", "install", "-C", ot.BUILD, "--destdir", stage,
                            "--no-rebuild", "--quiet"], capture_output=True, text=True)
        ot.check(r.returncode == 0, f"meson install failed: {r.stdout}{r.stderr}")
        pc_dir = os.path.dirname(find(stage, "orphand.pc"))
        lib_dir = os.path.dirname(find(stage, "liborphand.so.0"))
        find(stage, "orphand.h")

        # Only the stage: its .pc, with its paths rebased into the stage.
        env = dict(os.environ, PKG_CONFIG_LIBDIR=pc_dir, PKG_CONFIG_PATH=pc_dir,
                   PKG_CONFIG_SYSROOT_DIR=stage)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "orphand"], env=env,
                               capture_output=True, text=True)
        ot.check(flags.returncode == 0, f"pkg-config --cflags --libs orphand: {flags.stderr}")
        ot.check(f"-I{stage}" in flags.stdout and f"-L{stage}" in flags.stdout,
                 f"pkg-config does not point into the stage: {flags.stdout}")
        src = os.path.join(work, "example.c")
        with open(MAN) as f:
            source = example_source(f.read())
        with open(src, "w") as f:
            f.write(source)
        exe = os.path.join(work, "example")
        r = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", exe, src,
                            *flags.stdout.split()], capture_output=True, text=True)
        ot.check(r.returncode == 0, f"the man page's example does not build:\n{r.stderr}")

        with ot.Daemon() as d:
            run_env = dict(os.environ, LD_LIBRARY_PATH=lib_dir, ORPHAND_SOCKET=d.socket)
            p, pfd = ot.spawn([exe], env=run_env, stdout=subprocess.PIPE, text=True)
            line = p.stdout.readline()
            m = re.match(r"sleep\[(\d+)\] dies with this process", line)
            ot.check(m, f"unexpected output from the example: {line!r} "
                     f"(exit {p.poll()})\n{d.read_log()}")
            child = int(m.group(1))
            child_fd = ot.track(child)
            with open(f"/proc/{p.pid}/maps") as f:
                maps = f.read()
            ot.check(re.search(re.escape(os.path.join(lib_dir, "liborphand.so.0.")) + r"\d+\.\d+\n",
                               maps),
                     "the example did not load the staged liborphand")
            binding = [b for b in d.bindings() if b["parent"] == p.pid and b["child"] == child]
            ot.check(binding and binding[0]["signal"] == signal.SIGTERM and
                     binding[0]["grace_ms"] == 2000, f"no SIGTERM/2 s binding: {d.bindings()}")
            rows = [line.split() for line in d.ctl("list").stdout.splitlines()[1:-1]]
            scopes = [row[5] for row in rows if row[1].endswith(f"[{child}]")]
            ot.check(scopes == ["tree"], f"the example's binding has scope {scopes}, not tree")
            ot.check(not ot.pidfd_dead(child_fd), "the child died before its parent")
            signal.pidfd_send_signal(pfd, signal.SIGKILL)
            p.wait()
            ot.check(ot.wait_pidfd(child_fd),
                     f"the example's child outlived it by {ot.TIMEOUT}s\n{d.read_log()}")
            ot.check(d.wait_log(f"[{child}]"), f"no kill logged for {child}\n{d.read_log()}")
        print(f"the example built from the stage ({flags.stdout.strip()}) bound sleep[{child}]; "
              "SIGKILLed, its child was killed by orphand")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    ot.run(main)
