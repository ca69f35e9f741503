# SPDX-License-Identifier: MIT
"""The daemon's headers are private to it: orphanctl and the benchmarks, clients like any other,
compile with liborphand's and base's include directories and never with daemon/ (nor the source
root, through which daemon/ could be reached). Read from the build's compile_commands.json, and
proven by compiling a file that includes a daemon header with orphanctl's own command line."""

import json
import os
import shlex
import subprocess
import tempfile

import orphtest as ot

SOURCE = os.path.realpath(os.environ["ORPHAND_SOURCE_DIR"])
CLIENTS = ("ctl", "bench")


def include_dirs(entry):
    """The -I directories of one compile command, as absolute paths."""
    args = shlex.split(entry["command"]) if "command" in entry else entry["arguments"]
    dirs = []
    for i, a in enumerate(args):
        if a == "-I" and i + 1 < len(args):
            a = "-I" + args[i + 1]
        if a.startswith("-I") and len(a) > 2:
            dirs.append(os.path.realpath(os.path.join(entry["directory"], a[2:])))
    return args, dirs


def main():
    build = os.path.realpath(ot.BUILD)
    path = os.path.join(build, "compile_commands.json")
    if not os.path.exists(path):
        ot.skip("the build has no compile_commands.json")
    with open(path) as f:
        entries = json.load(f)
    forbidden = {os.path.join(SOURCE, "daemon"), os.path.join(build, "daemon"), SOURCE}
    seen, ctl = 0, None
    for e in entries:
        source = os.path.realpath(os.path.join(e["directory"], e["file"]))
        rel = os.path.relpath(source, SOURCE)
        if rel.split(os.sep)[0] not in CLIENTS:
            continue
        seen += 1
        args, dirs = include_dirs(e)
        bad = sorted(set(dirs) & forbidden)
        ot.check(not bad, f"{rel} compiles with the daemon's include directories {bad}")
        if rel == os.path.join("ctl", "orphanctl.cpp"):
            ctl = (e, args)
    ot.check(seen > 0 and ctl, f"no compile command of ctl/ or bench/ in {path}")

    # orphanctl's command line, on a file of our own: base and liborphand are there, the daemon
    # is not.
    e, args = ctl
    with tempfile.TemporaryDirectory(prefix="orphand-includes-") as tmp:
        def compiles(include):
            src = os.path.join(tmp, "probe.cpp")
            with open(src, "w") as f:
                f.write(f'#include "{include}"\nint main() {{ return 0; }}\n')
            argv = [args[0]] + [a for a in args[1:] if a.startswith(("-I", "-std", "-D"))]
            r = subprocess.run(argv + ["-fsyntax-only", src], cwd=e["directory"],
                               capture_output=True, text=True)
            return r.returncode == 0
        for header in ("unique_fd.hpp", "pidfd_sys.hpp", "orphand/orphand.h"):
            ot.check(compiles(header), f"orphanctl's command line cannot include {header}")
        for header in ("server.hpp", "registry.hpp", "pidfd.hpp", "daemon/server.hpp"):
            ot.check(not compiles(header), f"orphanctl's command line can include {header}")
    print(f"{seen} compile commands of ctl/ and bench/: no daemon include directory; daemon "
          "headers do not compile with orphanctl's command line")


if __name__ == "__main__":
    ot.run(main)
