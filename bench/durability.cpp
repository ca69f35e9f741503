// SPDX-License-Identifier: MIT
// Durability: what the binding log costs a registration (throughput and daemon CPU, with the log
// and without it, interleaved), and how long orphand takes to come back with its bindings after
// a restart (SIGTERM) and after a crash (SIGKILL), against a start with nothing to restore.
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
    double rate = 0;   // registrations per second
    double cpu_us = 0; // daemon CPU per registration
};

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
        uint64_t cpu0 = cpu_ns(d.pid());
        uint64_t t0 = now_ns();
        register_pairs(d, pairs);
        uint64_t t1 = now_ns();
        // The daemon's CPU includes what it defers to its idle time (a new parent's name and,
        // with the log, its identity): taken once it has settled.
        sleep_ns(200'000'000);
        uint64_t cpu1 = cpu_ns(d.pid());
        if (bindings(d) != n)
            die("registrations: the daemon holds %u bindings, expected %zu", bindings(d), n);
        c.rate = static_cast<double>(n) * 1e9 / static_cast<double>(t1 - t0);
        c.cpu_us = static_cast<double>(cpu1 - cpu0) / 1e3 / static_cast<double>(n);
    }
    if (durable)
        remove_dir(state);
    return c;
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
    int rounds = static_cast<int>(args.num("--rounds", 5));
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

    for (bool fan_out : {false, true}) {
        std::vector<double> rate[2], cpu[2];
        for (int r = 0; r < rounds; ++r) {
            for (int k = 0; k < 2; ++k) {
                bool durable = (k + r) % 2 == 0;
                Cost c = measure_registrations(bin, pool, count, fan_out, durable);
                rate[durable].push_back(c.rate);
                cpu[durable].push_back(c.cpu_us);
            }
        }
        const char *what = fan_out ? "parents of 100 new children (the shim's shape)"
                                   : "a new parent and child each";
        Summary on = summarize(rate[1]), off = summarize(rate[0]);
        Summary con = summarize(cpu[1]), coff = summarize(cpu[0]);
        double ratio = on.p50 / off.p50, cratio = con.p50 / coff.p50;
        row(fmt("Durability: registrations/s with the binding log, %s (%zu per round, one "
                "connection, legacy records; %d rounds)",
                what, count, rounds),
            fmt_num(on.p50) + " (" + fmt_num(on.min) + "–" + fmt_num(on.max) + ")",
            fmt_num(off.p50) + " (" + fmt_num(off.min) + "–" + fmt_num(off.max) + ") without",
            fmt("%.3f", ratio), "≥ 0.95", yes_no(ratio >= 0.95));
        row(fmt("Durability: daemon CPU µs per registration, %s (/proc/PID/schedstat, idle "
                "work included)",
                what),
            fmt_num(con.p50) + " (" + fmt_num(con.min) + "–" + fmt_num(con.max) + ")",
            fmt_num(coff.p50) + " (" + fmt_num(coff.min) + "–" + fmt_num(coff.max) + ") without",
            fmt("%.3f", cratio), "—", "—");
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
    note("Durability: the state directory is on tmpfs (/dev/shm), as the units' "
         "RuntimeDirectory= is; the largest size is the most bindings (parents of 100 "
         "children) whose processes the daemon can watch with this machine's RLIMIT_NOFILE "
         "(%ld) and that fit in pid_max",
         fd_limit);
    return 0;
}
