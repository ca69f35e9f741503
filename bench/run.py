#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs every orphand benchmark in one go and prints one markdown table with the notes below it.

Usage: bench/run.py [--build DIR] [--quick]

Each benchmark program prints its table rows ("| ... |") and notes ("- ..."); this script only
orchestrates: the measuring is done by the compiled programs. The shim's fork+exec+wait
benchmark (bench/shim/shim_ratio.py over build/bench/shim/fork_exec_true) is run as it is and
its row is merged in.
"""

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# (program, full arguments, quick arguments)
BENCHMARKS = [
    ("bench-kill-latency", ["--samples", "2000"], ["--samples", "50"]),
    ("bench-register-rate", ["--count", "4000", "--rounds", "7"], ["--count", "500", "--rounds", "2"]),
    ("shim", [], []),
    ("bench-kill-storm", ["--count", "4000", "--rounds", "5"], ["--count", "200", "--rounds", "2"]),
    ("bench-fan-out", ["--children", "100,400,2000", "--rounds", "5"],
     ["--children", "20,200", "--rounds", "2"]),
    ("bench-tree-kill", ["--descendants", "1000", "--rounds", "7"],
     ["--descendants", "200", "--rounds", "2"]),
    ("bench-durability", [], ["--count", "1000", "--rounds", "2", "--bindings", "1000"]),
    ("bench-memory-capacity", ["--rounds", "3", "--idle-seconds", "10"],
     ["--fd-limit", "1024", "--rounds", "1", "--idle-seconds", "2"]),
    ("bench-startup", ["--samples", "50"], ["--samples", "5"]),
]

HEADER = ("| Measurement | orphand | Baseline (same run) | orphand / baseline | Target | Met |\n"
          "|---|---|---|---|---|---|")


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.system()} {platform.release()}, {cpu} x {os.cpu_count()} CPUs, "
            f"{mem_gb:.0f} GiB RAM; load average at start {load}")


def revision():
    """The commit measured, and whether the daemon or shim sources differ from it."""
    top = os.path.join(HERE, "..")
    try:
        rev = subprocess.run(["git", "-C", top, "rev-parse", "--short", "HEAD"], text=True,
                             capture_output=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "--", "daemon",
                                "shim", "protocol", "base", "lib"], text=True,
                               capture_output=True).stdout
    except OSError:
        return "unknown revision"
    return f"commit {rev}" + (" plus uncommitted changes in daemon/, shim/, protocol/, base/ "
                              "or lib/" if dirty.strip() else "")


def run(argv):
    """Runs one program; returns (rows, notes). A failure becomes a row that says so."""
    print(f"running: {' '.join(argv)}", file=sys.stderr, flush=True)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       stdin=subprocess.DEVNULL)
    rows = [l for l in p.stdout.splitlines() if l.startswith("|")]
    notes = [l for l in p.stdout.splitlines() if not l.startswith("|") and l.strip()]
    if p.returncode == 77:
        rows = [f"| {os.path.basename(argv[0])} | skipped | - | - | - | - |"]
    elif p.returncode != 0:
        name = os.path.basename(argv[0])
        rows.append(f"| {name} | failed (exit {p.returncode}) | - | - | - | **no** |")
        notes += [f"{name}: {l}" for l in p.stderr.strip().splitlines()[-5:]]
    return rows, notes


def shim_ratio(build, quick):
    """Runs bench/shim/shim_ratio.py, which prints the table's section 3 rows itself."""
    script = os.path.join(HERE, "shim", "shim_ratio.py")
    loop = os.path.join(build, "bench", "shim", "fork_exec_true")
    if not (os.path.exists(script) and os.path.exists(loop)):
        return ["| 3. Shim fork+exec+wait ratio | not built (bench/shim/) | - | - | <= 1.10 | - |"], []
    empty = os.path.join(build, "bench", "shim", "empty-preload.so")
    argv = [sys.executable, script, "--loop", loop] + (["--samples", "5"] if quick else [])
    if os.path.exists(empty):
        argv += ["--empty", empty]
    sink = os.path.join(build, "bench", "shim", "datagram-sink")
    if os.path.exists(sink):
        argv += ["--sink", sink]
    os.environ["ORPHAND_BUILD_DIR"] = build
    rows, notes = run(argv)
    return [r for r in rows if r.startswith("| 3.")] or [
        "| 3. Shim fork+exec+wait ratio | see details | - | - | <= 1.10 | - |"], notes + rows


# What the benchmarks run, relative to the build directory.
# orphanctl and the benchmarks load liborphand.so.0 from ../lib (their RUNPATH).
SNAPSHOT = ["daemon/orphand", "ctl/orphanctl", "lib/liborphand.so.0", "shim/orphand-forkwait.so",
            "bench/shim/fork_exec_true", "bench/shim/empty-preload.so",
            "bench/shim/datagram-sink"] + [f"bench/{b[0]}" for b in BENCHMARKS if b[0] != "shim"]


def snapshot(build):
    """Copies the built programs into a private tree with the build directory's layout, so that a
    rebuild in the shared build directory during the run cannot swap a binary mid-measurement."""
    root = tempfile.mkdtemp(prefix="orphand-bench-build-")
    for rel in SNAPSHOT:
        src = os.path.join(build, rel)
        if os.path.exists(src):
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(root, rel))
    return root


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--quick", action="store_true", help="tiny sample counts (a smoke run)")
    opts = ap.parse_args()
    built = os.path.abspath(opts.build)
    build = snapshot(built)
    try:
        return measure(build, opts.quick)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def measure(build, quick):
    daemon = os.path.join(build, "daemon", "orphand")

    started = datetime.datetime.now(datetime.timezone.utc)
    rows, notes = [], []
    for name, full_args, quick_args in BENCHMARKS:
        if name == "shim":
            r, n = shim_ratio(build, quick)
            rows += r
            notes += [f"shim_ratio.py: {l.lstrip('- ')}" for l in n]
            continue
        prog = os.path.join(build, "bench", name)
        r, n = run([prog, "--daemon", daemon] + (quick_args if quick else full_args))
        rows += r
        notes += [l.lstrip("- ") for l in n]
    elapsed = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()

    print(f"## orphand benchmarks, {started:%Y-%m-%d %H:%M} UTC{' (quick)' if quick else ''}")
    print()
    print(f"Machine: {machine()}. Built from {revision()}. Every baseline was measured in the same run, interleaved with "
          f"orphand. Total time {elapsed:.0f} s.")
    print()
    print(HEADER)
    for r in rows:
        print(r)
    print()
    print("Details:")
    print()
    for n in notes:
        print(f"- {n}")
    return 0 if not any("failed (exit" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
