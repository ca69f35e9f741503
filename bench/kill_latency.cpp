// SPDX-License-Identifier: MIT
// Kill latency: SIGKILL of a parent to its child's pidfd becoming readable, with orphand,
// PR_SET_PDEATHSIG, a minimal epoll + pidfd watcher and a 2-second kill(pid, 0) poller,
// interleaved per iteration. Two shapes: a parent reaped later by us, bound with pidfds in
// acknowledged mode; and a parent whose own parent ignores SIGCHLD, so that the kernel reaps it
// the moment it dies, bound by raw pids in the 12-byte record.
#include <sys/epoll.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "bench_util.hpp"

using namespace orphand::bench;

namespace {

enum Mechanism { kOrphand, kPdeathsig, kWatcher, kPoller, kMechanisms };
const char *const kNames[] = {"orphand", "PR_SET_PDEATHSIG", "minimal epoll + pidfd watcher",
                              "2 s kill(pid, 0) poller"};

// A parent P and the child C it forked (so that PR_SET_PDEATHSIG can apply). Both idle; C is
// reparented to us (the subreaper) when P dies.
struct Pair {
    Pair() = default;
    Pair(Pair &&) = default;
    ~Pair() {
        disown(parent_fd.get());
        disown(child_fd.get());
    }
    pid_t parent = 0, child = 0;
    Fd parent_fd, child_fd;
    uint64_t killed_ns = 0;
    bool parent_reaped = false;
};

Pair make_pair(bool pdeathsig) {
    int sync[2];
    if (::pipe2(sync, O_CLOEXEC) < 0)
        die("pipe2: %s", std::strerror(errno));
    Pair p;
    p.parent = ::fork();
    if (p.parent < 0)
        die("fork: %s", std::strerror(errno));
    if (p.parent == 0) {
        pid_t me = ::getpid();
        pid_t c = ::fork();
        if (c == 0) {
            if (pdeathsig)
                ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            if (::getppid() != me)
                _exit(1); // the parent died before the prctl took effect
            pid_t self = ::getpid();
            (void)!::write(sync[1], &self, sizeof(self));
            for (;;)
                ::pause();
        }
        for (;;)
            ::pause();
    }
    ::close(sync[1]);
    Fd rd(sync[0]);
    read_all(rd.get(), &p.child, sizeof(p.child));
    p.parent_fd.reset(pidfd_open(p.parent));
    p.child_fd.reset(pidfd_open(p.child));
    own(p.parent_fd.get());
    own(p.child_fd.get());
    if (!p.parent_fd.valid() || !p.child_fd.valid())
        die("pidfd_open: %s", std::strerror(errno));
    return p;
}

// The second shape's parents come from a spawner that ignores SIGCHLD: the kernel reaps each P
// as it dies. P is an ordinary parent of C, which sets PR_SET_PDEATHSIG if asked ('d') and
// reports both pids itself once it has. C is reparented to us (the subreaper) when P dies.
[[noreturn]] void spawner_main(int sock) {
    ::signal(SIGCHLD, SIG_IGN);
    for (;;) {
        char mode;
        if (::read(sock, &mode, 1) != 1)
            _exit(0);
        pid_t p = ::fork();
        if (p < 0)
            _exit(1);
        if (p > 0)
            continue;
        ::signal(SIGCHLD, SIG_DFL);
        pid_t me = ::getpid();
        pid_t c = ::fork();
        if (c == 0) {
            if (mode == 'd')
                ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            if (::getppid() != me)
                _exit(1); // the parent died before the prctl took effect
            pid_t pair[2] = {me, ::getpid()};
            (void)!::write(sock, pair, sizeof(pair));
        }
        for (;;)
            ::pause();
    }
}

Pair spawned_pair(int spawner, bool pdeathsig) {
    char mode = pdeathsig ? 'd' : 'n';
    write_all(spawner, &mode, 1);
    pid_t pair[2];
    read_all(spawner, pair, sizeof(pair));
    Pair p;
    p.parent = pair[0];
    p.child = pair[1];
    p.parent_fd.reset(pidfd_open(p.parent));
    p.child_fd.reset(pidfd_open(p.child));
    if (!p.parent_fd.valid() || !p.child_fd.valid())
        die("pidfd_open: %s", std::strerror(errno));
    own(p.child_fd.get());
    p.parent_reaped = true; // by the kernel, at its death
    return p;
}

// Kills P and waits for C's pidfd, reaping both. Returns the latency in microseconds.
double kill_and_wait(Pair &p) {
    p.killed_ns = now_ns();
    if (pidfd_kill(p.parent_fd.get(), SIGKILL) < 0)
        die("pidfd_send_signal: %s", std::strerror(errno));
    uint64_t dead_ns = 0;
    bool child_dead = false;
    while (!child_dead || !p.parent_reaped) {
        struct pollfd fds[2] = {{p.child_fd.get(), POLLIN, 0}, {p.parent_fd.get(), POLLIN, 0}};
        int n = ::poll(fds, p.parent_reaped ? 1 : 2, 30000);
        if (n <= 0)
            die("child %d still alive 30 s after its parent's SIGKILL", p.child);
        if (!child_dead && fds[0].revents) {
            dead_ns = now_ns();
            child_dead = true;
        }
        if (!p.parent_reaped && fds[1].revents) {
            reap_pidfd(p.parent_fd.get());
            p.parent_reaped = true;
        }
    }
    reap_pidfd(p.child_fd.get());
    return static_cast<double>(dead_ns - p.killed_ns) / 1000.0;
}

// The original orphand's approach: every 2 s, kill(parent, 0) for each pair; ESRCH means the
// parent is gone, so kill the child. Runs as its own process; pairs arrive over a pipe.
[[noreturn]] void poller_main(int pairs_fd, uint64_t interval_ns) {
    std::vector<std::pair<pid_t, pid_t>> watched;
    ::fcntl(pairs_fd, F_SETFL, O_NONBLOCK);
    for (;;) {
        sleep_ns(interval_ns);
        pid_t pair[2];
        while (::read(pairs_fd, pair, sizeof(pair)) == sizeof(pair))
            watched.emplace_back(pair[0], pair[1]);
        for (size_t i = 0; i < watched.size();) {
            if (::kill(watched[i].first, 0) < 0 && errno == ESRCH) {
                ::kill(watched[i].second, SIGKILL);
                watched[i] = watched.back();
                watched.pop_back();
            } else {
                ++i;
            }
        }
    }
}

// The floor for any watcher in user space: one epoll loop over parents' pidfds that sends
// SIGKILL to the child's pidfd, nothing else. Registration is acknowledged with one byte, like
// orphand's acknowledged mode.
[[noreturn]] void watcher_main(int sock) {
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev {};
    ev.events = EPOLLIN;
    ev.data.u64 = ~uint64_t{0};
    ::epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev);
    for (;;) {
        struct epoll_event evs[16];
        int n = ::epoll_wait(ep, evs, 16, -1);
        for (int i = 0; i < n; ++i) {
            if (evs[i].data.u64 == ~uint64_t{0}) {
                pid_t pair[2];
                if (::read(sock, pair, sizeof(pair)) != sizeof(pair))
                    _exit(0);
                int parent = pidfd_open(pair[0]), child = pidfd_open(pair[1]);
                struct epoll_event pev {};
                pev.events = EPOLLIN;
                pev.data.u64 = (static_cast<uint64_t>(parent) << 32) | static_cast<uint32_t>(child);
                ::epoll_ctl(ep, EPOLL_CTL_ADD, parent, &pev);
                char ack = 1;
                (void)!::write(sock, &ack, 1);
                continue;
            }
            int parent = static_cast<int>(evs[i].data.u64 >> 32);
            int child = static_cast<int>(evs[i].data.u64 & 0xffffffffu);
            pidfd_kill(child, SIGKILL);
            ::epoll_ctl(ep, EPOLL_CTL_DEL, parent, nullptr);
            ::close(parent);
            ::close(child);
        }
    }
}

