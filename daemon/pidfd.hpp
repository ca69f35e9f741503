// SPDX-License-Identifier: MIT
// PidFd: a process handle (pid + pidfd), and what the daemon reads about processes through it.
// The system calls themselves, and signal names, are base's (pidfd_sys.hpp, signals.hpp).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>

#include "pidfd_sys.hpp"
#include "result.hpp"
#include "signals.hpp"
#include "unique_fd.hpp"

namespace orphand {

// What PIDFD_GET_INFO (Linux 6.13; exit status 6.15) reports. Fields are valid as `mask` says.
struct ProcessInfo {
    bool have_pid = false; // false once the process is reaped
    bool have_creds = false;
    pid_t pid = 0;
    pid_t ppid = 0;
    uid_t ruid = 0, euid = 0, suid = 0;
    bool have_exit = false;
    int exit_status = 0; // wait(2) status word
};

// Credentials of a live process.
struct Creds {
    uid_t ruid = 0, euid = 0, suid = 0;
};

// A process: its pid in our namespace and a pidfd that pins its identity (inode() names it
// for the whole boot).
class PidFd {
  public:
    PidFd() = default;
    PidFd(pid_t pid, UniqueFd fd) : pid_(pid), fd_(std::move(fd)) {}

    // Opens a pidfd for `pid` (close-on-exec). -ESRCH if there is no such process.
    static Result<PidFd> open(pid_t pid);
    // Takes ownership of `fd`, verifying it is a pidfd; reads its pid from the kernel, and
    // fills `info` (if given) when the kernel has PIDFD_GET_INFO. `fd` must have passed
    // is_pidfd(): nothing else is asked of a file a client may control.
    // -EBADF if `fd` is not a pidfd, -ESRCH if its process is already reaped, -EINVAL if it
    // is a thread's pidfd (PIDFD_THREAD), which would send signals to that thread alone.
    static Result<PidFd> adopt(UniqueFd fd, ProcessInfo *info = nullptr);

    pid_t pid() const { return pid_; }
    int fd() const { return fd_.get(); }
    bool valid() const { return fd_.valid(); }
    UniqueFd &unique_fd() { return fd_; }

    // True once the process has exited (zombie or reaped).
    bool exited() const;
    // pidfd_send_signal. 0, or a negative errno (-ESRCH once reaped).
    int send_signal(int sig) const;

    // Reads the process's command name while the pidfd proves it is still the same process.
    // Returns "?" if it cannot be read (for instance the process is already reaped).
    std::string comm() const;
    // Its start time in clock ticks after boot (/proc/PID/stat), verified against the pidfd;
    // 0 if it cannot be read.
    uint64_t start_time() const;
    // Its pidfs inode number, which names the process for the whole boot (as systemd's PidRef
    // does); 0 without pidfs (kernel_features().pidfs, Linux 6.9) or without a pidfd.
    uint64_t inode() const;
    // Real, effective and saved uid, verified against the pidfd.
    Result<Creds> creds() const;
    // Exit status if the kernel reports it (PIDFD_INFO_EXIT, Linux 6.15, only once reaped), or
    // from /proc/PID/stat while the process is a zombie.
    bool exit_status(int *status) const;

  private:
    pid_t pid_ = 0;
    UniqueFd fd_;
};

// Kernel capabilities detected at start-up.
struct KernelFeatures {
    bool peer_pidfd = false; // SO_PEERPIDFD
    bool pidfd_info = false; // PIDFD_GET_INFO
    bool exit_info = false;  // PIDFD_INFO_EXIT
    bool pidfs = false;      // pidfds live on pidfs (unique inodes)
};

// Probes the running kernel once; later calls return the cached answer.
const KernelFeatures &kernel_features();

// PIDFD_GET_INFO, with the exit status requested. -ENOTTY/-EINVAL on kernels before 6.13.
int pidfd_get_info(int pidfd, ProcessInfo *info);

// The pid a pidfd refers to in our pid namespace, from PIDFD_GET_INFO or /proc/self/fdinfo.
// -EBADF if `fd` is not a pidfd; -ESRCH if the process is reaped.
Result<pid_t> pidfd_pid(int fd, ProcessInfo *info = nullptr);

// All pids of the process behind a pidfd, outermost (our namespace) first (fdinfo NSpid).
// Returns the number of levels written (at most out.size()), or a negative errno.
int pidfd_nspids(int fd, std::array<pid_t, 8> &out);

// Reads a small file, `path` relative to directory fd `dir` (or AT_FDCWD), into `buf`
// (NUL-terminated, one read); its length, or a negative errno.
ssize_t read_small_at(int dir, const char *path, char *buf, size_t size);

// True if `pid` is a kernel thread (no mm: flag PF_KTHREAD in /proc/PID/stat).
bool is_kernel_thread(pid_t pid);
// The same decision on the text of a /proc/PID/stat: PF_KTHREAD in its flags (field 9). Fields
// are counted from the last ')', as the command name may hold spaces and ')'. False if the text
// has no such field.
bool stat_is_kernel_thread(const char *stat);

// Human-readable exit description: "exited with status 3", "killed by SIGKILL",
// "killed by SIGSEGV (core dumped)".
std::string describe_exit(int status);

} // namespace orphand
