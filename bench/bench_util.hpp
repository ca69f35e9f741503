// SPDX-License-Identifier: MIT
// Shared helpers of orphand's benchmarks: clocks, percentiles, a private daemon, clients over
// liborphand, process pools and the markdown rows every benchmark prints.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "orphand/orphand.h"
#include "orphand/protocol.hpp"
#include "pidfd_sys.hpp"
#include "send_fds.hpp"
#include "unique_fd.hpp"

namespace orphand::bench {

namespace proto = orphand::proto;

using Fd = orphand::UniqueFd;

inline int pidfd_open(pid_t pid) {
    return sys_pidfd_open(pid, 0);
}

inline int pidfd_kill(int pidfd, int sig) {
    return sys_pidfd_send_signal(pidfd, sig);
}

// Pidfds of processes we started that would outlive us if we stopped early: die() kills them.
// (Processes that die with us anyway carry PR_SET_PDEATHSIG instead.)
struct Owned {
    std::mutex mutex;
    std::set<int> pidfds;
};
inline Owned &owned() {
    static Owned o;
    return o;
}
inline void own(int pidfd) {
    std::lock_guard<std::mutex> lock(owned().mutex);
    owned().pidfds.insert(pidfd);
}
inline void disown(int pidfd) {
    std::lock_guard<std::mutex> lock(owned().mutex);
    owned().pidfds.erase(pidfd);
}

// Aborts the benchmark: a benchmark that cannot measure what it claims must not print a figure.
// Ends the processes it started first, so that nothing is left behind.
[[noreturn]] inline void die(const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    std::fputs("bench: ", stderr);
    std::vfprintf(stderr, format, ap);
    std::fputc('\n', stderr);
    va_end(ap);
    {
        std::lock_guard<std::mutex> lock(owned().mutex);
        for (int fd : owned().pidfds)
            pidfd_kill(fd, SIGKILL);
    }
    std::_Exit(1);
}

inline uint64_t now_ns() {
    struct timespec ts {};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

inline void sleep_ns(uint64_t ns) {
    struct timespec ts {};
    ts.tv_sec = static_cast<time_t>(ns / 1000000000u);
    ts.tv_nsec = static_cast<long>(ns % 1000000000u);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

// Reaps a child of ours through its pidfd (blocking).
inline void reap_pidfd(int pidfd) {
    siginfo_t si{};
    while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED) < 0 &&
           errno == EINTR) {
    }
}

inline bool readable(int fd, int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) > 0;
}

inline void write_all(int fd, const void *data, size_t size) {
    const char *p = static_cast<const char *>(data);
    while (size > 0) {
        ssize_t n = ::write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("write: %s", std::strerror(errno));
        }
        p += n;
        size -= static_cast<size_t>(n);
    }
}

inline void read_all(int fd, void *data, size_t size) {
    char *p = static_cast<char *>(data);
    while (size > 0) {
        ssize_t n = ::read(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("read: %s", n == 0 ? "unexpected EOF" : std::strerror(errno));
        p += n;
        size -= static_cast<size_t>(n);
    }
}

// Sends `size` bytes with `nfds` fds attached (SCM_RIGHTS), all in one message.
inline void send_all_with_fds(int sock, const void *data, size_t size, const int *fds,
                              size_t nfds) {
    if (orphand::send_with_fds(sock, data, size, fds, nfds, MSG_NOSIGNAL) !=
        static_cast<ssize_t>(size))
        die("sendmsg: %s", std::strerror(errno));
}

// Sends a legacy PING and waits for its echo: every record sent before it has been handled.
inline void ping_barrier(int fd) {
    proto::Record ping{0x600d, 0xf00d, proto::kPing}, echo{};
    write_all(fd, &ping, sizeof(ping));
    read_all(fd, &echo, sizeof(echo));
    if (std::memcmp(&ping, &echo, sizeof(ping)) != 0)
        die("bad PING echo");
}

// Percentiles (nearest rank) of a sample set.
struct Summary {
    size_t n = 0;
    double p50 = 0, p90 = 0, p99 = 0, max = 0, min = 0;
};

inline Summary summarize(std::vector<double> v) {
    Summary s;
    s.n = v.size();
    if (v.empty())
        return s;
    std::sort(v.begin(), v.end());
    auto rank = [&](double p) {
        size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
        return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
    };
    s.p50 = rank(0.50);
    s.p90 = rank(0.90);
    s.p99 = rank(0.99);
    s.max = v.back();
    s.min = v.front();
    return s;
}

inline std::string fmt_num(double v) {
    char buf[64];
    if (std::fabs(v) >= 100)
        std::snprintf(buf, sizeof(buf), "%.0f", v);
    else if (std::fabs(v) >= 10)
        std::snprintf(buf, sizeof(buf), "%.1f", v);
    else
        std::snprintf(buf, sizeof(buf), "%.2f", v);
    // Thousands separators keep large figures readable.
    const char *dot = std::strchr(buf, '.');
    size_t digits = dot ? static_cast<size_t>(dot - buf) : std::strlen(buf);
    size_t sign = buf[0] == '-' ? 1 : 0;
    std::string out(buf, sign);
    for (size_t i = sign; i < digits; ++i) {
        if (i > sign && (digits - i) % 3 == 0)
            out.push_back(',');
        out.push_back(buf[i]);
    }
    out.append(buf + digits);
    return out;
}

inline std::string fmt(const char *format, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, format);
    std::vsnprintf(buf, sizeof(buf), format, ap);
    va_end(ap);
    return buf;
}

