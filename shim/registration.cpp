// SPDX-License-Identifier: MIT
// Sends one REGISTER record with the child's pidfd to orphand: as one datagram where the daemon
// has a datagram socket, else over a per-call connection; with a kill scope (ORPHAND_SCOPE), a
// HELLO and an acknowledged REGISTER over a connection instead.
//
// Everything here may run inside a signal handler, in a thread that is being cancelled, or in a
// program that closes or dup2()s over random fds. Hence: raw syscall() only (libc's socket
// wrappers are cancellation points), no allocation, no locks, no global state, and every fd is
// created, used and closed within one call, so the program never sees one of ours and we never
// write into an fd number it reused.
#include "registration.hpp"

#include <errno.h>
#include <poll.h>
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

// How long a registration with a scope waits for the daemon's replies, in all. They only tell
// whether the scope was refused: the request is sent before the wait, and the daemon acts on it
// even if nobody reads the reply. Bounded like the connect retries, so that a stopped daemon
// delays each fork by about this long at most.
constexpr long kReplyBudgetNs = 100'000'000;

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

// strerror() is not async-signal-safe (locales); these are the errors a registration meets,
// the daemon's refusals included.
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
    case EINVAL:
        return "EINVAL";
    case ESRCH:
        return "ESRCH";
    case EDQUOT:
        return "EDQUOT";
    case EOPNOTSUPP:
        return "EOPNOTSUPP";
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

// The start of every line about `child`: "orphand-forkwait: pid SELF: child CHILD".
Line about(pid_t self, pid_t child) {
    Line line;
    line.add("orphand-forkwait: pid ").add(long{self}).add(": child ").add(long{child});
    return line;
}

// errno `e` by name, or by number.
void add_errno(Line &line, int e) {
    const char *name = errno_name(e);
    if (name)
        line.add(name);
    else
        line.add("errno ").add(long{e});
}

// ": what: ERRNO" for a failure.
void add_failure(Line &line, const Failure &f) {
    line.add(": ").add(f.what);
    if (f.error) {
        line.add(": ");
        add_errno(line, f.error);
    }
}

void report(pid_t self, pid_t child, const Failure &f) {
    if (!debug_enabled())
        return;
    Line line = about(self, child);
    line.add(" not bound");
    add_failure(line, f);
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

// A control buffer that carries one fd (SCM_RIGHTS) with a message.
union FdControl {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
};

// Attaches `fd` (borrowed) to `msg` through `control`, which must outlive the send.
void attach_fd(struct msghdr &msg, FdControl &control, int fd) {
    ::memset(control.buf, 0, sizeof(control.buf));
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    ::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
}

// Sends `len` bytes of `data` with `fd` (borrowed) attached, retrying as with_retry() does.
// MSG_NOSIGNAL: a daemon that went away must not SIGPIPE the program. Returns what sendmsg
// returned; errno holds its error.
long send_with_fd(int sock, const void *data, size_t len, int fd) {
    struct iovec iov {
        const_cast<void *>(data), len
    };
    FdControl control;
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    attach_fd(msg, control, fd);
    return with_retry(
        [&] { return ::syscall(SYS_sendmsg, sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT); });
}

// A new connection to the daemon (non-blocking, close-on-exec), or -1 with `f` set.
long connect_daemon(Failure &f) {
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    int len = socket_path(addr.sun_path);
    if (len < 0) {
        f = {"socket path too long", ENAMETOOLONG};
        return -1;
    }
    auto addr_len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) +
                                           static_cast<size_t>(len) + 1);

    // Non-blocking, so a stopped or overloaded daemon cannot hang the program.
    UniqueFd sock(::syscall(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!sock.valid()) {
        f = {"socket", errno};
        return -1;
    }
    if (with_retry([&] { return ::syscall(SYS_connect, sock.get(), &addr, addr_len); }) < 0) {
        f = {"connect", errno};
        return -1;
    }
    return sock.release();
}

// Sends {self, child, REGISTER} with the child's pidfd as one datagram to the datagram socket
// beside the daemon's socket (orphand-protocol(7)): no connection to make, and one wakeup of
// the daemon at most. The daemon knows the sender by the credentials the kernel attaches, whose
// uid is the real one: a program whose real and effective uids differ connects instead, where
// the effective uid counts, as everywhere else. True if the datagram was queued; false if there
// is no datagram socket, its queue is full (EAGAIN), or anything else: then the caller connects.
bool send_datagram(pid_t self, pid_t child, int pidfd) {
    uid_t ruid, euid, suid;
    if (::syscall(SYS_getresuid, &ruid, &euid, &suid) < 0 || ruid != euid)
        return false;
    char stream[sizeof(sockaddr_un::sun_path)];
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    if (socket_path(stream) < 0)
        return false;
    int len = orphand_datagram_path(stream, addr.sun_path, sizeof(addr.sun_path));
    if (len < 0)
        return false;
    UniqueFd sock(::syscall(SYS_socket, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!sock.valid())
        return false;
    proto::Record record{static_cast<uint32_t>(self), static_cast<uint32_t>(child),
                         proto::kRegister};
    struct iovec iov {
        &record, sizeof(record)
    };
    FdControl control;
    struct msghdr msg {};
    msg.msg_name = &addr;
    msg.msg_namelen = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) +
                                             static_cast<size_t>(len) + 1);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    attach_fd(msg, control, pidfd);
    long sent;
    do
        sent = ::syscall(SYS_sendmsg, sock.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (sent < 0 && errno == EINTR);
    return sent == static_cast<long>(sizeof(record));
}

