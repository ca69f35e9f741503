// SPDX-License-Identifier: MIT
// Process handles over pidfds, with fallbacks for kernels without PIDFD_GET_INFO or pidfs.
#include "pidfd.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace orphand {
namespace {

// struct pidfd_info as of Linux 6.15. The kernel accepts any size >= 64 (the size is encoded in
// the ioctl number) and fills what it knows, saying so in `mask`.
struct KernelPidfdInfo {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid;
    uint32_t ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
    uint32_t coredump_mask;
    uint32_t coredump_signal;
    uint64_t supported_mask;
};
static_assert(sizeof(KernelPidfdInfo) == 80);

constexpr unsigned long kPidfdGetInfo = _IOWR(0xFF, 11, KernelPidfdInfo);
constexpr uint64_t kInfoPid = 1u << 0;
constexpr uint64_t kInfoCreds = 1u << 1;
constexpr uint64_t kInfoExit = 1u << 3;

ssize_t read_small(const char *path, char *buf, size_t size) {
    return read_small_at(AT_FDCWD, path, buf, size);
}

// The value after "Key:" in a /proc status-like file, or nullptr.
const char *find_field(const char *text, const char *key) {
    size_t len = std::strlen(key);
    for (const char *line = text; line && *line;) {
        if (std::strncmp(line, key, len) == 0)
            return line + len;
        line = std::strchr(line, '\n');
        if (line)
            ++line;
    }
    return nullptr;
}

} // namespace

int pidfd_get_info(int pidfd, ProcessInfo *info) {
    KernelPidfdInfo raw{};
    raw.mask = kInfoPid | kInfoCreds | kInfoExit;
    if (::ioctl(pidfd, kPidfdGetInfo, &raw) < 0)
        return -errno;
    *info = ProcessInfo{};
    // A reaped process reports only its exit status: no pid, no credentials.
    info->have_pid = (raw.mask & kInfoPid) && raw.pid != 0;
    info->pid = static_cast<pid_t>(raw.pid);
    info->ppid = static_cast<pid_t>(raw.ppid);
    if (raw.mask & kInfoCreds) {
        info->have_creds = true;
        info->ruid = raw.ruid;
        info->euid = raw.euid;
        info->suid = raw.suid;
    }
    if (raw.mask & kInfoExit) {
        info->have_exit = true;
        info->exit_status = raw.exit_code;
    }
    return 0;
}

const KernelFeatures &kernel_features() {
    static const KernelFeatures features = [] {
        KernelFeatures f;
        UniqueFd self(sys_pidfd_open(::getpid(), 0));
        if (self) {
            ProcessInfo info;
            f.pidfd_info = pidfd_get_info(self.get(), &info) == 0;
            // PIDFD_INFO_EXIT is only reported once a process is reaped, but the kernel tells
            // which flags it supports in `supported_mask` (6.17+); treat 6.15/6.16 by probing a
            // reaped child below.
            struct statfs sfs {};
            f.pidfs = ::fstatfs(self.get(), &sfs) == 0 && sfs.f_type == kPidfsMagic;
        }
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
            UniqueFd a(sv[0]), b(sv[1]);
            int pfd = -1;
            socklen_t len = sizeof(pfd);
            if (::getsockopt(a.get(), SOL_SOCKET, kSoPeerPidfd, &pfd, &len) == 0 && pfd >= 0) {
                f.peer_pidfd = true;
                ::close(pfd);
            }
        }
        if (f.pidfd_info) {
            // A short-lived child, reaped, tells whether exit information is reported.
            pid_t pid = ::fork();
            if (pid == 0)
                ::_exit(7);
            if (pid > 0) {
                UniqueFd fd(sys_pidfd_open(pid, 0));
                int status;
                ::waitpid(pid, &status, 0);
                ProcessInfo info;
                f.exit_info = fd && pidfd_get_info(fd.get(), &info) == 0 && info.have_exit &&
                              WIFEXITED(info.exit_status) && WEXITSTATUS(info.exit_status) == 7;
            }
        }
        return f;
    }();
    return features;
}

