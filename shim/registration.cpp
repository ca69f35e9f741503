// SPDX-License-Identifier: MIT
// Sends one REGISTER record with the child's pidfd over a per-call connection to orphand.
//
// Everything here may run inside a signal handler, in a thread that is being cancelled, or in a
// program that closes or dup2()s over random fds. Hence: raw syscall() only (libc's socket
// wrappers are cancellation points), no allocation, no locks, no global state, and every fd is
// created, used and closed within one call, so the program never sees one of ours and we never
// write into an fd number it reused.
#include "registration.hpp"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "orphand/protocol.hpp"
#include "orphand/socket_path.h"

namespace orphand::shim {
namespace {

// waitid()'s P_PIDFD (Linux 5.4); glibc 2.36 headers do not all spell it.
constexpr int kPPidfd = 3;

// A full listen backlog makes a non-blocking connect fail with EAGAIN. We retry with a short
// backoff, bounded so that a wedged daemon delays each fork by at most about this long.
constexpr long kRetryBudgetNs = 100'000'000;
constexpr long kFirstBackoffNs = 50'000;
constexpr long kMaxBackoffNs = 10'000'000;

// Owns one fd for the duration of a registration; closes it with the raw syscall.
class UniqueFd {
  public:
    explicit UniqueFd(long fd) : fd_(static_cast<int>(fd)) {}
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;
    ~UniqueFd() {
        if (fd_ >= 0)
            ::syscall(SYS_close, fd_);
    }
    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    // Gives up ownership without closing.
    int release() {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }

  private:
    int fd_;
};

// Why a registration did not happen; `what` is a static string.
struct Failure {
    const char *what = nullptr;
    int error = 0;
};

// A fixed buffer for the one diagnostic line; formatting without stdio (not signal-safe).
class Line {
  public:
    Line &add(const char *s) {
        while (*s && len_ < sizeof(buf_) - 1)
            buf_[len_++] = *s++;
        return *this;
    }
    Line &add(long value) {
        char digits[24];
        int n = 0;
        bool negative = value < 0;
        unsigned long v =
            negative ? 0ul - static_cast<unsigned long>(value) : static_cast<unsigned long>(value);
        do {
            digits[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v);
        if (negative)
            add("-");
        while (n > 0 && len_ < sizeof(buf_) - 1)
            buf_[len_++] = digits[--n];
        return *this;
    }
    void write_stderr() {
        buf_[len_ < sizeof(buf_) - 1 ? len_++ : len_ - 1] = '\n';
        ::syscall(SYS_write, STDERR_FILENO, buf_, len_);
    }

  private:
    char buf_[320];
    size_t len_ = 0;
};

// strerror() is not async-signal-safe (locales); these are the errors a registration meets.
const char *errno_name(int e) {
    switch (e) {
    case ENOENT:
        return "ENOENT (no daemon socket)";
    case ECONNREFUSED:
        return "ECONNREFUSED (daemon not running)";
    case EAGAIN:
        return "EAGAIN (daemon backlog full)";
    case EACCES:
        return "EACCES";
    case EPERM:
        return "EPERM";
    case EMFILE:
        return "EMFILE";
    case ENFILE:
        return "ENFILE";
    case ENOMEM:
        return "ENOMEM";
    case ENOBUFS:
        return "ENOBUFS";
    case EPIPE:
        return "EPIPE";
    case ECONNRESET:
        return "ECONNRESET";
    case ENAMETOOLONG:
        return "ENAMETOOLONG";
    case ENOTDIR:
        return "ENOTDIR";
    case ENOSYS:
        return "ENOSYS (kernel without pidfd_open)";
    default:
        return nullptr;
    }
}

bool debug_enabled() {
    // getenv only reads environ: no locks, no allocation.
    const char *v = ::getenv("ORPHAND_DEBUG");
    return v && v[0] && !(v[0] == '0' && v[1] == '\0');
}

// The socket by the rule every client follows (socket_path.h: no allocation, no stdio), into
// `buf` (a sockaddr_un's sun_path). Its length, or -ENAMETOOLONG.
template <size_t N> int socket_path(char (&buf)[N]) {
    return orphand_socket_path_resolve(nullptr, buf, N);
}

void report(pid_t self, pid_t child, const Failure &f) {
    if (!debug_enabled())
        return;
    Line line;
    line.add("orphand-forkwait: pid ").add(long{self}).add(": child ").add(long{child});
    line.add(" not bound: ").add(f.what);
    if (f.error) {
        const char *name = errno_name(f.error);
        line.add(": ");
        if (name)
            line.add(name);
        else
            line.add("errno ").add(long{f.error});
    }
    char path[sizeof(sockaddr_un::sun_path)];
    line.add(" [").add(socket_path(path) >= 0 ? path : "socket path too long").add("]");
    line.write_stderr();
}

// Sleeps `ns` without being a cancellation point (the libc wrapper is one).
void pause_ns(long ns) {
    struct timespec ts {
        0, ns
    };
    ::syscall(SYS_nanosleep, &ts, nullptr);
}

// Retries `op` (returning a syscall result) while it fails with EAGAIN or EINTR, within the
// retry budget. Returns the last result; errno holds its error.
template <typename Op> long with_retry(Op op) {
    long spent = 0;
    long backoff = kFirstBackoffNs;
    for (;;) {
        long r = op();
        if (r >= 0 || (errno != EAGAIN && errno != EINTR))
            return r;
        if (errno == EINTR)
            continue;
        if (spent >= kRetryBudgetNs)
            return r;
        pause_ns(backoff);
        spent += backoff;
        backoff = backoff * 2 < kMaxBackoffNs ? backoff * 2 : kMaxBackoffNs;
    }
}

// Connects, sends {self, child, REGISTER} with the child's pidfd, closes. True on success.
bool send_register(pid_t self, pid_t child, int pidfd, Failure &f) {
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    int len = socket_path(addr.sun_path);
    if (len < 0) {
        f = {"socket path too long", ENAMETOOLONG};
        return false;
    }
    auto addr_len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) +
                                           static_cast<size_t>(len) + 1);

