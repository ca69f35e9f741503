// SPDX-License-Identifier: MIT
// One sendmsg with SCM_RIGHTS, for every C++ client of orphand's socket.
#include "send_fds.hpp"

#include <cerrno>
#include <cstring>

namespace orphand {

ssize_t send_with_fds(int sock, const void *data, size_t size, const int *fds, size_t nfds,
                      int flags) {
    if (nfds > kMaxSentFds) {
        errno = E2BIG;
        return -1;
    }
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * kMaxSentFds)];
    } control;
    struct iovec iov = {const_cast<void *>(data), size};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        std::memset(control.buf, 0, CMSG_SPACE(sizeof(int) * nfds));
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        std::memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do
        n = ::sendmsg(sock, &msg, flags);
    while (n < 0 && errno == EINTR);
    return n;
}

} // namespace orphand
