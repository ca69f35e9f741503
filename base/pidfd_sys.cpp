// SPDX-License-Identifier: MIT
// pidfd system calls through syscall(2).
#include "pidfd_sys.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace orphand {

int sys_pidfd_open(pid_t pid, unsigned flags) {
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}

int sys_pidfd_send_signal(int pidfd, int sig, unsigned flags) {
    return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, flags));
}

bool is_pidfd(int fd) {
    return sys_pidfd_send_signal(fd, 0) == 0 || errno != EBADF;
}

} // namespace orphand
