// SPDX-License-Identifier: MIT
// Fan-out kill: one parent with N children is SIGKILLed; time until its first and its last child
// are dead, with orphand (every pair registered with pidfds) and with PR_SET_PDEATHSIG, in
// alternating rounds.
#include <sys/epoll.h>

#include "bench_util.hpp"

using namespace orphand::bench;

namespace {

enum Mechanism { kOrphand, kPdeathsig, kMechanisms };

// Everything a round of one mechanism measured, in milliseconds after the parent's SIGKILL.
struct Outcome {
    double first_ms = 0;  // the first child's pidfd readable
    double last_ms = 0;   // the last child's pidfd readable
    double parent_ms = 0; // the parent's pidfd readable
    // Where the time went: CPU used from the SIGKILL to the last death by the daemon and by our
    // thread, and per child over its whole life (return from fork, set-up, exit).
    double daemon_cpu_ms = 0, bench_cpu_ms = 0, child_cpu_us = 0;
};

uint64_t thread_cpu_ns() {
    struct timespec ts {};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// CPU time of our reaped children, in microseconds.
double children_cpu_us() {
    struct rusage ru {};
    ::getrusage(RUSAGE_CHILDREN, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

// Reads `size` bytes, giving up (and the benchmark) when nothing arrives for `timeout_ms`.
void read_within(int fd, void *data, size_t size, int timeout_ms, const char *what) {
    char *p = static_cast<char *>(data);
    while (size > 0) {
        if (!readable(fd, timeout_ms))
            die("%s: nothing for %d ms", what, timeout_ms);
        ssize_t n = ::read(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("%s: %s", what, n == 0 ? "unexpected EOF" : std::strerror(errno));
        p += n;
        size -= static_cast<size_t>(n);
    }
}

// A parent P forked by us and the `n` idle children that P's main thread forked, as make or a
// shell would. Children keep SIGTERM's default action; with `pdeathsig` each has asked for
// SIGTERM when P dies. We are the subreaper: the children are reparented to us when P dies, and
// reaped by us after the measurement. Every pidfd is owned (die() kills them) from the moment we
// hold it.
class Family {
  public:
    Family(size_t n, bool pdeathsig) {
        int sync[2];
        if (::pipe2(sync, O_CLOEXEC) < 0)
            die("pipe2: %s", std::strerror(errno));
        parent_ = ::fork();
        if (parent_ < 0)
            die("fork: %s", std::strerror(errno));
        if (parent_ == 0) {
            // P and its children hold nothing of ours but the pipe's write end.
            ::close_range(3, static_cast<unsigned>(sync[1]) - 1, 0);
            ::close_range(static_cast<unsigned>(sync[1]) + 1, ~0u, 0);
            parent_main(n, pdeathsig, sync[1]);
        }
        ::close(sync[1]);
        Fd ready(sync[0]);
        parent_fd_.reset(pidfd_open(parent_));
        if (!parent_fd_.valid())
            die("pidfd_open (parent): %s", std::strerror(errno));
        own(parent_fd_.get());
        // Each child writes its pid once it is set up (PR_SET_PDEATHSIG in place). The pipe
        // holds 16,384 pids, and we read while they are forked anyway.
        children_.resize(n);
        child_fds_.reserve(n);
        for (size_t i = 0; i < n; ++i) {
            read_within(ready.get(), &children_[i], sizeof(pid_t), 60000, "children's start");
            if (children_[i] <= 0)
                die("the parent could not fork child %zu of %zu", i, n);
            Fd fd(pidfd_open(children_[i]));
            if (!fd.valid())
                die("pidfd_open (child %zu of %zu): %s", i, n, std::strerror(errno));
            own(fd.get());
            child_fds_.push_back(std::move(fd));
        }
    }

    // Normally everything is dead and reaped already; this ends it all if a round failed.
    ~Family() {
        for (const Fd &fd : child_fds_)
            pidfd_kill(fd.get(), SIGKILL);
        pidfd_kill(parent_fd_.get(), SIGKILL);
        // The parent first: its exit hands its children to us, the subreaper.
        reap_pidfd(parent_fd_.get());
        disown(parent_fd_.get());
        for (const Fd &fd : child_fds_) {
            reap_pidfd(fd.get());
            disown(fd.get());
        }
    }
    Family(const Family &) = delete;
    Family &operator=(const Family &) = delete;

    pid_t parent() const { return parent_; }
    int parent_fd() const { return parent_fd_.get(); }
    size_t size() const { return children_.size(); }
    pid_t child(size_t i) const { return children_[i]; }
    int child_fd(size_t i) const { return child_fds_[i].get(); }

    // SIGKILLs the parent and waits on every child's pidfd with one epoll set (armed before the
    // clock starts; each fd reports once), then reaps all of them, checking that each child was
    // ended by SIGTERM, the signal both mechanisms send.
    Outcome kill_and_wait(pid_t daemon) {
        size_t n = children_.size();
        Fd ep(::epoll_create1(EPOLL_CLOEXEC));
        const uint64_t kParentKey = ~uint64_t{0};
        for (size_t i = 0; i <= n; ++i) {
            struct epoll_event ev {};
            ev.events = EPOLLIN | EPOLLONESHOT;
            ev.data.u64 = i < n ? i : kParentKey;
            if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, i < n ? child_fds_[i].get() : parent_fd_.get(),
                            &ev) < 0)
                die("epoll_ctl: %s", std::strerror(errno));
        }
        std::vector<struct epoll_event> evs(512);
        size_t dead = 0;
        bool parent_dead = false;
        uint64_t first_ns = 0, last_ns = 0, parent_ns = 0;
        uint64_t daemon0 = cpu_ns(daemon), bench0 = thread_cpu_ns();
        uint64_t t0 = now_ns();
        if (pidfd_kill(parent_fd_.get(), SIGKILL) < 0)
            die("pidfd_send_signal (parent): %s", std::strerror(errno));
        while (dead < n || !parent_dead) {
            int k = ::epoll_wait(ep.get(), evs.data(), static_cast<int>(evs.size()), 60000);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                die("%zu of %zu children still alive 60 s after their parent's SIGKILL", n - dead,
                    n);
            uint64_t t = now_ns();
            for (int i = 0; i < k; ++i) {
                if (evs[static_cast<size_t>(i)].data.u64 == kParentKey) {
                    parent_ns = t;
                    parent_dead = true;
                    continue;
                }
                if (dead++ == 0)
                    first_ns = t;
            }
            if (dead == n && last_ns == 0)
                last_ns = t;
        }
        Outcome o;
        o.bench_cpu_ms = static_cast<double>(thread_cpu_ns() - bench0) / 1e6;
        o.daemon_cpu_ms = static_cast<double>(cpu_ns(daemon) - daemon0) / 1e6;
        auto ms = [t0](uint64_t t) { return static_cast<double>(t - t0) / 1e6; };
        o.first_ms = ms(first_ns);
        o.last_ms = ms(last_ns);
        o.parent_ms = ms(parent_ns);
        reap_checked(parent_fd_.get(), SIGKILL, "parent");
        double before = children_cpu_us();
        for (const Fd &fd : child_fds_)
            reap_checked(fd.get(), SIGTERM, "child");
        o.child_cpu_us = (children_cpu_us() - before) / static_cast<double>(n);
        return o;
    }

  private:
    // P: forks the children from its main thread, then idles until killed. A failed fork takes
    // P and the children forked so far down: they are alone in P's process group.
    [[noreturn]] static void parent_main(size_t n, bool pdeathsig, int ready) {
        ::setpgid(0, 0);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); // never outlive the benchmark
        pid_t me = ::getpid();
        for (size_t i = 0; i < n; ++i) {
            pid_t c = ::fork();
            if (c < 0) {
                pid_t failed = -1;
                (void)!::write(ready, &failed, sizeof(failed));
                ::kill(0, SIGKILL); // our own process group: P and its children only
                _exit(1);
            }
            if (c == 0)
                child_main(pdeathsig, me, ready);
        }
        for (;;)
            ::pause();
    }

    [[noreturn]] static void child_main(bool pdeathsig, pid_t parent, int ready) {
        // SIGTERM's default action, whatever the benchmark was started with.
        ::signal(SIGTERM, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
        if (pdeathsig)
            ::prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
        if (::getppid() != parent)
            _exit(1); // cannot happen: P lives until every child has reported
        pid_t self = ::getpid();
        (void)!::write(ready, &self, sizeof(self));
        for (;;)
            ::pause();
    }

    static void reap_checked(int pidfd, int expected_signal, const char *what) {
        siginfo_t si{};
        while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED) <
               0) {
            if (errno != EINTR)
                die("waitid (%s): %s", what, std::strerror(errno));
        }
        if (si.si_code != CLD_KILLED || si.si_status != expected_signal)
            die("%s %d ended with code %d, status %d; expected to be killed by signal %d", what,
                si.si_pid, si.si_code, si.si_status, expected_signal);
    }

    pid_t parent_ = -1;
    Fd parent_fd_;
    std::vector<pid_t> children_;
    std::vector<Fd> child_fds_;
};

// Sends one v1 REGISTER per child, with the daemon's default policy (no flags) and the child's
// and the parent's pidfds in SCM_RIGHTS, pipelined in batches; every reply is checked.
void register_family(Client &client, const Family &f) {
    // Each request is its own skb (fds do not merge): small batches stay far from the socket
    // buffers' limits, where both sides could block on a full send buffer.
    const size_t kBatch = 64;
    size_t n = f.size();
    for (size_t i = 0; i < n; i += kBatch) {
        size_t batch = std::min(kBatch, n - i);
        for (size_t j = 0; j < batch; ++j) {
            proto::Request q = Client::request(proto::kRegister, static_cast<uint32_t>(f.parent()),
                                               static_cast<uint32_t>(f.child(i + j)));
            int fds[2] = {f.child_fd(i + j), f.parent_fd()}; // the child's first
            client.send(q, fds, 2);
        }
        // liborphand checks that the replies come in the order of the requests.
        for (size_t j = 0; j < batch; ++j) {
            proto::Reply r = client.receive();
            if (r.error != 0 || r.reason != proto::kOk)
                die("REGISTER of child %zu: %s", i + j, proto::reason_text(r.reason));
        }
    }
}

// The daemon's own account of its kill loop, from its log: the largest "N us after its death"
// of the kill notices written since `*offset` (the last signal sent, counted from when the
// daemon handled the parent's exit), and how many notices there were.
struct KillLog {
    size_t notices = 0;
    double last_signal_ms = 0;
};

KillLog read_kill_log(const std::string &path, long *offset) {
    KillLog k;
    FILE *f = std::fopen(path.c_str(), "re");
    if (!f)
        return k;
    std::fseek(f, *offset, SEEK_SET);
    char line[1024];
    const char *const kTail = " us after its death";
    while (std::fgets(line, sizeof(line), f)) {
        const char *end = std::strstr(line, kTail);
        if (!end)
            continue;
        const char *p = end;
        while (p > line && p[-1] >= '0' && p[-1] <= '9')
            --p;
        ++k.notices;
        k.last_signal_ms = std::max(k.last_signal_ms, std::strtod(p, nullptr) / 1000.0);
    }
    *offset = std::ftell(f);
    std::fclose(f);
    return k;
}

std::vector<size_t> parse_counts(const char *text) {
    std::vector<size_t> counts;
    for (const char *p = text; *p;) {
        char *end = nullptr;
        long v = std::strtol(p, &end, 10);
        if (end == p || v <= 0)
            die("--children: a comma-separated list of positive counts, got \"%s\"", text);
        counts.push_back(static_cast<size_t>(v));
        p = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            die("--children: a comma-separated list of positive counts, got \"%s\"", text);
    }
    if (counts.empty())
        die("--children: no count given");
    return counts;
}

std::string cell(const Summary &s) {
    return fmt("%s (min %s, max %s)", fmt_num(s.p50).c_str(), fmt_num(s.min).c_str(),
               fmt_num(s.max).c_str());
}

} // namespace

