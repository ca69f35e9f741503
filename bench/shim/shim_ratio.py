# SPDX-License-Identifier: MIT
"""Cost of orphand-forkwait.so: fork+exec+wait of /bin/true with the shim (daemon running, so
every fork registers) against the same loop without it and with an empty preloaded library,
interleaved; and the daemon's CPU and wakeups per registration. Prints the Performance table's
rows (section 3).

Usage: shim_ratio.py --loop FORK_EXEC_TRUE [--samples N] [--iterations M]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

_top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path[:0] = [os.path.join(_top, "tests"), os.path.join(_top, "python")]
import orphtest as ot  # noqa: E402


def batch(loop, iterations, env):
    r = subprocess.run([loop, str(iterations)], env=env, capture_output=True, text=True,
                       check=True, timeout=600)
    return int(r.stdout) / iterations / 1000.0  # us per fork+exec+wait


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", required=True, help="the fork_exec_true program")
    ap.add_argument("--samples", type=int, default=21, help="interleaved rounds of batches")
    # Long enough that a burst's ends (the daemon's wakeups to name the last children) weigh
    # little against the forks' own.
    ap.add_argument("--iterations", type=int, default=1000, help="fork+exec+wait per batch")
    ap.add_argument("--empty", help="an empty library: its preload cost is measured alongside")
    args = ap.parse_args()

    plain = {k: v for k, v in os.environ.items()
             if k not in ("LD_PRELOAD", "ORPHAND_SOCKET", "ORPHAND_DEBUG")}
    with ot.Daemon() as d:
        shim = dict(plain, LD_PRELOAD=ot.SHIM, ORPHAND_SOCKET=d.socket)
        variants = {"plain": plain, "shim": shim}
        if args.empty:
            variants["empty"] = dict(plain, LD_PRELOAD=args.empty)
        # Warm up caches (page cache, dynamic loader) for every variant.
        for env in variants.values():
            batch(args.loop, max(1, args.iterations // 4), env)
        us = {name: [] for name in variants}
        cpu, wakeups = [], []  # per shim batch, per fork
        for i in range(args.samples):
            # Rotate which variant goes first, so drift favours none.
            names = list(variants)
            names = names[i % len(names):] + names[:i % len(names)]
            for name in names:
                if name == "shim":
                    cpu0, wake0 = daemon_cpu(d.pid), daemon_wakeups(d.pid)
                us[name].append(batch(args.loop, args.iterations, variants[name]))
                if name == "shim":
                    cpu.append((daemon_cpu(d.pid) - cpu0) / args.iterations * 1e6)
                    wakeups.append((daemon_wakeups(d.pid) - wake0) / args.iterations)
        ot.check(d.alive(), "orphand died during the benchmark")
    med = {name: statistics.median(v) for name, v in us.items()}
    ratio = statistics.median(s / p for s, p in zip(us["shim"], us["plain"]))
    base = f"without the shim {med['plain']:.0f}"
    if "empty" in us:
        base += f"; an empty preload {med['empty']:.0f}"
    print(f"| 3. Shim: fork+exec+wait of /bin/true (us), {args.samples} x {args.iterations} "
          f"| {med['shim']:.0f} | {base} | {ratio:.3f}x | <= 1.10x | {met(ratio <= 1.10)} |")
    if "empty" in us:
        floor = statistics.median(s / e for s, e in zip(us["shim"], us["empty"]))
        empty_ratio = statistics.median(e / p for e, p in zip(us["empty"], us["plain"]))
        print(f"| 3. Shim over an empty preload, interleaved | {med['shim']:.0f} | an empty "
              f"preload {med['empty']:.0f} ({empty_ratio:.3f}x without) | {floor:.3f}x "
              f"| <= 1.06x | {met(floor <= 1.06)} |")
    # Medians of the batches, as for the times: a batch that shares the machine with something
    # else moves them little. The mean over all forks is shown beside.
    per_fork, wakes = statistics.median(cpu), statistics.median(wakeups)
    print(f"| 3. Daemon CPU per shim registration (us), median of {args.samples} batches of "
          f"{args.iterations} | {per_fork:.1f} | mean {statistics.fmean(cpu):.1f} | - "
          f"| <= 15 us | {met(per_fork <= 15)} |")
    print(f"| 3. Daemon wakeups per fork (voluntary context switches), median of batches "
          f"| {wakes:.2f} | mean {statistics.fmean(wakeups):.2f} | - | <= 1 | {met(wakes <= 1)} |")


def met(ok):
    return "yes" if ok else "**no**"


def daemon_cpu(pid):
    """CPU time of the whole daemon, every thread, in seconds: its CPU-time clock
    (MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED))."""
    return time.clock_gettime(((~pid) << 3) | 2)


def daemon_wakeups(pid):
    """Times the daemon's loop (its main thread) blocked and was woken."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    try:
        main()
    finally:
        ot.cleanup()