// Completes poller samples in the background: the poller's latency is about a second, so its
// samples overlap each other (up to a cap) while the other two mechanisms are measured.
class PollerSamples {
  public:
    explicit PollerSamples(std::vector<double> *out) : out_(out), epoll_(::epoll_create1(0)) {
        thread_ = std::thread([this] { run(); });
    }
    ~PollerSamples() {
        stop_ = true;
        thread_.join();
    }
    size_t in_flight() const { return in_flight_; }
    void add(Pair *p) {
        ++in_flight_;
        struct epoll_event ev {};
        ev.events = EPOLLIN;
        ev.data.u64 = reinterpret_cast<uintptr_t>(p) | 1; // the parent
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, p->parent_fd.get(), &ev);
        ev.data.u64 = reinterpret_cast<uintptr_t>(p); // the child
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, p->child_fd.get(), &ev);
    }

  private:
    void run() {
        struct epoll_event evs[64];
        while (!stop_ || in_flight_ > 0) {
            int n = ::epoll_wait(epoll_.get(), evs, 64, 100);
            uint64_t t = now_ns();
            for (int i = 0; i < n; ++i) {
                auto *p = reinterpret_cast<Pair *>(evs[i].data.u64 & ~uint64_t{1});
                if (evs[i].data.u64 & 1) {
                    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, p->parent_fd.get(), nullptr);
                    reap_pidfd(p->parent_fd.get());
                    p->parent_reaped = true;
                    continue;
                }
                ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, p->child_fd.get(), nullptr);
                {
                    std::lock_guard<std::mutex> lock(mutex_);
                    out_->push_back(static_cast<double>(t - p->killed_ns) / 1000.0);
                }
                reap_pidfd(p->child_fd.get());
                if (!p->parent_reaped) {
                    // Rare: the child died first in this batch; the parent's event follows.
                    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, p->parent_fd.get(), nullptr);
                    reap_pidfd(p->parent_fd.get());
                }
                delete p;
                --in_flight_;
            }
        }
    }

  public:
    std::mutex mutex_;

  private:
    std::vector<double> *out_;
    Fd epoll_;
    std::atomic<bool> stop_{false};
    std::atomic<size_t> in_flight_{0};
    std::thread thread_;
};