int main(int argc, char **argv) {
    Args args{argc, argv};
    std::vector<size_t> counts = parse_counts(args.get("--children", "100,400,2000"));
    int rounds = static_cast<int>(args.num("--rounds", 5));
    // The daemon's defaults (orphand(8)), restated because bench_util's Daemon passes
    // "--log-level warning --grace never" for the other benchmarks; later options win.
    std::string grace = args.get("--grace", "5");
    std::string log_level = args.get("--log-level", "info");
    if (rounds < 1)
        die("--rounds: at least 1");
    become_subreaper();
    ::signal(SIGPIPE, SIG_IGN);
    size_t most = *std::max_element(counts.begin(), counts.end());
    long fd_limit = raise_fd_limit();
    if (fd_limit < static_cast<long>(most) + 64)
        die("RLIMIT_NOFILE allows %ld fds; %zu children need %zu", fd_limit, most, most + 64);

    // The daemon inherits our raised limit (and raises its soft limit to its hard one itself);
    // it needs one fd per watched process plus its reserve of 1,024.
    Daemon daemon(daemon_path(args), {"--grace", grace, "--log-level", log_level});
    Client client(daemon.socket());
    proto::StatusInfo s0 = client.status();
    if (s0.default_signal != SIGTERM)
        die("the daemon's default signal is %u, not SIGTERM", s0.default_signal);
    uint64_t kills = s0.kills;
    long log_offset = 0;

    const size_t sizes = counts.size();
    std::vector<std::vector<double>> first(sizes * kMechanisms), last(sizes * kMechanisms),
        parent(sizes * kMechanisms), daemon_cpu(sizes * kMechanisms),
        bench_cpu(sizes * kMechanisms), child_cpu(sizes * kMechanisms), kill_loop(sizes);
    for (int round = 0; round < rounds; ++round) {
        for (size_t c = 0; c < sizes; ++c) {
            for (int k = 0; k < kMechanisms; ++k) {
                // Round 0 runs orphand first, round 1 PR_SET_PDEATHSIG first, and so on.
                Mechanism m = (k + round) % 2 == 0 ? kOrphand : kPdeathsig;
                Family family(counts[c], m == kPdeathsig);
                if (m == kOrphand) {
                    register_family(client, family);
                    proto::StatusInfo s = client.status();
                    if (s.bindings != family.size() || s.parents != 1 ||
                        s.children != family.size())
                        die("daemon holds %u bindings (%u parents, %u children), expected %zu",
                            s.bindings, s.parents, s.children, family.size());
                }
                Outcome o = family.kill_and_wait(daemon.pid());
                size_t i = c * kMechanisms + m;
                first[i].push_back(o.first_ms);
                last[i].push_back(o.last_ms);
                parent[i].push_back(o.parent_ms);
                daemon_cpu[i].push_back(o.daemon_cpu_ms);
                bench_cpu[i].push_back(o.bench_cpu_ms);
                child_cpu[i].push_back(o.child_cpu_us);
                if (m == kOrphand) {
                    uint64_t now = settle(client);
                    if (now - kills != family.size())
                        die("the daemon counted %llu kills, expected %zu",
                            static_cast<unsigned long long>(now - kills), family.size());
                    kills = now;
                    KillLog log = read_kill_log(daemon.log(), &log_offset);
                    if (log.notices > 0)
                        kill_loop[c].push_back(log.last_signal_ms);
                }
            }
        }
    }

    std::string policy = grace == "never" ? "SIGTERM, never SIGKILL"
                                          : fmt("SIGTERM, SIGKILL after %s s", grace.c_str());
    std::string logging = fmt("daemon log: stderr text at level %s to a file", log_level.c_str());
    for (size_t c = 0; c < sizes; ++c) {
        size_t n = counts[c];
        size_t o = c * kMechanisms + kOrphand, k = c * kMechanisms + kPdeathsig;
        Summary lo = summarize(last[o]), lk = summarize(last[k]);
        Summary fo = summarize(first[o]), fk = summarize(first[k]);
        Summary po = summarize(parent[o]), pk = summarize(parent[k]);
        std::string loop = "no kill notices in the daemon's log";
        if (!kill_loop[c].empty())
            loop = fmt("the daemon's kill loop (its log: parent's exit handled to last signal "
                       "sent) median %s ms",
                       fmt_num(summarize(kill_loop[c]).p50).c_str());
        note("fan-out, 1 parent with %zu children, %d rounds each: last child dead: orphand %s ms, "
             "PR_SET_PDEATHSIG %s ms; first child dead: orphand %s ms, PR_SET_PDEATHSIG %s ms; "
             "parent's pidfd readable: orphand rounds %s ms, PR_SET_PDEATHSIG rounds %s ms; %s",
             n, rounds, cell(lo).c_str(), cell(lk).c_str(), cell(fo).c_str(), cell(fk).c_str(),
             cell(po).c_str(), cell(pk).c_str(), loop.c_str());
        auto med = [](const std::vector<double> &v) { return fmt_num(summarize(v).p50); };
        note("fan-out, %zu children, CPU used (medians; orphand rounds / PR_SET_PDEATHSIG rounds): "
             "by the daemon from the SIGKILL to the last death %s / %s ms, by this benchmark's "
             "epoll loop %s / %s ms; by each child over its life (fork return, set-up, exit) %s / "
             "%s us",
             n, med(daemon_cpu[o]).c_str(), med(daemon_cpu[k]).c_str(), med(bench_cpu[o]).c_str(),
             med(bench_cpu[k]).c_str(), med(child_cpu[o]).c_str(), med(child_cpu[k]).c_str());
        row(fmt("8. Fan-out, 1 parent with %zu children: last child dead (ms), %d rounds; "
                "default policy %s; %s",
                n, rounds, policy.c_str(), logging.c_str()),
            cell(lo), "PR_SET_PDEATHSIG " + cell(lk), fmt("%.2fx", lo.p50 / lk.p50), "-", "-");
        row(fmt("8. Fan-out, %zu children: first child dead (ms)", n), cell(fo),
            "PR_SET_PDEATHSIG " + cell(fk), fmt("%.2fx", fo.p50 / fk.p50), "-", "-");
    }
    return 0;
}
