// SPDX-License-Identifier: MIT
// send_with_fds: one sendmsg carrying bytes and, on their first byte, fds in SCM_RIGHTS.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>

namespace orphand {

// The most fds one call passes (a REGISTER's child and parent pidfds; an fd store entry's two).
inline constexpr size_t kMaxSentFds = 2;

// Sends [data, data + size) on `sock` with `nfds` (at most kMaxSentFds) fds attached, retrying
// on EINTR. Returns what sendmsg returned: the bytes sent, or -1 with errno set. The fds stay
// the caller's.
ssize_t send_with_fds(int sock, const void *data, size_t size, const int *fds, size_t nfds,
                      int flags);

} // namespace orphand