std::string us(double v) {
    return fmt_num(v);
}

} // namespace

int main(int argc, char **argv) {
    Args args{argc, argv};
    size_t samples = static_cast<size_t>(args.num("--samples", 2000));
    size_t max_in_flight = static_cast<size_t>(args.num("--poller-in-flight", 1024));
    uint64_t interval_ns = static_cast<uint64_t>(args.num("--poll-interval-ms", 2000)) * 1000000u;
    become_subreaper();
    ::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    // The poller is forked before any thread exists.
    int pp[2];
    if (::pipe2(pp, O_CLOEXEC) < 0)
        die("pipe2: %s", std::strerror(errno));
    pid_t poller = ::fork();
    if (poller == 0) {
        ::close(pp[1]);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        poller_main(pp[0], interval_ns);
    }
    ::close(pp[0]);
    Fd poller_fd(pidfd_open(poller)), pairs_out(pp[1]);
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair: %s", std::strerror(errno));
    pid_t watcher = ::fork();
    if (watcher == 0) {
        ::close(sv[0]);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        watcher_main(sv[1]);
    }
    ::close(sv[1]);
    Fd watcher_fd(pidfd_open(watcher)), watcher_sock(sv[0]);
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair: %s", std::strerror(errno));
    pid_t spawner = ::fork();
    if (spawner == 0) {
        ::close(sv[0]);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        spawner_main(sv[1]);
    }
    ::close(sv[1]);
    Fd spawner_fd(pidfd_open(spawner)), spawner_sock(sv[0]);

    Daemon daemon(daemon_path(args));
    Client client(daemon.socket());

    std::vector<double> lat[kMechanisms];
    for (auto &v : lat)
        v.reserve(samples);
    {
        PollerSamples background(&lat[kPoller]);
        size_t poller_started = 0;
        const uint64_t pace_ns = interval_ns / 256;
        uint64_t next_poller_ns = now_ns();
        for (size_t iter = 0;; ++iter) {
            size_t done_sync =
                std::min({lat[kOrphand].size(), lat[kPdeathsig].size(), lat[kWatcher].size()});
            if (done_sync >= samples && poller_started >= samples)
                break;
            // Rotate the order so no synchronous mechanism always runs first.
            Mechanism order[3] = {kOrphand, kPdeathsig, kWatcher};
            std::rotate(order, order + iter % 3, order + 3);
            for (Mechanism m : order) {
                if (lat[m].size() >= samples)
                    continue;
                Pair p = make_pair(m == kPdeathsig);
                if (m == kOrphand) {
                    proto::Reply r = client.call(Client::kill_request(p.parent, p.child));
                    if (r.error != 0)
                        die("REGISTER refused: %s", proto::reason_text(r.reason));
                } else if (m == kWatcher) {
                    pid_t pair[2] = {p.parent, p.child};
                    char ack;
                    write_all(watcher_sock.get(), pair, sizeof(pair));
                    read_all(watcher_sock.get(), &ack, 1);
                }
                lat[m].push_back(kill_and_wait(p));
            }
            // Poller samples start at a steady pace, so that their kills fall at random phases
            // of the poller's 2-second tick (starting them whenever a slot frees up would bunch
            // them just after each tick and bias the figure towards 2 s).
            uint64_t t = now_ns();
            if (poller_started < samples && t >= next_poller_ns &&
                background.in_flight() < max_in_flight) {
                next_poller_ns += pace_ns;
                auto *p = new Pair(make_pair(false));
                pid_t pair[2] = {p->parent, p->child};
                write_all(pairs_out.get(), pair, sizeof(pair));
                background.add(p);
                p->killed_ns = now_ns();
                pidfd_kill(p->parent_fd.get(), SIGKILL);
                ++poller_started;
            } else if (done_sync >= samples) {
                sleep_ns(next_poller_ns > t ? next_poller_ns - t : 1'000'000);
            }
        }
    }
    // The second shape: raw pids in the 12-byte record over one legacy connection (a PING's
    // echo says the record was handled), the watcher given raw pids as before.
    std::vector<double> raw[3];
    {
        Fd legacy(connect_unix(daemon.socket()));
        for (size_t iter = 0; std::min({raw[0].size(), raw[1].size(), raw[2].size()}) < samples;
             ++iter) {
            Mechanism order[3] = {kOrphand, kPdeathsig, kWatcher};
            std::rotate(order, order + iter % 3, order + 3);
            for (Mechanism m : order) {
                Pair p = spawned_pair(spawner_sock.get(), m == kPdeathsig);
                if (m == kOrphand) {
                    proto::Record r{static_cast<uint32_t>(p.parent), static_cast<uint32_t>(p.child),
                                    proto::kRegister};
                    write_all(legacy.get(), &r, sizeof(r));
                    ping_barrier(legacy.get());
                } else if (m == kWatcher) {
                    pid_t pair[2] = {p.parent, p.child};
                    char ack;
                    write_all(watcher_sock.get(), pair, sizeof(pair));
                    read_all(watcher_sock.get(), &ack, 1);
                }
                raw[m].push_back(kill_and_wait(p));
            }
        }
    }
    pidfd_kill(spawner_fd.get(), SIGKILL);
    reap_pidfd(spawner_fd.get());
    pidfd_kill(poller_fd.get(), SIGKILL);
    reap_pidfd(poller_fd.get());
    pidfd_kill(watcher_fd.get(), SIGKILL);
    reap_pidfd(watcher_fd.get());

    Summary s[kMechanisms];
    for (int m = 0; m < kMechanisms; ++m)
        s[m] = summarize(lat[m]);
    for (int m = 0; m < kMechanisms; ++m)
        note("kill latency, %s: n=%zu p50=%s us p90=%s us p99=%s us max=%s us", kNames[m], s[m].n,
             us(s[m].p50).c_str(), us(s[m].p90).c_str(), us(s[m].p99).c_str(),
             us(s[m].max).c_str());

    const Summary &o = s[kOrphand], &k = s[kPdeathsig], &w = s[kWatcher], &q = s[kPoller];
    note("kill latency, orphand / minimal watcher: p50 %.2fx, p99 %.2fx; minimal watcher / "
         "PR_SET_PDEATHSIG: p50 %.2fx, p99 %.2fx",
         o.p50 / w.p50, o.p99 / w.p99, w.p50 / k.p50, w.p99 / k.p99);
    Summary r[3];
    for (int m = 0; m < 3; ++m) {
        r[m] = summarize(raw[m]);
        note("kill latency, parent reaped at once, raw pids, %s: n=%zu p50=%s us p90=%s us "
             "p99=%s us max=%s us",
             kNames[m], r[m].n, us(r[m].p50).c_str(), us(r[m].p90).c_str(), us(r[m].p99).c_str(),
             us(r[m].max).c_str());
    }
    auto base = [&](double kv, double wv, double qv) {
        return fmt("PR_SET_PDEATHSIG %s; minimal watcher %s; poller %s", us(kv).c_str(),
                   us(wv).c_str(), us(qv).c_str());
    };
    double r50 = o.p50 / k.p50, r99 = o.p99 / k.p99;
    row(fmt("1. Kill latency p50 (us), n=%zu each", o.n), us(o.p50), base(k.p50, w.p50, q.p50),
        fmt("%.2fx PDEATHSIG, %.2fx watcher", r50, o.p50 / w.p50),
        "<= 1.15x PDEATHSIG, <= 1.05x watcher", yes_no(r50 <= 1.15 && o.p50 / w.p50 <= 1.05));
    row("1. Kill latency p90 (us)", us(o.p90), base(k.p90, w.p90, q.p90),
        fmt("%.2fx", o.p90 / k.p90), "-", "-");
    row("1. Kill latency p99 (us)", us(o.p99), base(k.p99, w.p99, q.p99), fmt("%.2fx", r99),
        "<= 1.5x PDEATHSIG", yes_no(r99 <= 1.5));
    row("1. Kill latency max (us)", us(o.max), base(k.max, w.max, q.max),
        fmt("%.2fx", o.max / k.max), "-", "-");
    const Summary &ro = r[kOrphand], &rk = r[kPdeathsig], &rw = r[kWatcher];
    auto raw_base = [&](double kv, double wv) {
        return fmt("PR_SET_PDEATHSIG %s; minimal watcher %s", us(kv).c_str(), us(wv).c_str());
    };
    row(fmt("1b. Kill latency p50 (us), parent reaped at once, raw pids, n=%zu each", ro.n),
        us(ro.p50), raw_base(rk.p50, rw.p50),
        fmt("%.2fx PDEATHSIG, %.2fx watcher", ro.p50 / rk.p50, ro.p50 / rw.p50),
        "<= 1.15x PDEATHSIG, <= 1.05x watcher",
        yes_no(ro.p50 / rk.p50 <= 1.15 && ro.p50 / rw.p50 <= 1.05));
    row("1b. Kill latency p99 (us)", us(ro.p99), raw_base(rk.p99, rw.p99),
        fmt("%.2fx PDEATHSIG", ro.p99 / rk.p99), "-", "-");
    return 0;
}
