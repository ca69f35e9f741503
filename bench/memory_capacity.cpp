// SPDX-License-Identifier: MIT
// Memory, idle cost and capacity: the daemon filled with bindings until it refuses, its RSS and
// the kernel's slab per binding (against a minimal epoll + pidfd watcher), its wakeups while
// idle, and the refusal at the fd limit.
#include <sys/epoll.h>

#include "bench_util.hpp"

using namespace orphand::bench;

namespace {

// Kernel slab per binding for a minimal watcher in this process: the two pidfds and the two
// epoll items a binding needs at the least.
double watcher_slab_per_binding(const Pool &pool, size_t pairs) {
    Fd ep(::epoll_create1(EPOLL_CLOEXEC));
    std::vector<int> fds;
    fds.reserve(2 * pairs);
    long before = kernel_slab_kb();
    for (size_t i = 0; i < 2 * pairs; ++i) {
        int fd = pidfd_open(pool[i]);
        if (fd < 0)
            die("pidfd_open: %s", std::strerror(errno));
        struct epoll_event ev {};
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev);
        fds.push_back(fd);
    }
    long after = kernel_slab_kb();
    for (int fd : fds)
        ::close(fd);
    return static_cast<double>(after - before) * 1024.0 / static_cast<double>(pairs);
}

struct Fill {
    size_t bindings = 0;
    double rss_per_binding = 0;  // bytes of anonymous memory
    double slab_per_binding = 0; // bytes
    proto::Reply refusal{};
    bool refused = false;
    long idle_switches = -1;
    bool alive_after = false, kills_after = false;
    double list_ms = 0, stop_ms = 0; // LIST of every binding; SIGTERM to exit
    std::string log_line;
};

// Registers pairs from the pool until the daemon refuses one (or the pool is used up).
Fill fill(const std::string &daemon_bin, const Pool &pool, long fd_limit, double idle_s) {
    Fill f;
    Daemon d(daemon_bin, {}, fd_limit);
    Client c(d.socket());
    long rss0 = proc_status_field(d.pid(), "RssAnon:");
    long slab0 = kernel_slab_kb();
    size_t pairs = pool.size() / 2;
    const size_t batch = 128;
    for (size_t i = 0; i < pairs && !f.refused; i += batch) {
        size_t k = std::min(batch, pairs - i);
        for (size_t j = 0; j < k; ++j)
            c.send(Client::kill_request(pool[2 * (i + j)], pool[2 * (i + j) + 1]));
        for (size_t j = 0; j < k; ++j) {
            proto::Reply r = c.receive();
            if (r.error == 0 && !f.refused)
                ++f.bindings;
            else if (r.error != 0 && !f.refused) {
                f.refused = true;
                f.refusal = r;
            }
        }
    }
    // Refused registrations must leave nothing behind: exactly the accepted ones are live.
    proto::StatusInfo s = c.status();
    if (s.bindings != f.bindings)
        die("daemon reports %u bindings, %zu were acknowledged", s.bindings, f.bindings);
    long slab1 = kernel_slab_kb();
    long rss1 = proc_status_field(d.pid(), "RssAnon:");
    if (f.bindings > 0) {
        f.rss_per_binding = static_cast<double>(rss1 - rss0) * 1024.0 / f.bindings;
        f.slab_per_binding = static_cast<double>(slab1 - slab0) * 1024.0 / f.bindings;
    }
    if (idle_s > 0) {
        // Let the daemon finish answering and go back to sleep: that switch is not idle cost.
        sleep_ns(200'000'000);
        long v0 = proc_status_field(d.pid(), "voluntary_ctxt_switches:");
        long n0 = proc_status_field(d.pid(), "nonvoluntary_ctxt_switches:");
        sleep_ns(static_cast<uint64_t>(idle_s * 1e9));
        long v1 = proc_status_field(d.pid(), "voluntary_ctxt_switches:");
        long n1 = proc_status_field(d.pid(), "nonvoluntary_ctxt_switches:");
        f.idle_switches = (v1 - v0) + (n1 - n0);
    }
    {
        uint64_t t0 = now_ns();
        std::vector<proto::BindingInfo2> infos = c.list();
        f.list_ms = static_cast<double>(now_ns() - t0) / 1e6;
    }
    // At the limit the daemon still answers, and a parent's death still kills its child (which
    // frees two fds).
    f.alive_after = c.call(Client::request(proto::kPing)).error == 0;
    if (f.bindings > 0) {
        Fd child(pidfd_open(pool[1]));
        ::kill(pool[0], SIGKILL); // our own unreaped child: see Pool
        f.kills_after = child.valid() && readable(child.get(), 10000);
    }
    if (FILE *log = std::fopen(d.log().c_str(), "re")) {
        char line[512];
        while (std::fgets(line, sizeof(line), log))
            if (std::strstr(line, "refused") && f.log_line.empty()) {
                f.log_line = line;
                if (!f.log_line.empty() && f.log_line.back() == '\n')
                    f.log_line.pop_back();
            }
        std::fclose(log);
    }
    uint64_t t0 = now_ns();
    d.stop();
    f.stop_ms = static_cast<double>(now_ns() - t0) / 1e6;
    return f;
}

} // namespace