    // Non-blocking, so a stopped or overloaded daemon cannot hang the program.
    UniqueFd sock(::syscall(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!sock.valid()) {
        f = {"socket", errno};
        return false;
    }
    if (with_retry([&] { return ::syscall(SYS_connect, sock.get(), &addr, addr_len); }) < 0) {
        f = {"connect", errno};
        return false;
    }

    proto::Record record{static_cast<uint32_t>(self), static_cast<uint32_t>(child),
                         proto::kRegister};
    struct iovec iov {
        &record, sizeof(record)
    };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control{};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    ::memcpy(CMSG_DATA(cmsg), &pidfd, sizeof(int));

    // MSG_NOSIGNAL: a daemon that went away must not SIGPIPE the program.
    long sent = with_retry(
        [&] { return ::syscall(SYS_sendmsg, sock.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT); });
    if (sent < 0) {
        f = {"sendmsg", errno};
        return false;
    }
    if (sent != static_cast<long>(sizeof(record))) {
        // A stream socket could in theory take part of it; the daemon would drop a torn record.
        f = {"short sendmsg", 0};
        return false;
    }
    return true;
}

enum class Opened { Ok, Gone, Failed };

// pidfd_open + confirmation that the pidfd is a child of ours that has not exited yet.
Opened open_checked(pid_t child, long &out, Failure &f) {
    UniqueFd fd(::syscall(SYS_pidfd_open, child, 0));
    if (!fd.valid()) {
        if (errno == ESRCH)
            return Opened::Gone; // reaped already (SIGCHLD ignored, or another thread waited)
        f = {"pidfd_open", errno};
        return Opened::Failed;
    }
    // waitid(P_PIDFD) only matches our own children: ECHILD means the pid was recycled by an
    // unrelated process after our child was reaped. WNOWAIT leaves a zombie for the program.
    siginfo_t info{};
    if (::syscall(SYS_waitid, kPPidfd, fd.get(), &info, WEXITED | WNOHANG | WNOWAIT | __WALL,
                  nullptr) < 0) {
        if (errno == ECHILD)
            return Opened::Gone;
        f = {"waitid", errno};
        return Opened::Failed;
    }
    if (info.si_pid != 0)
        return Opened::Gone; // already exited: there is nothing left to kill
    out = fd.release();
    return Opened::Ok;
}

} // namespace

int open_child_pidfd(pid_t child) {
    int saved = errno;
    long fd = -1;
    Failure f;
    if (child <= 0 || open_checked(child, fd, f) != Opened::Ok)
        fd = -1;
    errno = saved;
    return static_cast<int>(fd);
}

void register_child_pidfd(pid_t child, int pidfd) {
    if (child <= 0 || pidfd < 0)
        return;
    int saved = errno;
    auto self = static_cast<pid_t>(::syscall(SYS_getpid));
    Failure f;
    if (!send_register(self, child, pidfd, f))
        report(self, child, f);
    errno = saved;
}

void register_child(pid_t child) {
    if (child <= 0)
        return;
    int saved = errno;
    long fd = -1;
    Failure f;
    switch (open_checked(child, fd, f)) {
    case Opened::Ok: {
        UniqueFd pidfd(fd);
        register_child_pidfd(child, pidfd.get());
        break;
    }
    case Opened::Gone:
        break;
    case Opened::Failed:
        report(static_cast<pid_t>(::syscall(SYS_getpid)), child, f);
        break;
    }
    errno = saved;
}

} // namespace orphand::shim
