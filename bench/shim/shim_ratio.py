# SPDX-License-Identifier: MIT
"""Cost of orphand-forkwait.so: fork+exec+wait of /bin/true with the shim (daemon running, so
every fork registers) against the same loop without it and with an empty preloaded library,
interleaved; and the daemon's CPU and wakeups per registration. With --sink, the shim also sends
its datagrams to a minimal receiver that registers nothing: the floor of one wakeup per fork on
this machine, for the ratio and for the CPU. Prints the Performance table's rows (section 3).

Usage: shim_ratio.py --loop FORK_EXEC_TRUE [--empty LIB] [--sink RECEIVER] [--samples N]
                     [--iterations M]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path[:0] = [os.path.join(_top, "tests"), os.path.join(_top, "python")]
import orphand  # noqa: E402
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
    ap.add_argument("--sink", help="the minimal datagram receiver (datagram-sink): measured "
                    "alongside as the shim's floor")
    args = ap.parse_args()

    plain = {k: v for k, v in os.environ.items()
             if k not in ("LD_PRELOAD", "ORPHAND_SOCKET", "ORPHAND_DEBUG")}
    with ot.Daemon() as d, Sink(args.sink) as sink:
        shim = dict(plain, LD_PRELOAD=ot.SHIM, ORPHAND_SOCKET=d.socket)
        variants = {"plain": plain, "shim": shim}
        if args.empty:
            variants["empty"] = dict(plain, LD_PRELOAD=args.empty)
        if sink.pid:
            variants["sink"] = dict(plain, LD_PRELOAD=ot.SHIM, ORPHAND_SOCKET=sink.socket)
        # Warm up caches (page cache, dynamic loader) for every variant.
        warm = max(1, args.iterations // 4)
        for env in variants.values():
            batch(args.loop, warm, env)
        us = {name: [] for name in variants}
        # Per batch, per fork: CPU and wakeups of the receiver (orphand, or the sink).
        cpu, wakeups = {"shim": [], "sink": []}, {"shim": [], "sink": []}
        receiver = {"shim": d.pid, "sink": sink.pid}
        for i in range(args.samples):
            # Rotate which variant goes first, so drift favours none.
            names = list(variants)
            names = names[i % len(names):] + names[:i % len(names)]
            for name in names:
                pid = receiver.get(name)
                if pid:
                    cpu0, wake0 = daemon_cpu(pid), daemon_wakeups(pid)
                us[name].append(batch(args.loop, args.iterations, variants[name]))
                if pid:
                    cpu[name].append((daemon_cpu(pid) - cpu0) / args.iterations * 1e6)
                    wakeups[name].append((daemon_wakeups(pid) - wake0) / args.iterations)
        ot.check(d.alive(), "orphand died during the benchmark")
        if sink.pid:
            # The forks' registrations reached the sink as datagrams. A send that finds the
            # queue full falls back to a connection, which orphand serves and the sink does not:
            # a few are expected; more would make the sink's row measure less than orphand's.
            forks = warm + args.samples * args.iterations
            received = sink.close()
            print(f"- the minimal receiver got {received} datagrams for {forks} forks")
            ot.check(received >= 0.99 * forks,
                     f"the minimal receiver got {received} datagrams for {forks} forks")
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
        base = f"an empty preload {med['empty']:.0f} ({empty_ratio:.3f}x without)"
        if "sink" in us:
            sink_ratio = statistics.median(s / e for s, e in zip(us["sink"], us["empty"]))
            base += (f"; the shim with a minimal receiver {med['sink']:.0f} "
                     f"({sink_ratio:.3f}x the empty preload)")
        print(f"| 3. Shim over an empty preload, interleaved | {med['shim']:.0f} | {base} "
              f"| {floor:.3f}x | <= 1.06x | {met(floor <= 1.06)} |")
    # Medians of the batches, as for the times: a batch that shares the machine with something
    # else moves them little. The mean over all forks is shown beside.
    per_fork, wakes = statistics.median(cpu["shim"]), statistics.median(wakeups["shim"])
    base, ratio = f"mean {statistics.fmean(cpu['shim']):.1f}", "-"
    if cpu["sink"]:
        sink_cpu = statistics.median(cpu["sink"])
        base += f"; a minimal receiver {sink_cpu:.1f} per datagram"
        ratio = f"{per_fork / sink_cpu:.2f}x receiver"
    print(f"| 3. Daemon CPU per shim registration (us), median of {args.samples} batches of "
          f"{args.iterations} | {per_fork:.1f} | {base} | {ratio} | <= 15 us "
          f"| {met(per_fork <= 15)} |")
    base = f"mean {statistics.fmean(wakeups['shim']):.2f}"
    if wakeups["sink"]:
        base += f"; a minimal receiver {statistics.median(wakeups['sink']):.2f}"
    print(f"| 3. Daemon wakeups per fork (voluntary context switches), median of batches "
          f"| {wakes:.2f} | {base} | - | <= 1 | {met(wakes <= 1)} |")


class Sink:
    """The minimal datagram receiver (bench/shim/datagram_sink.c) on a private socket, or
    nothing (pid 0) without one."""

    def __init__(self, program):
        self.pid, self.socket, self._proc, self._dir = 0, None, None, None
        if not program:
            return
        self._dir = tempfile.mkdtemp(prefix="orphand-bench-sink-")
        # The shim sends to its socket's path plus the datagram suffix; the stream socket
        # itself does not exist, so nothing is ever registered.
        self.socket = os.path.join(self._dir, "sink.sock")
        self._proc = subprocess.Popen([program, self.socket + orphand.DATAGRAM_SUFFIX],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self._proc.stdout.readline().strip() != "ready":
            self.__exit__()
            ot.fail("the minimal receiver failed to start")
        self.pid = self._proc.pid

    def close(self):
        """Stops the receiver; returns how many datagrams it received."""
        self._proc.stdin.close()
        count = int(self._proc.stdout.read().strip() or -1)
        self._proc.wait(timeout=30)
        return count

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._proc and self._proc.poll() is None:
            self._proc.kill()  # by its own pid: it is this script's child
            self._proc.wait()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


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
