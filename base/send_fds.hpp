// SPDX-License-Identifier: MIT
// send_with_fds: one sendmsg carrying bytes and, on their first byte, fds in SCM_RIGHTS.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>

namespace orphand {

// SCM_MAX_FD: the most fds the kernel takes in one message.
inline constexpr size_t kMaxSentFds = 253;

// Sends [data, data + size) on `sock` with `nfds` (at most kMaxSentFds) fds attached to its
// first byte, retrying on EINTR. Returns what sendmsg returned: the bytes sent (perhaps fewer
// than `size` on a non-blocking socket; the fds went with them), or -1 with errno set (E2BIG
// for too many fds). The fds stay the caller's.
ssize_t send_with_fds(int sock, const void *data, size_t size, const int *fds, size_t nfds,
                      int flags);

} // namespace orphand