int main(int argc, char **argv) {
    Args args{argc, argv};
    long own_limit = raise_fd_limit();
    long fd_limit = args.num("--fd-limit", own_limit);
    int rounds = static_cast<int>(args.num("--rounds", 3));
    double idle_s = static_cast<double>(args.num("--idle-seconds", 10));
    std::string daemon_bin = daemon_path(args);
    ::signal(SIGPIPE, SIG_IGN);

    // More processes than the daemon can hold: it must be the one to refuse. A fresh pool per
    // measurement, so that each pays for first-time pidfs inodes as a new process would.
    size_t pool_size = static_cast<size_t>(fd_limit) + 16;
    size_t watcher_pairs = std::min(pool_size / 2, static_cast<size_t>(own_limit - 64) / 2);
    std::vector<double> rss, slab, watcher;
    Fill first;
    for (int round = 0; round < rounds; ++round) {
        {
            Pool pool(2 * watcher_pairs);
            watcher.push_back(watcher_slab_per_binding(pool, watcher_pairs));
        }
        Pool pool(pool_size);
        Fill f = fill(daemon_bin, pool, fd_limit, round == 0 ? idle_s : 0);
        if (!f.refused)
            die("the daemon accepted all %zu bindings: the pool is too small to find its limit",
                f.bindings);
        rss.push_back(f.rss_per_binding);
        slab.push_back(f.slab_per_binding);
        if (round == 0)
            first = f;
    }
    Summary r = summarize(rss), s = summarize(slab), w = summarize(watcher);
    note("memory: %d rounds; daemon RSS per binding %s B median (min %s, max %s); slab per "
         "binding %s B daemon vs %s B minimal watcher (medians; Slab in /proc/meminfo is "
         "system-wide, so concurrent work on the machine adds noise)",
         rounds, fmt_num(r.p50).c_str(), fmt_num(r.min).c_str(), fmt_num(r.max).c_str(),
         fmt_num(s.p50).c_str(), fmt_num(w.p50).c_str());
    note("capacity: daemon RLIMIT_NOFILE %ld; refusal %d (%s), reason %u \"%s\"; daemon answers "
         "PING afterwards: %s; a bound parent's death still kills its child: %s",
         fd_limit, first.refusal.error, std::strerror(-first.refusal.error), first.refusal.reason,
         proto::reason_text(first.refusal.reason), first.alive_after ? "yes" : "no",
         first.kills_after ? "yes" : "no");
    note("at %zu bindings: LIST of all of them took %s ms; SIGTERM to exit took %s ms",
         first.bindings, fmt_num(first.list_ms).c_str(), fmt_num(first.stop_ms).c_str());
    if (!first.log_line.empty())
        note("the daemon's log at the refusal: `%s`", first.log_line.c_str());

    row(fmt("5. Daemon RSS per binding (bytes), at %zu bindings", first.bindings), fmt_num(r.p50),
        "target", fmt("%.2fx", r.p50 / 256.0), "<= 256 B", yes_no(r.p50 <= 256));
    row("5. Kernel slab per binding (bytes)", fmt_num(s.p50),
        "minimal epoll + pidfd watcher " + fmt_num(w.p50), fmt("%.2fx", s.p50 / w.p50), "-", "-");
    row(fmt("5. Daemon wakeups in %.0f s idle (context switches)", idle_s),
        first.idle_switches < 0 ? "-" : fmt("%ld", first.idle_switches), "target 0", "-", "0",
        yes_no(first.idle_switches == 0));
    bool clean = first.refusal.error == -EMFILE && first.refusal.reason == proto::kOutOfFds &&
                 first.alive_after && first.kills_after;
    row(fmt("6. Capacity: live bindings at RLIMIT_NOFILE %ld", fd_limit), fmt_num(first.bindings),
        fmt("RLIMIT_NOFILE / 2 = %s", fmt_num(static_cast<double>(fd_limit) / 2).c_str()),
        fmt("%.3f", static_cast<double>(first.bindings) / (static_cast<double>(fd_limit) / 2)),
        "clean refusal", yes_no(clean));
    return 0;
}
