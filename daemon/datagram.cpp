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
              CMSG_SPACE(sizeof(int) * Datagrams::kMaxFdsPerDatagram)];
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

void Datagrams::refuse_fds(bool refuse) {
    if (refuse == fds_refused_ || !rights_switch_)
        return;
    int pass = refuse ? 0 : 1;
    if (::setsockopt(socket_.get(), SOL_SOCKET, kSoPassRights, &pass, sizeof(pass)) == 0)
        fds_refused_ = refuse;
    else
        rights_switch_ = false; // before Linux 6.16: reading pauses instead
}

void Datagrams::on_closer() {
    if (!closer_.quiet())
        return;
    refuse_fds(false);
    if (paused_ && loop_.modify(socket_.get(), EPOLLIN, &source_))
        paused_ = false;
}

void Datagrams::on_readable() {
    // Fds from senders wait to be closed. A sender is known only once its datagram is read,
    // so no uid can be held back alone, as on connections. Instead no sender may pass fds
    // until they are closed (SO_PASSRIGHTS: its send fails with EPERM, and the shim then
    // connects, where each uid is throttled on its own), and the datagrams already queued,
    // whose fds are bounded by the queue's length, are read while FdCloser::kMaxPending (at
    // which connections wait) stays out of reach. One sender whose fd's close blocks (honest
    // clients send only pidfds, which are never pending) thus costs others the datagram path
    // for a while, never their registrations.
    if (!closer_.quiet()) {
        refuse_fds(true);
        if (!fds_refused_ || closer_.pending() + kMaxFdsPerDatagram >= FdCloser::kMaxPending) {
            pause();
            return;
        }
    }
    // One datagram per report: one may carry kMaxFdsPerDatagram fds, and the check above is
    // made before each. The socket is level-triggered: the loop reports the next at once,
    // after the other events.
    static std::array<unsigned char, kMessageRoom> data;
    static Control control;
    struct iovec iov = {data.data(), data.size()};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data;
    msg.msg_controllen = sizeof(control.data);
    // MSG_TRUNC: the datagram's whole length, however much of it fits.
    ssize_t n = ::recvmsg(socket_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0)
        return; // EAGAIN: drained; any other error is the socket's and ends nothing
    handle(msg, static_cast<size_t>(n), data.data());
}

void Datagrams::handle(struct msghdr &msg, size_t size, const unsigned char *data) {
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
    if (!cred || cred->pid <= 0)
        return;
    Peer peer(*cred);
    peer.once = true;
    if (sender_pidfd) {
        peer.pidfd = PidFd(cred->pid, std::move(sender_pidfd));
    } else if (auto p = PidFd::open(cred->pid)) {
        // FIXME: drop once Linux 6.5 is the minimum: opened by pid, as for connections (before
        // 6.16 the kernel gives no pidfd of a sender already reaped either).
        peer.pidfd = std::move(*p);
    } else if (p.code() == -ESRCH) {
        // No process has the sender's pid: the sender has exited and been reaped.
        peer.gone = true;
    }
    handler_.handle_datagram(peer, data, size, fds.count || fds.too_many ? &fds : nullptr);
}

} // namespace orphand
