// SPDX-License-Identifier: MIT
// Registration throughput: bindings per second, each with a new live parent and child, over one
// connection (plain records, or pidfds passed) and with a connection per registration, against
// the kernel floors measured in the same rounds.
#include <sys/epoll.h>

#include <atomic>

#include "bench_util.hpp"

using namespace orphand::bench;

namespace {

enum Mode { kFloorKernel, kPlain, kPidfds, kFloorConnect, kPerConnection, kModes };
const char *const kNames[] = {
    "floor: 2 pidfd_open + 2 epoll_ctl", "orphand, one connection, plain records",
    "orphand, one connection, pidfds passed", "floor: connect+send+close to an accept loop",
    "orphand, one connection per registration"};

// What each registration sends: a legacy REGISTER record (processed without a reply).
proto::Record record(pid_t parent, pid_t child) {
    return {static_cast<uint32_t>(parent), static_cast<uint32_t>(child), proto::kRegister};
}

void expect_bindings(Client &c, size_t n, const char *mode) {
    proto::StatusInfo s = c.status();
    if (s.bindings != n)
        die("%s: daemon holds %u bindings, expected %zu", mode, s.bindings, n);
}

double floor_kernel(const Pool &pool, size_t n) {
    Fd ep(::epoll_create1(EPOLL_CLOEXEC));
    std::vector<int> fds(2 * n);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < 2; ++j) {
            int fd = pidfd_open(pool[2 * i + j]);
            if (fd < 0)
                die("pidfd_open: %s", std::strerror(errno));
            struct epoll_event ev {};
            ev.events = EPOLLIN;
            ev.data.u64 = 2 * i + j;
            if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
                die("epoll_ctl: %s", std::strerror(errno));
            fds[2 * i + j] = fd;
        }
    }
    uint64_t t1 = now_ns();
    for (int fd : fds)
        ::close(fd);
    return static_cast<double>(n) * 1e9 / static_cast<double>(t1 - t0);
}

double plain(const std::string &daemon_bin, const Pool &pool, size_t n) {
    Daemon d(daemon_bin);
    Client check(d.socket());
    Fd fd(connect_unix(d.socket()));
    std::vector<proto::Record> records(n);
    for (size_t i = 0; i < n; ++i)
        records[i] = record(pool[2 * i], pool[2 * i + 1]);
    uint64_t t0 = now_ns();
    write_all(fd.get(), records.data(), n * sizeof(proto::Record));
    ping_barrier(fd.get());
    uint64_t t1 = now_ns();
    expect_bindings(check, n, "plain records");
    return static_cast<double>(n) * 1e9 / static_cast<double>(t1 - t0);
}

double with_pidfds(const std::string &daemon_bin, const Pool &pool, const std::vector<int> &pidfds,
                   size_t n) {
    Daemon d(daemon_bin);
    Client check(d.socket());
    Fd fd(connect_unix(d.socket()));
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; ++i) {
        proto::Record r = record(pool[2 * i], pool[2 * i + 1]);
        int pair[2] = {pidfds[2 * i + 1], pidfds[2 * i]}; // the child's first, then the parent's
        send_all_with_fds(fd.get(), &r, sizeof(r), pair, 2);
    }
    ping_barrier(fd.get());
    uint64_t t1 = now_ns();
    expect_bindings(check, n, "pidfds passed");
    return static_cast<double>(n) * 1e9 / static_cast<double>(t1 - t0);
}

// The connect+send+close floor: a minimal server that accepts, reads one record and closes,
// counting handled connections in shared memory.
double floor_connect(size_t n) {
    std::string dir = make_temp_dir();
    std::string path = dir + "/floor.sock";
    Fd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    if (::bind(listener.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0 ||
        ::listen(listener.get(), SOMAXCONN) < 0)
        die("floor listener: %s", std::strerror(errno));
    auto *handled = static_cast<std::atomic<uint64_t> *>(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    new (handled) std::atomic<uint64_t>(0);
    pid_t server = ::fork();
    if (server == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        int ep = ::epoll_create1(0);
        struct epoll_event ev {};
        ev.events = EPOLLIN;
        ev.data.fd = listener.get();
        ::epoll_ctl(ep, EPOLL_CTL_ADD, listener.get(), &ev);
        struct epoll_event evs[256];
        for (;;) {
            int k = ::epoll_wait(ep, evs, 256, -1);
            for (int i = 0; i < k; ++i) {
                if (evs[i].data.fd == listener.get()) {
                    for (int a = 0; a < 64; ++a) {
                        int c = ::accept4(listener.get(), nullptr, nullptr,
                                          SOCK_CLOEXEC | SOCK_NONBLOCK);
                        if (c < 0)
                            break;
                        struct epoll_event cev {};
                        cev.events = EPOLLIN;
                        cev.data.fd = c;
                        ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                    }
                    continue;
                }
                char buf[64];
                ssize_t r;
                while ((r = ::read(evs[i].data.fd, buf, sizeof(buf))) > 0) {
                }
                if (r == 0) {
                    ::epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd, nullptr);
                    ::close(evs[i].data.fd);
                    handled->fetch_add(1);
                }
            }
        }
    }
    Fd server_fd(pidfd_open(server));
    proto::Record r{1, 2, proto::kRegister};
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; ++i) {
        Fd c(connect_unix(path));
        write_all(c.get(), &r, sizeof(r));
    }
    while (handled->load() < n)
        sched_yield();
    uint64_t t1 = now_ns();
    pidfd_kill(server_fd.get(), SIGKILL);
    reap_pidfd(server_fd.get());
    ::munmap(handled, 4096);
    ::unlink(path.c_str());
    ::rmdir(dir.c_str());
    return static_cast<double>(n) * 1e9 / static_cast<double>(t1 - t0);
}