Result<pid_t> pidfd_pid(int fd, ProcessInfo *out) {
    if (kernel_features().pidfd_info) {
        ProcessInfo info;
        int r = pidfd_get_info(fd, &info);
        // A reaped process's pidfd still answers (with its exit status) but reports no pid.
        if (r == 0 && !info.have_pid)
            return Error{-ESRCH, "pidfd of a reaped process"};
        if (r == 0) {
            if (out)
                *out = info;
            return info.pid;
        }
        if (r == -ENOTTY || r == -EINVAL || r == -EBADF)
            return Error{-EBADF, "not a pidfd"};
        return Error{r, "PIDFD_GET_INFO"};
    }
    // FIXME: drop once Linux 6.13 is the minimum. fdinfo says "Pid: N" for pidfds only.
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    char buf[1024];
    ssize_t n = read_small(path, buf, sizeof(buf));
    if (n < 0)
        return Error{static_cast<int>(n), "fdinfo"};
    const char *pid = find_field(buf, "Pid:");
    if (!pid)
        return Error{-EBADF, "not a pidfd"};
    long value = std::strtol(pid, nullptr, 10);
    if (value <= 0)
        return Error{-ESRCH, "pidfd of a reaped process"};
    return static_cast<pid_t>(value);
}

int pidfd_nspids(int fd, std::array<pid_t, 8> &out) {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    char buf[1024];
    ssize_t n = read_small(path, buf, sizeof(buf));
    if (n < 0)
        return static_cast<int>(n);
    const char *p = find_field(buf, "NSpid:");
    if (!p)
        return -EBADF;
    int count = 0;
    char *end;
    while (count < static_cast<int>(out.size())) {
        long v = std::strtol(p, &end, 10);
        if (end == p)
            break;
        out[count++] = static_cast<pid_t>(v);
        p = end;
        if (*p == '\n')
            break;
    }
    return count;
}

Result<PidFd> PidFd::open(pid_t pid) {
    if (pid <= 0)
        return Error{-EINVAL, "pidfd_open"};
    UniqueFd fd(sys_pidfd_open(pid, 0));
    if (!fd)
        return Error{-errno, "pidfd_open"};
    return PidFd(pid, std::move(fd));
}

Result<PidFd> PidFd::adopt(UniqueFd fd, ProcessInfo *info) {
    // PIDFD_THREAD (Linux 6.9) is O_EXCL, which open(2) never leaves in a file's flags.
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0)
        return Error{-EBADF, "not a pidfd"};
    if (flags & kPidfdThread)
        return Error{-EINVAL, "pidfd of a thread"};
    auto pid = pidfd_pid(fd.get(), info);
    if (!pid)
        return pid.error();
    return PidFd(*pid, std::move(fd));
}

bool PidFd::exited() const {
    struct pollfd p = {fd_.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
}

int PidFd::send_signal(int sig) const {
    return sys_pidfd_send_signal(fd_.get(), sig) < 0 ? -errno : 0;
}

std::string PidFd::comm() const {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/comm", pid_);
    char buf[64];
    ssize_t n = read_small(path, buf, sizeof(buf));
    // The pid names our process only while it is not reaped: check after reading.
    if (n <= 0 || send_signal(0) < 0)
        return "?";
    if (buf[n - 1] == '\n')
        buf[n - 1] = '\0';
    return buf;
}

uint64_t PidFd::inode() const {
    struct stat st {};
    if (!kernel_features().pidfs || !fd_ || ::fstat(fd_.get(), &st) < 0)
        return 0;
    return static_cast<uint64_t>(st.st_ino);
}

uint64_t PidFd::start_time() const {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/stat", pid_);
    char buf[2048];
    ssize_t n = read_small(path, buf, sizeof(buf));
    if (n <= 0 || send_signal(0) < 0)
        return 0;
    buf[std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1)] = '\0';
    // The comm may hold spaces and parentheses: fields are counted from its last ')'.
    const char *p = std::strrchr(buf, ')');
    if (!p)
        return 0;
    int field = 2;
    for (; *p && field < 22; ++p)
        if (*p == ' ')
            ++field;
    return field == 22 ? std::strtoull(p, nullptr, 10) : 0;
}

