// SPDX-License-Identifier: MIT
// pidfd system calls, and the kernel constants around pidfds that older headers lack.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

namespace orphand {

// Numbers newer than Debian 12's kernel headers (6.1). glibc 2.36's <sys/pidfd.h> has no C
// linkage guard and cannot be included with <linux/pidfd.h>, so the wrappers below call the
// system calls directly.
// FIXME: drop once the headers of the oldest supported distribution have them.
inline constexpr int kSoPassPidfd = 76;                       // SO_PASSPIDFD, Linux 6.5
inline constexpr int kSoPassRights = 83;                      // SO_PASSRIGHTS, Linux 6.16
inline constexpr int kSoPeerPidfd = 77;                       // SO_PEERPIDFD, Linux 6.5
inline constexpr int kScmPidfd = 4;                           // SCM_PIDFD, Linux 6.5
inline constexpr unsigned kPidfdThread = O_EXCL;              // PIDFD_THREAD, Linux 6.9
inline constexpr unsigned kPidfdSignalThread = 1u << 0;       // PIDFD_SIGNAL_THREAD, Linux 6.9
inline constexpr unsigned kPidfdSignalThreadGroup = 1u << 1;  // PIDFD_SIGNAL_THREAD_GROUP
inline constexpr unsigned kPidfdSignalProcessGroup = 1u << 2; // PIDFD_SIGNAL_PROCESS_GROUP
inline constexpr long kPidfsMagic = 0x50494446;               // PID_FS_MAGIC, Linux 6.9

// pidfd_open(2); the fd is always close-on-exec. -1 with errno set on failure.
int sys_pidfd_open(pid_t pid, unsigned flags);
// pidfd_send_signal(2) with no siginfo. -1 with errno set on failure (ESRCH once reaped).
int sys_pidfd_send_signal(int pidfd, int sig, unsigned flags = 0);

// True if `fd` is a pidfd (or a /proc/PID directory, which the kernel accepts in its place).
// Decided by pidfd_send_signal with signal 0, which checks the file's type before anything
// else and never calls into the file's driver: an ioctl, fstat or fstatfs on a client's fd could
// wait on a FUSE server, and its last close could block (see the daemon's FdCloser). Closing an
// fd for which this is true never blocks.
bool is_pidfd(int fd);

} // namespace orphand
