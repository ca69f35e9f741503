# SPDX-License-Identifier: MIT
"""Cost of orphand-forkwait.so: fork+exec+wait of /bin/true with the shim (daemon running, so
every fork registers) against the same loop without it, interleaved; prints the median ratio
as a markdown table row.

Usage: shim_ratio.py --loop FORK_EXEC_TRUE [--samples N] [--iterations M]
"""

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
import orphtest as ot  # noqa: E402


def batch(loop, iterations, env):
    r = subprocess.run([loop, str(iterations)], env=env, capture_output=True, text=True,
                       check=True, timeout=600)
    return int(r.stdout) / iterations / 1000.0  # us per fork+exec+wait


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", required=True, help="the fork_exec_true program")
    ap.add_argument("--samples", type=int, default=31, help="interleaved pairs of batches")
    ap.add_argument("--iterations", type=int, default=200, help="fork+exec+wait per batch")
    ap.add_argument("--empty", help="an empty library: its preload cost is measured alongside")
    args = ap.parse_args()

    plain = {k: v for k, v in os.environ.items()
             if k not in ("LD_PRELOAD", "ORPHAND_SOCKET", "ORPHAND_DEBUG")}
    with ot.Daemon() as d:
        shim = dict(plain, LD_PRELOAD=ot.SHIM, ORPHAND_SOCKET=d.socket)
        # Warm up caches (page cache, dynamic loader) for both variants.
        batch(args.loop, max(1, args.iterations // 4), plain)
        batch(args.loop, max(1, args.iterations // 4), shim)
        empty = dict(plain, LD_PRELOAD=args.empty) if args.empty else None
        ratios, plain_us, shim_us, empty_us, empty_ratios = [], [], [], [], []
        for i in range(args.samples):
            # Alternate which variant goes first, so drift does not favour either.
            if i % 2:
                s = batch(args.loop, args.iterations, shim)
                p = batch(args.loop, args.iterations, plain)
            else:
                p = batch(args.loop, args.iterations, plain)
                s = batch(args.loop, args.iterations, shim)
            plain_us.append(p)
            shim_us.append(s)
            ratios.append(s / p)
            if empty:
                e = batch(args.loop, args.iterations, empty)
                empty_us.append(e)
                empty_ratios.append(e / p)
        ot.check(d.alive(), "orphand died during the benchmark")
    print("| benchmark | samples x iterations | without shim (us) | with shim (us) "
          "| median ratio |")
    print("|---|---|---|---|---|")
    print(f"| fork+exec+wait /bin/true | {args.samples} x {args.iterations} "
          f"| {statistics.median(plain_us):.0f} | {statistics.median(shim_us):.0f} "
          f"| {statistics.median(ratios):.3f} |")
    if empty_us:
        print(f"- an empty preloaded library (the floor under any preload shim): "
              f"{statistics.median(empty_us):.0f} us, median ratio "
              f"{statistics.median(empty_ratios):.3f}; the shim over it: "
              f"{statistics.median(shim_us) / statistics.median(empty_us):.3f}")


if __name__ == "__main__":
    try:
        main()
    finally:
        ot.cleanup()