Result<Creds> PidFd::creds() const {
    if (kernel_features().pidfd_info) {
        ProcessInfo info;
        int r = pidfd_get_info(fd_.get(), &info);
        if (r < 0)
            return Error{r, "PIDFD_GET_INFO"};
        if (info.have_creds)
            return Creds{info.ruid, info.euid, info.suid};
    }
    // FIXME: drop once Linux 6.13 is the minimum.
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/status", pid_);
    char buf[4096];
    ssize_t n = read_small(path, buf, sizeof(buf));
    if (n < 0)
        return Error{static_cast<int>(n), "/proc/PID/status"};
    if (send_signal(0) < 0)
        return Error{-ESRCH, "process reaped"};
    const char *uid = find_field(buf, "Uid:");
    if (!uid)
        return Error{-EIO, "/proc/PID/status has no Uid"};
    Creds c;
    char *end;
    c.ruid = static_cast<uid_t>(std::strtoul(uid, &end, 10));
    c.euid = static_cast<uid_t>(std::strtoul(end, &end, 10));
    c.suid = static_cast<uid_t>(std::strtoul(end, &end, 10));
    return c;
}

bool PidFd::exit_status(int *status) const {
    if (kernel_features().pidfd_info) {
        ProcessInfo info;
        if (pidfd_get_info(fd_.get(), &info) == 0 && info.have_exit) {
            *status = info.exit_status;
            return true;
        }
    }
    // A zombie still has its exit code in /proc/PID/stat (field 52).
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/stat", pid_);
    char buf[2048];
    ssize_t n = read_small(path, buf, sizeof(buf));
    if (n <= 0 || send_signal(0) < 0) {
        // Reaped meanwhile: the kernel now has the status, where it reports it.
        ProcessInfo info;
        if (kernel_features().exit_info && pidfd_get_info(fd_.get(), &info) == 0 &&
            info.have_exit) {
            *status = info.exit_status;
            return true;
        }
        return false;
    }
    const char *p = std::strrchr(buf, ')');
    if (!p || p[1] != ' ' || p[2] != 'Z')
        return false;
    // Fields after the comm start at field 3; the exit code is field 52.
    int field = 2;
    for (; *p && field < 52; ++p)
        if (*p == ' ')
            ++field;
    if (field != 52)
        return false;
    // The kernel shows 0 here to a reader without ptrace access (orphand under DynamicUser=
    // watching another user's process): unknown then, not "exited with status 0".
    static const bool can_ptrace = [] {
        char self[4096];
        const char *cap = read_small("/proc/self/status", self, sizeof(self)) > 0
                              ? find_field(self, "CapEff:")
                              : nullptr;
        return cap && (std::strtoull(cap, nullptr, 16) & (1ull << 19)); // CAP_SYS_PTRACE
    }();
    if (!can_ptrace) {
        auto c = creds();
        uid_t me = ::geteuid();
        if (!c || c->ruid != me || c->euid != me || c->suid != me)
            return false;
    }
    *status = static_cast<int>(std::strtol(p, nullptr, 10));
    return true;
}

bool is_kernel_thread(pid_t pid) {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    char buf[2048];
    if (read_small(path, buf, sizeof(buf)) <= 0)
        return false;
    return stat_is_kernel_thread(buf);
}

bool stat_is_kernel_thread(const char *stat) {
    const char *p = std::strrchr(stat, ')');
    if (!p)
        return false;
    // Field 9 is flags; PF_KTHREAD is 0x00200000.
    int field = 2;
    for (; *p && field < 9; ++p)
        if (*p == ' ')
            ++field;
    if (field != 9)
        return false;
    unsigned long flags = std::strtoul(p, nullptr, 10);
    return flags & 0x00200000ul;
}

std::string describe_exit(int status) {
    if (WIFEXITED(status))
        return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "killed by " + signal_name(WTERMSIG(status)) +
               (WCOREDUMP(status) ? " (core dumped)" : "");
    return "status " + std::to_string(status);
}

ssize_t read_small_at(int dir, const char *path, char *buf, size_t size) {
    UniqueFd fd(::openat(dir, path, O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd)
        return -errno;
    ssize_t n = ::read(fd.get(), buf, size - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return n;
}

} // namespace orphand
