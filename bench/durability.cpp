// SPDX-License-Identifier: MIT
// Durability: what the binding log costs a registration (throughput and daemon CPU, with the log
// and without it, in pairs of rounds run next to each other), and how long orphand takes to come
// back with its bindings after a restart (SIGTERM) and after a crash (SIGKILL), against a start
// with nothing to restore.
#include <memory>

#include "bench_util.hpp"

using namespace orphand::bench;

namespace {

// A state directory on tmpfs, as the units' RuntimeDirectory= is.
std::string make_state_dir() {
    char tmpl[] = "/dev/shm/orphand-bench-state-XXXXXX";
    if (::mkdtemp(tmpl))
        return tmpl;
    return make_temp_dir();
}

void remove_dir(const std::string &dir) {
    std::string cmd = "rm -rf '" + dir + "'";
    (void)!std::system(cmd.c_str());
}

// Registers `pairs` (parent, child) as legacy records over one connection, then waits until the
// daemon has handled them all.
void register_pairs(const Daemon &d, const std::vector<std::pair<pid_t, pid_t>> &pairs) {
    Fd fd(connect_unix(d.socket()));
    std::vector<proto::Record> records;
    records.reserve(pairs.size());
    for (auto [parent, child] : pairs)
        records.push_back(
            {static_cast<uint32_t>(parent), static_cast<uint32_t>(child), proto::kRegister});
    write_all(fd.get(), records.data(), records.size() * sizeof(proto::Record));
    ping_barrier(fd.get());
}

uint32_t bindings(const Daemon &d) {
    Client c(d.socket());
    return c.status().bindings;
}

struct Cost {
    double rate = 0;     // registrations per second
    double cpu_us = 0;   // daemon CPU per registration
    double burst_s = 0;  // how long the registrations took
    double others_s = 0; // CPU time that the rest of the machine used meanwhile
};

// CPU time that the whole machine has been busy (steal included) since boot, in seconds, from
// /proc/stat: counted in clock ticks, so only sums over many bursts mean something.
double machine_busy_s() {
    FILE *f = std::fopen("/proc/stat", "re");
    if (!f)
        die("/proc/stat: %s", std::strerror(errno));
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                       steal = 0;
    int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system,
                        &idle, &iowait, &irq, &softirq, &steal);
    std::fclose(f);
    if (n != 8)
        die("/proc/stat: unreadable");
    return static_cast<double>(user + nice + system + irq + softirq + steal) /
           static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The CPU time of this benchmark (all its threads), in seconds.
double own_cpu_s() {
    struct timespec ts {};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The registrations of a round: a new parent and child each (`fan_out` false), or parents of
// 100 new children each, as the shim registers a shell's or a build's children.
std::vector<std::pair<pid_t, pid_t>> shape(const Pool &pool, size_t n, bool fan_out) {
    std::vector<std::pair<pid_t, pid_t>> pairs;
    size_t parents = (n + 99) / 100;
    for (size_t i = 0; i < n; ++i)
        pairs.emplace_back(fan_out ? pool[i / 100] : pool[2 * i],
                           fan_out ? pool[parents + i] : pool[2 * i + 1]);
    return pairs;
}

// The state letter of /proc/PID/stat: 'R' running or waiting for a CPU, 'S' asleep, ...
char proc_state(pid_t pid) {
    char path[64], buf[512];
    std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = std::fopen(path, "re");
    if (!f)
        die("%s: %s", path, std::strerror(errno));
    size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    const char *p = std::strrchr(buf, ')'); // the name before it may hold anything
    return p && p[1] == ' ' ? p[2] : '?';
}

// The daemon's CPU time once it has done the work it defers to its idle time: its main thread
// asleep and not run at all for 20 ms. A daemon that waits for a CPU is runnable ('R'), not
// asleep, so a busy machine does not end the wait early. Far shorter than a fixed pause long
// enough for a loaded machine, which leaves time for more rounds.
uint64_t settled_cpu_ns(pid_t pid) {
    uint64_t deadline = now_ns() + 5'000'000'000ull;
    uint64_t last = cpu_ns(pid);
    int quiet = 0;
    while (now_ns() < deadline) {
        sleep_ns(5'000'000);
        uint64_t cpu = cpu_ns(pid);
        quiet = cpu == last && proc_state(pid) == 'S' ? quiet + 1 : 0;
        if (quiet == 4)
            return cpu;
        last = cpu;
    }
    die("the daemon was still busy 5 s after its registrations");
}

Cost measure_registrations(const std::string &bin, const Pool &pool, size_t n, bool fan_out,
                           bool durable) {
    std::string state = durable ? make_state_dir() : "";
    Cost c;
    {
        Daemon d(bin, durable ? std::vector<std::string>{"--state-dir", state}
                              : std::vector<std::string>{"--no-state"});
        if (bindings(d) != 0)
            die("a fresh daemon holds bindings");
        auto pairs = shape(pool, n, fan_out);
        double busy0 = machine_busy_s(), own0 = own_cpu_s();
        uint64_t cpu0 = cpu_ns(d.pid());
        uint64_t t0 = now_ns();
        register_pairs(d, pairs);
        uint64_t t1 = now_ns();
        uint64_t cpu_burst = cpu_ns(d.pid());
        double busy1 = machine_busy_s(), own1 = own_cpu_s();
        // The daemon's CPU includes what it defers to its idle time (a new parent's name and,
        // with the log, its identity).
        uint64_t cpu1 = settled_cpu_ns(d.pid());
        if (bindings(d) != n)
            die("registrations: the daemon holds %u bindings, expected %zu", bindings(d), n);
        c.rate = static_cast<double>(n) * 1e9 / static_cast<double>(t1 - t0);
        c.cpu_us = static_cast<double>(cpu1 - cpu0) / 1e3 / static_cast<double>(n);
        c.burst_s = static_cast<double>(t1 - t0) / 1e9;
        c.others_s = (busy1 - busy0) - (own1 - own0) - static_cast<double>(cpu_burst - cpu0) / 1e9;
    }
    if (durable)
        remove_dir(state);
    return c;
}

// The value at quantile `q` (nearest rank, as summarize() takes its percentiles) of a sample set.
double quantile(std::vector<double> v, double q) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

// The median of the rounds' paired figures, how widely the pairs spread (interquartile range),
// and a distribution-free 95% confidence interval of the median: the order statistics k and
// n + 1 - k with P(Binomial(n, 1/2) < k) <= 2.5%. With fewer than 6 pairs no such k exists:
// the interval is then the whole range, and holds the median with less than 95%.
struct Paired {
    double p50 = 0, p25 = 0, p75 = 0, lo = 0, hi = 0;
};

Paired paired(std::vector<double> v) {
    Paired p;
    if (v.empty())
        return p;
    std::sort(v.begin(), v.end());
    p.p50 = quantile(v, 0.50);
    p.p25 = quantile(v, 0.25);
    p.p75 = quantile(v, 0.75);
    size_t n = v.size(), k = 0;
    double term = std::pow(0.5, static_cast<double>(n)), below = 0; // P(X = 0), P(X < 0)
    for (size_t j = 0; j < n / 2; ++j) {
        below += term; // P(X < j + 1)
        if (below > 0.025)
            break;
        k = j + 1;
        term = term * static_cast<double>(n - j) / static_cast<double>(j + 1);
    }
    p.lo = k == 0 ? v.front() : v[k - 1];
    p.hi = k == 0 ? v.back() : v[n - k];
    return p;
}

// Starts a daemon on `state` and waits until it answers STATUS with `expect` bindings: the time
// from fork to that answer, in ms. The daemon is returned running.
double time_start(const std::string &bin, const std::string &state, uint32_t expect,
                  std::unique_ptr<Daemon> *out) {
    uint64_t t0 = now_ns();
    auto d = std::make_unique<Daemon>(bin, std::vector<std::string>{"--state-dir", state});
    uint32_t got = bindings(*d); // answered once the restore is done
    uint64_t t1 = now_ns();
    if (got != expect)
        die("restore: the daemon holds %u bindings, expected %u; see %s", got, expect,
            d->log().c_str());
    *out = std::move(d);
    return static_cast<double>(t1 - t0) / 1e6;
}

struct Recovery {
    std::vector<double> empty, restart, crash;
};

// `n` bindings in the shape of a build or a worker pool: parents of 100 children each.
void measure_recovery(const std::string &bin, const Pool &pool, size_t n, Recovery *r) {
    size_t per_parent = std::min<size_t>(100, n);
    size_t parents = (n + per_parent - 1) / per_parent;
    std::vector<std::pair<pid_t, pid_t>> pairs;
    for (size_t i = 0; i < n; ++i)
        pairs.emplace_back(pool[i / per_parent], pool[parents + i]);

    std::string state = make_state_dir();
    std::unique_ptr<Daemon> d;
    r->empty.push_back(time_start(bin, state, 0, &d));
    register_pairs(*d, pairs);
    if (bindings(*d) != n)
        die("recovery: %u bindings registered, expected %zu", bindings(*d), n);
    d->stop(); // SIGTERM: a restart
    r->restart.push_back(time_start(bin, state, static_cast<uint32_t>(n), &d));
    ::kill(d->pid(), SIGKILL); // our own child, not yet reaped: a crash
    d->stop();
    r->crash.push_back(time_start(bin, state, static_cast<uint32_t>(n), &d));
    d->stop();
    remove_dir(state);
}

} // namespace

int main(int argc, char **argv) {
    Args args{argc, argv};
    std::string bin = daemon_path(args);
    // A new parent and child per registration, all watched at once: within the daemon's fd
    // capacity (RLIMIT_NOFILE here is often 20,000) and pid_max.
    size_t count = static_cast<size_t>(args.num("--count", 8000));
    // Rounds of a pair each: a 50 ms burst of registrations is at the mercy of whatever else
    // runs on the machine, and the median of the pairs needs many to hold still from one run to
    // the next. A round takes about 0.6 s a shape, more on a busy machine.
    int rounds = static_cast<int>(args.num("--rounds", 50));
    // Each pair's figures as a line below the table, to look at their spread.
    bool print_pairs = args.flag("--print-pairs");
    long fd_limit = raise_fd_limit();
    become_subreaper();

    // The daemon keeps min(1024, limit / 4) fds in reserve (daemon/server.cpp); of the rest
    // each watched process takes one. Parents of 100 children: n + n / 100 processes.
    long reserve = std::min<long>(1024, fd_limit / 4);
    long processes = fd_limit - reserve - 64;
    // And within pid_max, with room for everything else running.
    if (FILE *f = std::fopen("/proc/sys/kernel/pid_max", "re")) {
        long pid_max = 0;
        if (std::fscanf(f, "%ld", &pid_max) == 1 && pid_max > 0)
            processes = std::min(processes, pid_max * 3 / 4);
        std::fclose(f);
    }
    size_t most = static_cast<size_t>(processes * 100 / 101 / 100 * 100);
    std::vector<size_t> sizes;
    if (const char *s = args.get("--bindings", nullptr)) {
        for (const char *p = s; *p;) {
            sizes.push_back(std::strtoul(p, const_cast<char **>(&p), 10));
            if (*p == ',')
                ++p;
        }
    } else {
        sizes = {1000, 10000, most};
    }
    std::erase_if(sizes, [&](size_t n) { return n == 0 || n > most; });

    size_t pool_size =
        std::max(2 * count, sizes.empty() ? 0 : sizes.back() + sizes.back() / 100 + 1);
    Pool pool(pool_size);

    std::string other_load[2];
    for (bool fan_out : {false, true}) {
        // Each round is a pair: a daemon with the log and one without, run one right after the
        // other (which goes first alternates). Their ratio is what the log costs in that round,
        // under the load the machine had then: load that changes during the run (another job
        // starting) moves both sides of a pair, and the median leaves out the pairs that a
        // burst of load hit on one side only.
        std::vector<double> rate[2], cpu[2], rate_ratio, cpu_added;
        double burst_s = 0, others_s = 0;
        for (int r = 0; r < rounds; ++r) {
            Cost c[2];
            for (int k = 0; k < 2; ++k) {
                bool durable = (k + r) % 2 == 0;
                c[durable] = measure_registrations(bin, pool, count, fan_out, durable);
            }
            for (int durable = 0; durable < 2; ++durable) {
                rate[durable].push_back(c[durable].rate);
                cpu[durable].push_back(c[durable].cpu_us);
            }
            rate_ratio.push_back(c[1].rate / c[0].rate);
            cpu_added.push_back(c[1].cpu_us - c[0].cpu_us);
            burst_s += c[0].burst_s + c[1].burst_s;
            others_s += c[0].others_s + c[1].others_s;
            if (print_pairs)
                note("Durability pair %d%s: %.0f/s with the log, %.0f/s without (%.3f); %.2f µs "
                     "CPU with, %.2f without (%+.2f); other load %.1f and %.1f CPUs",
                     r, fan_out ? " (fan-out)" : "", c[1].rate, c[0].rate, rate_ratio.back(),
                     c[1].cpu_us, c[0].cpu_us, cpu_added.back(), c[1].others_s / c[1].burst_s,
                     c[0].others_s / c[0].burst_s);
        }
        // /proc/stat counts in 10 ms ticks: a second of bursts is the least that averages
        // them out.
        other_load[fan_out] = burst_s >= 1 ? fmt("%.2f", std::max(0.0, others_s / burst_s))
                                           : std::string("(too few bursts to tell)");
        const char *what = fan_out ? "parents of 100 new children (the shim's shape)"
                                   : "a new parent and child each";
        Summary on = summarize(rate[1]), off = summarize(rate[0]);
        Summary con = summarize(cpu[1]), coff = summarize(cpu[0]);
        Paired pr = paired(rate_ratio), pc = paired(cpu_added);
        double ratio = on.p50 / off.p50, cratio = con.p50 / coff.p50;
        row(fmt("Durability: registrations/s with the binding log, %s (%zu per round, one "
                "connection, legacy records; %d rounds, each a pair with the log and without)",
                what, count, rounds),
            fmt_num(on.p50) + " (" + fmt_num(on.min) + "–" + fmt_num(on.max) + ")",
            fmt_num(off.p50) + " (" + fmt_num(off.min) + "–" + fmt_num(off.max) + ") without",
            fmt("%.3f median of the pairs' ratios (95%% CI %.3f–%.3f, IQR %.3f–%.3f); %.3f ratio "
                "of the medians",
                pr.p50, pr.lo, pr.hi, pr.p25, pr.p75, ratio),
            "≥ 0.95 (pairs' median)", yes_no(pr.p50 >= 0.95));
        row(fmt("Durability: daemon CPU µs per registration, %s (/proc/PID/schedstat, idle "
                "work included)",
                what),
            fmt_num(con.p50) + " (" + fmt_num(con.min) + "–" + fmt_num(con.max) + ")",
            fmt_num(coff.p50) + " (" + fmt_num(coff.min) + "–" + fmt_num(coff.max) + ") without",
            fmt("%.3f", cratio), "—", "—");
        row(fmt("Durability: daemon CPU µs the binding log adds to a registration, %s (median "
                "of the pairs' differences, with minus without)",
                what),
            fmt("%+.2f (95%% CI %+.2f – %+.2f, IQR %+.2f – %+.2f)", pc.p50, pc.lo, pc.hi, pc.p25,
                pc.p75),
            fmt_num(coff.p50) + " without", fmt("%+.0f%%", 100 * pc.p50 / coff.p50), "—", "—");
    }

    for (size_t n : sizes) {
        Recovery rec;
        int recovery_rounds = std::max(1, std::min(rounds, 3));
        for (int r = 0; r < recovery_rounds; ++r)
            measure_recovery(bin, pool, n, &rec);
        Summary e = summarize(rec.empty), rs = summarize(rec.restart), cr = summarize(rec.crash);
        bool bound = n <= 10000;
        row(fmt("Recovery: %s bindings back after a restart (ms from exec to STATUS)",
                fmt_num(static_cast<double>(n)).c_str()),
            fmt_num(rs.p50) + " (max " + fmt_num(rs.max) + ")", fmt_num(e.p50) + " empty start",
            fmt("+%s ms", fmt_num(rs.p50 - e.p50).c_str()), bound ? "≤ 1,000 ms" : "—",
            bound ? yes_no(rs.max <= 1000) : "—");
        row(fmt("Recovery: %s bindings back after a crash (SIGKILL)",
                fmt_num(static_cast<double>(n)).c_str()),
            fmt_num(cr.p50) + " (max " + fmt_num(cr.max) + ")", fmt_num(e.p50) + " empty start",
            fmt("+%s ms", fmt_num(cr.p50 - e.p50).c_str()), bound ? "≤ 1,000 ms" : "—",
            bound ? yes_no(cr.max <= 1000) : "—");
    }
    note("Durability: the throughput target is checked on the median of the pairs' ratios; "
         "its 95%% CI (order statistics, no assumption on the distribution) says how far this "
         "run can tell, and a CI that holds 0.95 means it cannot. The ratio of the medians is "
         "shown beside it for comparison with earlier runs");
    // Other work slows both sides of a pair alike and so hides part of the log's cost: the
    // figures say under what load they were taken.
    note("Durability: while registrations were timed, the rest of the machine kept %s of its "
         "%ld CPUs busy on average (a new parent and child each), %s (parents of 100 "
         "children): /proc/stat less the daemon's and this benchmark's CPU. The busier it is, "
         "the closer to 1 the throughput ratio comes",
         other_load[0].c_str(), ::sysconf(_SC_NPROCESSORS_ONLN), other_load[1].c_str());
    note("Durability: the state directory is on tmpfs (/dev/shm), as the units' "
         "RuntimeDirectory= is; the largest size is the most bindings (parents of 100 "
         "children) whose processes the daemon can watch with this machine's RLIMIT_NOFILE "
         "(%ld) and that fit in pid_max",
         fd_limit);
    return 0;
}