// Sends {self, child, REGISTER} with the child's pidfd: as a datagram, or else over a
// connection of its own. True on success.
bool send_register(pid_t self, pid_t child, int pidfd, Failure &f) {
    if (send_datagram(self, child, pidfd))
        return true;
    UniqueFd sock(connect_daemon(f));
    if (!sock.valid())
        return false;

    proto::Record record{static_cast<uint32_t>(self), static_cast<uint32_t>(child),
                         proto::kRegister};
    long sent = send_with_fd(sock.get(), &record, sizeof(record), pidfd);
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

// The scope ORPHAND_SCOPE names, by the names every client uses (proto::scope_from_name).
// Unset or empty: kScopeProcess. A name that is no scope is kScopeProcess too, with `unknown`
// pointing at it (in environ) for the report.
uint32_t requested_scope(const char *&unknown) {
    unknown = nullptr;
    // getenv only reads environ: no locks, no allocation.
    const char *v = ::getenv("ORPHAND_SCOPE");
    if (!v || !*v)
        return proto::kScopeProcess;
    uint32_t scope = proto::scope_from_name(v);
    if (scope < proto::kScopeCount)
        return scope;
    unknown = v;
    return proto::kScopeProcess;
}

void report_unknown_scope(pid_t self, pid_t child, const char *value) {
    if (!debug_enabled())
        return;
    about(self, child)
        .add(": unknown ORPHAND_SCOPE \"")
        .add(value)
        .add("\" (process, pgroup, tree or cgroup): binding with scope process")
        .write_stderr();
}

// A refusal from the daemon: "child N not bound with scope S: REASON (ERRNO)", then what
// came of the fallback to scope process, if there was one: `then`, and `why` it failed.
void report_refusal(pid_t self, pid_t child, uint32_t scope, const proto::Reply &r,
                    const char *then = nullptr, const char *why = nullptr) {
    if (!debug_enabled())
        return;
    Line line = about(self, child);
    line.add(" not bound with scope ").add(proto::scope_name(scope)).add(": ");
    line.add(proto::reason_text(r.reason)).add(" (");
    add_errno(line, -r.error);
    line.add(")");
    if (then)
        line.add("; ").add(then);
    if (why)
        line.add(": ").add(why);
    line.write_stderr();
}

// After the request was sent, the daemon acts on it whatever happens to its reply: a failure
// to read the reply is reported as such, not as a child left unbound.
void report_unanswered(pid_t self, pid_t child, uint32_t scope, const Failure &f) {
    if (!debug_enabled())
        return;
    Line line = about(self, child);
    line.add(": REGISTER with scope ").add(proto::scope_name(scope)).add(" sent, but");
    add_failure(line, f);
    line.write_stderr();
}

// Sends the legacy HELLO record and then `q` with the child's pidfd, as two messages so that
// the fd travels with the request's first byte (orphand-protocol(7)), in one sendmmsg. HELLO
// is sent without waiting for its reply: the daemon reads the request once HELLO switched the
// connection to requests.
bool send_hello_and(int sock, const proto::Request &q, int pidfd, Failure &f) {
    proto::Record hello{proto::kHelloMagic, proto::kVersion, proto::kHello};
    proto::Request request = q;
    struct iovec iov[2] = {{&hello, sizeof(hello)}, {&request, sizeof(request)}};
    FdControl control;
    struct mmsghdr msgs[2]{};
    msgs[0].msg_hdr.msg_iov = &iov[0];
    msgs[0].msg_hdr.msg_iovlen = 1;
    msgs[1].msg_hdr.msg_iov = &iov[1];
    msgs[1].msg_hdr.msg_iovlen = 1;
    attach_fd(msgs[1].msg_hdr, control, pidfd);
    // MSG_NOSIGNAL: a daemon that went away must not SIGPIPE the program.
    long sent = with_retry(
        [&] { return ::syscall(SYS_sendmmsg, sock, msgs, 2, MSG_NOSIGNAL | MSG_DONTWAIT); });
    if (sent < 0) {
        f = {"sendmmsg", errno};
        return false;
    }
    if (msgs[0].msg_len != sizeof(hello)) {
        f = {"short sendmmsg", 0};
        return false;
    }
    if (sent == 1) {
        // HELLO went, the request did not (yet): send it alone.
        long n = with_retry([&] {
            return ::syscall(SYS_sendmsg, sock, &msgs[1].msg_hdr, MSG_NOSIGNAL | MSG_DONTWAIT);
        });
        if (n < 0) {
            f = {"sendmsg", errno};
            return false;
        }
        msgs[1].msg_len = static_cast<unsigned>(n);
    }
    if (msgs[1].msg_len != sizeof(request)) {
        f = {"short sendmmsg", 0};
        return false;
    }
    return true;
}

// The raw ppoll takes the kernel's timespec, which is glibc's where time_t is a long.
static_assert(sizeof(struct timespec) == 2 * sizeof(long), "timespec is not the kernel's");

// Reads exactly `size` bytes from the non-blocking `sock`, waiting at most what is left of
// `budget`: the raw ppoll writes the time left back into it, so that waits add up.
bool read_exact(int sock, void *data, size_t size, struct timespec &budget, Failure &f) {
    auto *p = static_cast<char *>(data);
    while (size > 0) {
        struct pollfd pfd = {sock, POLLIN, 0};
        long r = ::syscall(SYS_ppoll, &pfd, 1, &budget, nullptr, 0);
        if (r < 0 && errno != EINTR) {
            f = {"ppoll", errno};
            return false;
        }
        if (r == 0) {
            f = {"no reply within 100 ms", 0};
            return false;
        }
        long n = ::syscall(SYS_read, sock, p, size);
        if (n == 0) {
            f = {"the daemon closed the connection", 0};
            return false;
        }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            f = {"read", errno};
            return false;
        }
        p += n;
        size -= static_cast<size_t>(n);
    }
    return true;
}

