// SPDX-License-Identifier: MIT
// Kill storm: thousands of parents die at once; time until every child is dead, with orphand
// and with PR_SET_PDEATHSIG, in alternating rounds.
#include <sys/epoll.h>

#include "bench_util.hpp"

using namespace orphand::bench;

namespace {

// `n` parents in one new process group, each with one forked child in a group of its own (so
// that killing the parents' group does not touch the children). Children report ready on a pipe.
struct Storm {
    std::vector<pid_t> parents, children;
    std::vector<int> parent_fds, child_fds;
    pid_t group = 0;

    Storm(size_t n, bool pdeathsig) {
        int sync[2];
        if (::pipe2(sync, O_CLOEXEC) < 0)
            die("pipe2: %s", std::strerror(errno));
        for (size_t i = 0; i < n; ++i) {
            pid_t p = ::fork();
            if (p < 0)
                die("fork (parent %zu of %zu): %s", i, n, std::strerror(errno));
            if (p == 0) {
                ::setpgid(0, group);
                pid_t me = ::getpid();
                pid_t c = ::fork();
                if (c == 0) {
                    ::setpgid(0, 0);
                    if (pdeathsig)
                        ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
                    if (::getppid() != me)
                        _exit(1);
                    pid_t self = ::getpid();
                    (void)!::write(sync[1], &self, sizeof(self));
                    for (;;)
                        ::pause();
                }
                for (;;)
                    ::pause();
            }
            ::setpgid(p, group); // also here, so the group exists before the next fork
            if (group == 0)
                group = p;
            parents.push_back(p);
        }
        ::close(sync[1]);
        children.resize(n);
        read_all(sync[0], children.data(), n * sizeof(pid_t));
        ::close(sync[0]);
        for (pid_t p : parents)
            parent_fds.push_back(pidfd_open(p));
        for (pid_t c : children)
            child_fds.push_back(pidfd_open(c));
        for (size_t i = 0; i < n; ++i) {
            own(parent_fds[i]);
            own(child_fds[i]);
        }
        for (size_t i = 0; i < n; ++i)
            if (parent_fds[i] < 0 || child_fds[i] < 0)
                die("pidfd_open: %s", std::strerror(errno));
    }

    ~Storm() {
        // Normally all are dead already; this also ends them if a round failed.
        for (int fd : parent_fds)
            pidfd_kill(fd, SIGKILL);
        for (int fd : child_fds)
            pidfd_kill(fd, SIGKILL);
        for (int fd : parent_fds) {
            reap_pidfd(fd);
            disown(fd);
            ::close(fd);
        }
        for (int fd : child_fds) {
            reap_pidfd(fd);
            disown(fd);
            ::close(fd);
        }
    }

    // Kills every parent with one signal to their group and returns the milliseconds until the
    // last child's pidfd is readable.
    double run() {
        Fd ep(::epoll_create1(EPOLL_CLOEXEC));
        for (int fd : child_fds) {
            struct epoll_event ev {};
            ev.events = EPOLLIN | EPOLLONESHOT;
            ev.data.fd = fd;
            ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev);
        }
        size_t dead = 0;
        struct epoll_event evs[256];
        uint64_t t0 = now_ns();
        if (::kill(-group, SIGKILL) < 0) // the process group made of our parents only
            die("kill of the parents' group: %s", std::strerror(errno));
        while (dead < child_fds.size()) {
            int k = ::epoll_wait(ep.get(), evs, 256, 60000);
            if (k <= 0)
                die("%zu of %zu children still alive 60 s after the storm", child_fds.size() - dead,
                    child_fds.size());
            dead += static_cast<size_t>(k);
        }
        return static_cast<double>(now_ns() - t0) / 1e6;
    }
};

} // namespace

int main(int argc, char **argv) {
    Args args{argc, argv};
    size_t n = static_cast<size_t>(args.num("--count", 4000));
    int rounds = static_cast<int>(args.num("--rounds", 5));
    become_subreaper();
    ::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    Daemon daemon(daemon_path(args));
    Client client(daemon.socket());

    std::vector<double> ms[2];
    for (int round = 0; round < rounds; ++round) {
        for (int k = 0; k < 2; ++k) {
            bool orphand = (k + round) % 2 == 0;
            Storm storm(n, !orphand);
            if (orphand) {
                // Pipelined registration, every reply checked: all acknowledged before the storm.
                for (size_t i = 0; i < n; i += 256) {
                    size_t batch = std::min<size_t>(256, n - i);
                    for (size_t j = i; j < i + batch; ++j)
                        client.send(Client::kill_request(storm.parents[j], storm.children[j]));
                    for (size_t j = 0; j < batch; ++j)
                        if (proto::Reply r = client.receive(); r.error != 0)
                            die("REGISTER refused: %s", proto::reason_text(r.reason));
                }
                if (client.status().bindings != n)
                    die("daemon does not hold %zu bindings", n);
            }
            ms[orphand ? 0 : 1].push_back(storm.run());
        }
    }
    Summary o = summarize(ms[0]), k = summarize(ms[1]);
    note("kill storm, %zu parents at once, %d rounds each: orphand median %s ms (max %s), "
         "PR_SET_PDEATHSIG median %s ms (max %s)",
         n, rounds, fmt_num(o.p50).c_str(), fmt_num(o.max).c_str(), fmt_num(k.p50).c_str(),
         fmt_num(k.max).c_str());
    double r = o.p50 / k.p50;
    row(fmt("4. Kill storm, %zu parents at once: all children dead (ms)", n),
        fmt("%s (max %s)", fmt_num(o.p50).c_str(), fmt_num(o.max).c_str()),
        fmt("PR_SET_PDEATHSIG %s (max %s)", fmt_num(k.p50).c_str(), fmt_num(k.max).c_str()),
        fmt("%.2fx", r), "<= 2x PDEATHSIG", yes_no(r <= 2.0));
    return 0;
}