// One row of the result table: | Measurement | orphand | Baseline | Ratio | Target | Met |
inline void row(const std::string &what, const std::string &orphand, const std::string &baseline,
                const std::string &ratio, const std::string &target, const char *met) {
    std::printf("| %s | %s | %s | %s | %s | %s |\n", what.c_str(), orphand.c_str(),
                baseline.c_str(), ratio.c_str(), target.c_str(), met);
    std::fflush(stdout);
}

// Free-text lines go below the table.
inline void note(const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    std::fputs("- ", stdout);
    std::vprintf(format, ap);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    va_end(ap);
}

// Command-line: --name value pairs; the rest is ignored.
struct Args {
    int argc;
    char **argv;
    const char *get(const char *name, const char *fallback) const {
        for (int i = 1; i + 1 < argc; ++i)
            if (std::strcmp(argv[i], name) == 0)
                return argv[i + 1];
        return fallback;
    }
    long num(const char *name, long fallback) const {
        const char *v = get(name, nullptr);
        return v ? std::strtol(v, nullptr, 10) : fallback;
    }
    bool flag(const char *name) const {
        for (int i = 1; i < argc; ++i)
            if (std::strcmp(argv[i], name) == 0)
                return true;
        return false;
    }
};

// The daemon next to this benchmark in the build tree, unless --daemon names one.
inline std::string daemon_path(const Args &args) {
    if (const char *d = args.get("--daemon", nullptr))
        return d;
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        die("readlink /proc/self/exe: %s", std::strerror(errno));
    self[n] = '\0';
    std::string dir(self);
    dir = dir.substr(0, dir.rfind('/'));
    return dir + "/../daemon/orphand";
}

inline std::string make_temp_dir() {
    char tmpl[] = "/tmp/orphand-bench-XXXXXX";
    if (!::mkdtemp(tmpl))
        die("mkdtemp: %s", std::strerror(errno));
    return tmpl;
}

inline int connect_unix(const std::string &path, bool nonblock_fail = false) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", std::strerror(errno));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    if (::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0) {
        int err = errno;
        ::close(fd);
        if (nonblock_fail)
            return -err;
        die("connect %s: %s", path.c_str(), std::strerror(err));
    }
    return fd;
}

// A connection in acknowledged mode, through liborphand. Any failure without a reply from the
// daemon ends the benchmark.
class Client {
  public:
    explicit Client(const std::string &path) {
        int e = orphand_connect(&conn_, path.c_str(), 10000);
        if (e < 0)
            die("connect %s: %s", path.c_str(), std::strerror(-e));
    }
    ~Client() { orphand_close(conn_); }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    static proto::Request request(uint32_t action, uint32_t parent = 0, uint32_t child = 0) {
        proto::Request q{};
        q.action = action;
        q.parent = parent;
        q.child = child;
        return q;
    }
    // A REGISTER that kills with SIGKILL and never escalates (no timer in the way).
    static proto::Request kill_request(pid_t parent, pid_t child) {
        proto::Request q =
            request(proto::kRegister, static_cast<uint32_t>(parent), static_cast<uint32_t>(child));
        q.flags = proto::kFlagSignal | proto::kFlagGrace;
        q.signal = SIGKILL;
        q.grace_ms = proto::kGraceNever;
        return q;
    }

