# SPDX-License-Identifier: MIT
"""Link hygiene of orphanctl: a client of liborphand, never of the daemon's code. Its NEEDED has
liborphand.so.0 and no libsystemd, and it neither defines nor calls anything of the daemon core
(the server, the registry, the journal)."""

import re

import orphtest as ot
from test_link import run, tool


def main():
    dyn = run(tool("readelf"), "-dW", ot.CTL)
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", dyn)
    ot.check(needed, f"orphanctl has no NEEDED at all:\n{dyn}")
    ot.check(not [n for n in needed if n.startswith("libsystemd")],
             f"orphanctl links libsystemd: NEEDED {needed}")
    ot.check("liborphand.so.0" in needed, f"orphanctl does not use liborphand: NEEDED {needed}")

    undefined = run(tool("nm"), "-D", "--undefined-only", ot.CTL)
    sd = [line.split()[-1] for line in undefined.splitlines() if line.split()[-1:] and
          line.split()[-1].startswith("sd_")]
    ot.check(not sd, f"orphanctl calls libsystemd: {sd}")
    defined = run(tool("nm"), "-C", "--defined-only", ot.CTL)
    core = sorted({m.group(0) for m in re.finditer(
        r"orphand::(Server|Registry|EventLoop|BindingLog|FdCloser|ScopeWorker|Options|PidFd|"
        r"log_\w+|parse_options)\b", defined)})
    ot.check(not core, f"orphanctl holds the daemon core's code: {core}")
    print(f"orphanctl NEEDED {', '.join(needed)}: liborphand, no libsystemd, no daemon core")


if __name__ == "__main__":
    ot.run(main)
