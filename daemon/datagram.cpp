// SPDX-License-Identifier: MIT
// Datagrams: records read from the datagram socket with their senders' credentials and fds.
#include "datagram.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "connection.hpp"
#include "pidfd.hpp"

namespace orphand {
namespace {

// Room for what one datagram can carry: the sender's credentials and pidfd, and all the fds one
// message can carry (SCM_MAX_FD). Any fd the kernel could not install, it would release here, on
// the loop, where the last close may block.
union Control {
    struct cmsghdr align;
    char data[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int)) +
              CMSG_SPACE(sizeof(int) * 253)];
};

// One record, and room to see that a datagram is longer.
constexpr size_t kMessageRoom = 64;

} // namespace

Datagrams::Datagrams(EventLoop &loop, FdCloser &closer, UniqueFd socket, Source &source,
                     DatagramHandler &handler)
    : loop_(loop), closer_(closer), socket_(std::move(socket)), source_(source), handler_(handler) {
}

void Datagrams::pause() {
    if (!paused_ && loop_.modify(socket_.get(), 0, &source_))
        paused_ = true;
}

void Datagrams::on_closer() {
    if (paused_ && !closer_.full() && loop_.modify(socket_.get(), EPOLLIN, &source_))
        paused_ = false;
}

void Datagrams::on_readable() {
    static std::array<std::array<unsigned char, kMessageRoom>, kBatch> data;
    static std::array<Control, kBatch> control;
    std::array<struct iovec, kBatch> iov;
    std::array<struct mmsghdr, kBatch> msgs;
    for (size_t read = 0; read < kPerTurn;) {
        // Fds from senders wait to be closed: nothing more is taken until they are (senders
        // meanwhile find the queue full and connect instead, where each uid is throttled).
        if (closer_.full()) {
            pause();
            return;
        }
        // While fds wait to be closed, one datagram at a time: the FdCloser's limit is then
        // overshot by one datagram's fds at most, not a batch's.
        size_t batch = closer_.pending() ? 1 : kBatch;
        for (size_t i = 0; i < batch; ++i) {
            iov[i] = {data[i].data(), data[i].size()};
            msgs[i] = {};
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = control[i].data;
            msgs[i].msg_hdr.msg_controllen = sizeof(control[i].data);
        }
        int n = ::recvmmsg(socket_.get(), msgs.data(), static_cast<unsigned>(batch),
                           MSG_DONTWAIT | MSG_CMSG_CLOEXEC, nullptr);
        if (n <= 0)
            return; // EAGAIN: drained; any other error is the socket's and ends nothing
        for (int i = 0; i < n; ++i)
            handle(msgs[i].msg_hdr, msgs[i].msg_len, data[i].data());
        read += static_cast<size_t>(n);
        if (static_cast<size_t>(n) < batch)
            return; // drained
    }
}

void Datagrams::handle(struct msghdr &msg, size_t size, const unsigned char *data) {
    ++stats_.received;
    // Every fd is taken first, so that none leaks whatever the datagram says.
    const struct ucred *cred = nullptr;
    UniqueFd sender_pidfd;
    const struct cmsghdr *rights = nullptr;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET)
            continue;
        if (cm->cmsg_type == SCM_CREDENTIALS && cm->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
            cred = reinterpret_cast<const struct ucred *>(CMSG_DATA(cm));
        else if (cm->cmsg_type == kScmPidfd && cm->cmsg_len == CMSG_LEN(sizeof(int)))
            sender_pidfd.reset(*reinterpret_cast<const int *>(CMSG_DATA(cm)));
        else if (cm->cmsg_type == SCM_RIGHTS)
            rights = cm;
    }
    // Without a sender (a datagram queued before its credentials were asked for), whatever the
    // fds are, they go to the FdCloser on behalf of nobody in particular.
    uid_t uid = cred ? cred->uid : static_cast<uid_t>(-1);
    FdBatch fds;
    if (rights)
        take_rights(rights, fds, true, closer_, uid);
    if (msg.msg_flags & MSG_CTRUNC)
        fds.too_many = true; // an fd the kernel could not install: the request is not whole
    if (!cred || cred->pid <= 0) {
        ++stats_.anonymous;
        return;
    }
    Peer peer(*cred);
    peer.once = true;
    if (sender_pidfd)
        peer.pidfd = PidFd(cred->pid, std::move(sender_pidfd));
    else if (auto p = PidFd::open(cred->pid))
        // FIXME: drop once Linux 6.5 is the minimum: opened by pid, as for connections.
        peer.pidfd = std::move(*p);
    handler_.handle_datagram(peer, data, size, fds.count || fds.too_many ? &fds : nullptr);
}

} // namespace orphand