    // Pipelining: sends `q` (REGISTER, UNREGISTER or PING) with `fds` (the child's pidfd
    // first) and returns at once; receive() reads the replies in order.
    void send(proto::Request q, const int *fds = nullptr, size_t nfds = 0) {
        int e = orphand_send_request(conn_, &q, fds, nfds);
        if (e < 0)
            die("send request: %s", std::strerror(-e));
    }
    proto::Reply receive() {
        proto::Reply r{};
        uint32_t reason;
        int e = orphand_receive_reply(conn_, &r, &reason);
        if (e < 0 && reason == ORPHAND_REASON_CLIENT)
            die("no reply: %s", std::strerror(-e));
        return r;
    }
    // One request and its reply.
    proto::Reply call(proto::Request q, const int *fds = nullptr, size_t nfds = 0) {
        send(q, fds, nfds);
        return receive();
    }

    proto::StatusInfo status() {
        proto::StatusInfo s{};
        int e = orphand_status(conn_, &s, nullptr);
        if (e < 0)
            die("STATUS failed: %s", std::strerror(-e));
        return s;
    }

    // LIST's records, with their scopes.
    std::vector<proto::BindingInfo2> list() {
        proto::BindingInfo2 *records = nullptr;
        size_t n = 0;
        int e = orphand_list2(conn_, &records, &n, nullptr);
        if (e < 0)
            die("LIST failed: %s", std::strerror(-e));
        std::vector<proto::BindingInfo2> out(records, records + n);
        orphand_list2_free(records);
        return out;
    }

  private:
    orphand_conn *conn_ = nullptr;
};

// Waits until the daemon watches no process and holds no binding (it has handled every exit of
// a round), so that its clean-up does not run into the next round. Returns its kill count.
inline uint64_t settle(Client &client) {
    uint64_t deadline = now_ns() + 10'000'000'000ull;
    for (;;) {
        proto::StatusInfo s = client.status();
        if (s.parents == 0 && s.children == 0 && s.bindings == 0)
            return s.kills;
        if (now_ns() > deadline)
            die("daemon still watches %u parents and %u children 10 s after a round", s.parents,
                s.children);
        sleep_ns(1'000'000);
    }
}

// The real orphand on a private socket, logging to a file in a private temp dir.
class Daemon {
  public:
    // `fd_limit` > 0 caps RLIMIT_NOFILE (soft and hard) for the daemon.
    Daemon(const std::string &binary, std::vector<std::string> extra = {}, long fd_limit = 0)
        : dir_(make_temp_dir()) {
        socket_ = dir_ + "/orphand.sock";
        log_ = dir_ + "/orphand.log";
        std::vector<std::string> argv = {binary,         "--socket", socket_,
                                         "--log-target", "stderr",   "--log-level",
                                         "warning",      "--grace",  "never"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        pid_ = ::fork();
        if (pid_ < 0)
            die("fork: %s", std::strerror(errno));
        if (pid_ == 0) {
            int log = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            ::dup2(log, 2);
            int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
            ::dup2(null, 0);
            ::dup2(null, 1);
            if (fd_limit > 0) {
                struct rlimit rl = {static_cast<rlim_t>(fd_limit), static_cast<rlim_t>(fd_limit)};
                ::setrlimit(RLIMIT_NOFILE, &rl);
            }
            ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); // never outlive the benchmark
            ::unsetenv("LISTEN_FDS");
            ::unsetenv("LISTEN_PID");
            ::unsetenv("NOTIFY_SOCKET");
            ::unsetenv("LD_PRELOAD");
            std::vector<char *> cargv;
            for (auto &a : argv)
                cargv.push_back(a.data());
            cargv.push_back(nullptr);
            ::execv(cargv[0], cargv.data());
            _exit(127);
        }
        pidfd_.reset(pidfd_open(pid_));
        uint64_t deadline = now_ns() + 10'000'000'000ull;
        while (now_ns() < deadline) {
            if (readable(pidfd_.get(), 0))
                die("orphand exited at start-up; see %s", log_.c_str());
            int fd = connect_unix(socket_, true);
            if (fd >= 0) {
                ::close(fd);
                return;
            }
            sleep_ns(1'000'000);
        }
        die("orphand did not start listening within 10 s");
    }
    ~Daemon() { stop(); }
    Daemon(const Daemon &) = delete;
    Daemon &operator=(const Daemon &) = delete;

    void stop() {
        if (!pidfd_.valid())
            return;
        pidfd_kill(pidfd_.get(), SIGTERM);
        if (!readable(pidfd_.get(), 10000))
            pidfd_kill(pidfd_.get(), SIGKILL);
        reap_pidfd(pidfd_.get());
        pidfd_.reset();
        std::string cmd = "rm -rf '" + dir_ + "'";
        if (!std::getenv("ORPHAND_BENCH_KEEP"))
            (void)!std::system(cmd.c_str());
    }