// A reply that answers `q`.
bool answers(const proto::Reply &r, const proto::Request &q) {
    return r.seq == q.seq && r.action == q.action && r.error <= 0;
}

// Binds `child` with `scope` (not kScopeProcess) in acknowledged mode: HELLO and REGISTER, then
// their replies. A refusal of the scope itself (a daemon of protocol version 1, which has no
// scopes, or a cgroup scope refused or unsupported) falls back to scope process on the same
// connection: the child is bound as it would be without ORPHAND_SCOPE. False with `f` set when
// nothing was sent; what happens after is reported here.
bool register_scoped(pid_t self, pid_t child, int pidfd, uint32_t scope, Failure &f) {
    UniqueFd sock(connect_daemon(f));
    if (!sock.valid())
        return false;
    proto::Request q{};
    q.parent = static_cast<uint32_t>(self);
    q.child = static_cast<uint32_t>(child);
    q.action = proto::kRegister;
    q.seq = 1;
    q.scope = scope;
    if (!send_hello_and(sock.get(), q, pidfd, f))
        return false;

    proto::Reply replies[2]{};
    struct timespec budget {
        0, kReplyBudgetNs
    };
    if (!read_exact(sock.get(), replies, sizeof(replies), budget, f)) {
        report_unanswered(self, child, scope, f);
        return true;
    }
    const proto::Reply &hello = replies[0], &reply = replies[1];
    if (hello.action != proto::kHello || hello.error != 0 || hello.count < 1 ||
        !answers(reply, q)) {
        report_unanswered(self, child, scope, {"unexpected reply", 0});
        return true;
    }
    // A child that exited before the daemon read the request has nothing left to kill: that
    // is not a failure (the legacy record's refusal of it is silent too).
    if (reply.error == 0 || reply.reason == proto::kNoSuchProcess)
        return true;
    bool scope_refused = hello.count < proto::kVersionScopes || reply.reason == proto::kBadPolicy ||
                         reply.reason == proto::kScopeRefused ||
                         reply.reason == proto::kScopeUnsupported;
    if (!scope_refused) {
        report_refusal(self, child, scope, reply);
        return true;
    }

    proto::Request fallback = q;
    fallback.seq = 2;
    fallback.scope = proto::kScopeProcess;
    long sent = send_with_fd(sock.get(), &fallback, sizeof(fallback), pidfd);
    if (sent != static_cast<long>(sizeof(fallback))) {
        const char *why = sent < 0 ? errno_name(errno) : "short sendmsg";
        report_refusal(self, child, scope, reply, "not bound with scope process either",
                       why ? why : "sendmsg failed");
        return true;
    }
    proto::Reply again{};
    budget = {0, kReplyBudgetNs};
    if (!read_exact(sock.get(), &again, sizeof(again), budget, f) || !answers(again, fallback))
        report_refusal(self, child, scope, reply, "scope process sent, without a reply");
    else if (again.error < 0)
        report_refusal(self, child, scope, reply, "not bound with scope process either",
                       proto::reason_text(again.reason));
    else
        report_refusal(self, child, scope, reply, "bound with scope process");
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
    const char *unknown;
    uint32_t scope = requested_scope(unknown);
    if (unknown)
        report_unknown_scope(self, child, unknown);
    Failure f;
    // Scope process is the legacy record, sent and forgotten: what the shim did before scopes.
    bool ok = scope == proto::kScopeProcess ? send_register(self, child, pidfd, f)
                                            : register_scoped(self, child, pidfd, scope, f);
    if (!ok)
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