double per_connection(const std::string &daemon_bin, const Pool &pool, size_t n) {
    Daemon d(daemon_bin);
    Client check(d.socket());
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; ++i) {
        Fd c(connect_unix(d.socket()));
        proto::Record r = record(pool[2 * i], pool[2 * i + 1]);
        write_all(c.get(), &r, sizeof(r));
    }
    // Connections are served in no particular order: wait until the daemon holds all of them.
    for (;;) {
        proto::StatusInfo s = check.status();
        if (s.bindings >= n)
            break;
    }
    uint64_t t1 = now_ns();
    expect_bindings(check, n, "connection per registration");
    return static_cast<double>(n) * 1e9 / static_cast<double>(t1 - t0);
}

} // namespace

int main(int argc, char **argv) {
    Args args{argc, argv};
    size_t n = static_cast<size_t>(args.num("--count", 4000));
    int rounds = static_cast<int>(args.num("--rounds", 7));
    std::string daemon_bin = daemon_path(args);
    ::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    // The processes exist before any clock starts: registration, not fork, is measured.
    Pool pool(2 * n);
    std::vector<int> pidfds(2 * n);
    for (size_t i = 0; i < 2 * n; ++i)
        if ((pidfds[i] = pidfd_open(pool[i])) < 0)
            die("pidfd_open: %s", std::strerror(errno));

    // --mode NAME measures one mode only (for profiling the daemon under one load).
    const char *only = args.get("--mode", nullptr);
    const char *const kKeys[] = {"floor-kernel", "plain", "pidfds", "floor-connect",
                                 "per-connection"};
    std::vector<double> rate[kModes];
    for (int round = 0; round < rounds; ++round) {
        // Rotate the order each round so no mode always follows the same one.
        for (int k = 0; k < kModes; ++k) {
            int m = (k + round) % kModes;
            if (only && std::strcmp(only, kKeys[m]) != 0)
                continue;
            double r = 0;
            switch (m) {
            case kFloorKernel:
                r = floor_kernel(pool, n);
                break;
            case kPlain:
                r = plain(daemon_bin, pool, n);
                break;
            case kPidfds:
                r = with_pidfds(daemon_bin, pool, pidfds, n);
                break;
            case kFloorConnect:
                r = floor_connect(n);
                break;
            case kPerConnection:
                r = per_connection(daemon_bin, pool, n);
                break;
            }
            rate[m].push_back(r);
        }
    }
    for (int fd : pidfds)
        ::close(fd);

    Summary s[kModes];
    for (int m = 0; m < kModes; ++m) {
        if (rate[m].empty())
            continue;
        s[m] = summarize(rate[m]);
        note("registration, %s: %d rounds of %zu bindings: median %s/s, worst round %s/s, best "
             "%s/s",
             kNames[m], rounds, n, fmt_num(s[m].p50).c_str(), fmt_num(s[m].min).c_str(),
             fmt_num(s[m].max).c_str());
    }
    auto cell = [&](int m) {
        return fmt("%s/s (worst %s)", fmt_num(s[m].p50).c_str(), fmt_num(s[m].min).c_str());
    };
    if (only)
        return 0; // a profiling run: the notes say it all
    const Summary &fk = s[kFloorKernel], &fc = s[kFloorConnect];
    row("2. Registrations/s, one connection, plain records", cell(kPlain),
        "kernel floor " + cell(kFloorKernel), fmt("%.2fx", s[kPlain].p50 / fk.p50), ">= 120,000/s",
        yes_no(s[kPlain].p50 >= 120000));
    row("2. Registrations/s, one connection, pidfds passed", cell(kPidfds),
        "kernel floor " + cell(kFloorKernel), fmt("%.2fx", s[kPidfds].p50 / fk.p50), ">= 120,000/s",
        yes_no(s[kPidfds].p50 >= 120000));
    row("2. Registrations/s, a connection each", cell(kPerConnection),
        "connect floor " + cell(kFloorConnect), fmt("%.2fx", s[kPerConnection].p50 / fc.p50),
        ">= 100,000/s", yes_no(s[kPerConnection].p50 >= 100000));
    return 0;
}