    pid_t pid() const { return pid_; }
    const std::string &socket() const { return socket_; }
    const std::string &log() const { return log_; }

  private:
    std::string dir_, socket_, log_;
    pid_t pid_ = -1;
    Fd pidfd_;
};

// The number after `key` ("VmRSS:") on its line of a /proc file, or -1.
inline long proc_file_field(const char *path, const char *key) {
    FILE *f = std::fopen(path, "re");
    if (!f)
        return -1;
    char line[256];
    long value = -1;
    size_t len = std::strlen(key);
    while (std::fgets(line, sizeof(line), f))
        if (std::strncmp(line, key, len) == 0) {
            value = std::strtol(line + len, nullptr, 10);
            break;
        }
    std::fclose(f);
    return value;
}

// CPU time a whole process has run so far, every thread (those that have ended included), in
// nanoseconds: its CPU-time clock. (/proc/PID/schedstat would count the main thread only, and
// the daemon closes fds and signals scopes on threads that end once they are idle.)
inline uint64_t cpu_ns(pid_t pid) {
    clockid_t clock;
    if (int err = ::clock_getcpuclockid(pid, &clock); err != 0)
        die("clock_getcpuclockid (pid %d): %s", pid, std::strerror(err));
    struct timespec ts {};
    if (::clock_gettime(clock, &ts) < 0)
        die("clock_gettime (CPU clock of pid %d): %s", pid, std::strerror(errno));
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// A field of /proc/PID/status ("VmRSS:", "voluntary_ctxt_switches:"), in its own unit.
inline long proc_status_field(pid_t pid, const char *key) {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/status", pid);
    return proc_file_field(path, key);
}

// A field of /proc/meminfo in kB.
inline long meminfo(const char *key) {
    return proc_file_field("/proc/meminfo", key);
}

// Kernel memory that pidfds and epoll items live in: slab (reclaimable and not).
inline long kernel_slab_kb() {
    return meminfo("Slab:");
}

// A pool of idle processes to register: clone(CLONE_VM) children of ours, each a thread-group
// leader with its own pid and pidfd (exactly what the daemon watches), sharing one address space
// so that tens of thousands fit in memory and start in milliseconds. Each dies with us
// (PR_SET_PDEATHSIG), and is ended and reaped by pid when the pool goes: an unreaped child's pid
// cannot be reused, so killing it by pid cannot hit anyone else.
class Pool {
  public:
    explicit Pool(size_t count) {
        stacks_ = static_cast<char *>(::mmap(nullptr, count * kStack, PROT_READ | PROT_WRITE,
                                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
        if (stacks_ == MAP_FAILED)
            die("mmap: %s", std::strerror(errno));
        bytes_ = count * kStack;
        pids_.reserve(count);
        for (size_t i = 0; i < count; ++i) {
            int pid = ::clone(idle, stacks_ + (i + 1) * kStack, CLONE_VM | SIGCHLD, nullptr);
            if (pid < 0)
                die("clone (process %zu of %zu): %s", i, count, std::strerror(errno));
            pids_.push_back(pid);
        }
    }
    ~Pool() {
        for (pid_t pid : pids_)
            ::kill(pid, SIGKILL); // our own unreaped child: see the class comment
        for (pid_t pid : pids_)
            while (::waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
            }
        ::munmap(stacks_, bytes_);
    }
    Pool(const Pool &) = delete;
    Pool &operator=(const Pool &) = delete;

    size_t size() const { return pids_.size(); }
    pid_t operator[](size_t i) const { return pids_[i]; }

  private:
    static constexpr size_t kStack = 16384;
    // Raw syscalls only: the child shares our memory, including errno and the heap.
    static int idle(void *) {
        ::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        for (;;)
            ::syscall(SYS_pause);
        return 0;
    }
    char *stacks_ = nullptr;
    size_t bytes_ = 0;
    std::vector<pid_t> pids_;
};

// Makes us the reaper of our descendants' orphans, so that nothing is left for PID 1 (which may
// not reap on these machines).
inline void become_subreaper() {
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        die("PR_SET_CHILD_SUBREAPER: %s", std::strerror(errno));
}

// Raises our soft fd limit to the hard one: pools and pidfds need thousands of fds.
inline long raise_fd_limit() {
    struct rlimit rl {};
    if (::getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit: %s", std::strerror(errno));
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    return static_cast<long>(rl.rlim_cur);
}

inline const char *yes_no(bool met) {
    return met ? "yes" : "**no**";
}

} // namespace orphand::bench
