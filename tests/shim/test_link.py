# SPDX-License-Identifier: MIT
"""Link hygiene of orphand-forkwait.so: exports only the interposed symbols, needs only libc."""

import re
import shutil
import subprocess

import orphtest as ot

INTERPOSED = {"fork", "_Fork", "vfork", "posix_spawn", "posix_spawnp", "system", "popen"}


def tool(name):
    path = shutil.which(name)
    if not path:
        ot.skip(f"{name} is not installed")
    return path


def main():
    nm = subprocess.run([tool("nm"), "-D", "--defined-only", ot.SHIM], capture_output=True,
                        text=True, check=True).stdout
    exported = {line.split()[-1].split("@")[0] for line in nm.splitlines() if line.strip()}
    ot.check(exported == INTERPOSED, f"exported symbols {sorted(exported)}, "
             f"expected {sorted(INTERPOSED)}")

    dyn = subprocess.run([tool("readelf"), "-dW", ot.SHIM], capture_output=True, text=True,
                         check=True).stdout
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", dyn)
    ot.check(needed == ["libc.so.6"], f"NEEDED {needed}, expected only libc.so.6")
    ot.check("BIND_NOW" in dyn or "Flags: NOW" in dyn, "not linked with -z now")

    headers = subprocess.run([tool("readelf"), "-lW", ot.SHIM], capture_output=True, text=True,
                             check=True).stdout
    ot.check("GNU_RELRO" in headers, "not linked with -z relro")

    undefined = subprocess.run([tool("nm"), "-D", "--undefined-only", ot.SHIM],
                               capture_output=True, text=True, check=True).stdout
    names = [line.split()[-1].split("@")[0] for line in undefined.splitlines() if line.strip()]
    # __cxa_finalize is libc's (every shared object's destructors run through it).
    bad = [n for n in names if re.match(r"_Z|__cxa_(?!finalize)|__gxx_|_Unwind_|fmt|sd_", n)]
    ot.check(not bad, f"references C++ runtime or library symbols: {bad}")


if __name__ == "__main__":
    ot.run(main)
