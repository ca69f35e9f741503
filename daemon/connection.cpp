// SPDX-License-Identifier: MIT
// Client connections: accepting, reading and framing, passed fds, replies and throttling.
#include "connection.hpp"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "log.hpp"

namespace orphand {
namespace {

constexpr size_t kReadSize = 16384;
constexpr int kReadsPerEvent = 16;
constexpr int kAcceptsPerEvent = 64;

// Output pending: wait until the client reads it, reading nothing meanwhile, so that its replies
// never pile up beyond one request's worth. Input left for the next turn: nothing.
uint32_t wanted_events(const Connection &c) {
    if (c.out.size() > c.out_sent)
        return EPOLLOUT;
    if (c.ready || !c.in.empty())
        return 0;
    return EPOLLIN;
}

} // namespace

Connections::Connections(EventLoop &loop, FdCloser &closer, const UniqueFd &listener,
                         Source &listener_source, const Options &options, LogLimiter &input_limiter,
                         RequestHandler &handler)
    : loop_(loop), closer_(&closer), listener_(listener), listener_source_(listener_source),
      options_(options), input_limiter_(input_limiter), handler_(handler) {}

Connections::~Connections() {
    for (auto &[ptr, conn] : connections_) {
        if (conn->watched)
            loop_.remove(conn->fd.get());
        if (conn->fd && !conn->eof)
            release(std::move(conn->fd), conn->peer.uid);
    }
    connections_.clear();
}

uint32_t Connections::of_uid(uid_t uid) const {
    auto conns = connections_per_uid_.find(uid);
    return conns == connections_per_uid_.end() ? 0 : conns->second;
}

void Connections::resume_ready() {
    if (!ready_.empty()) {
        std::vector<Connection *> ready;
        std::swap(ready, ready_);
        for (Connection *c : ready)
            if (!c->closing && c->ready)
                resume(c);
    }
}

bool Connections::collect() {
    // Freed only now: an event later in the batch may point at them.
    for (Connection *c : closed_)
        connections_.erase(c);
    bool freed = !closed_.empty();
    closed_.clear();
    return freed;
}

void Connections::fds_freed() {
    if (listener_paused_) {
        listener_paused_ = false;
        (void)loop_.modify(listener_.get(), EPOLLIN, &listener_source_);
    }
}

void Connections::adopt_connection(UniqueFd fd, const struct ucred &peer) {
    auto c = std::make_unique<Connection>();
    c->fd = std::move(fd);
    c->peer = Peer(peer);
    int one = 1;
    (void)::setsockopt(c->fd.get(), SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one));
    if (peer.pid > 0)
        if (auto p = PidFd::open(peer.pid))
            c->peer.pidfd = std::move(*p);
    Connection *raw = c.get();
    raw->interest = EPOLLIN;
    if (auto r = loop_.add(raw->fd.get(), EPOLLIN, raw); !r)
        return;
    raw->watched = true;
    ++connections_per_uid_[peer.uid];
    connections_.emplace(raw, std::move(c));
}

void Connections::on_listener() {
    for (int i = 0; i < kAcceptsPerEvent; ++i) {
        if (closer_->full()) {
            // Too many fds wait to be closed (closes that block): a connection refused now
            // would add one more. Accept again once the FdCloser catches up.
            listener_paused_ = true;
            (void)loop_.modify(listener_.get(), 0, &listener_source_);
            if (input_limiter_.allow())
                log_fmt(LOG_WARNING,
                        "{} passed fds or connections are still being closed; not "
                        "accepting connections until fewer are",
                        closer_->pending());
            return;
        }
        UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) {
            int err = errno;
            if (err == EMFILE || err == ENFILE) {
                // Stop accepting until a connection or a watched process frees an fd, rather
                // than spinning on a listener that stays readable.
                listener_paused_ = true;
                (void)loop_.modify(listener_.get(), 0, &listener_source_);
                if (input_limiter_.allow())
                    log_fmt(LOG_WARNING, "out of file descriptors; not accepting connections "
                                         "until a connection or a watched process frees one");
            }
            return;
        }
        auto c = std::make_unique<Connection>();
        struct ucred cred {};
        if (!read_peer_cred(fd.get(), &cred)) {
            // Whatever the peer queued on it is released with it: never on the loop.
            release(std::move(fd), static_cast<uid_t>(-1));
            continue;
        }
        c->peer = Peer(cred);
        c->fd = std::move(fd);
        // Urgent data (MSG_OOB, Linux 5.15) is read inline, as part of the stream: otherwise a
        // read passes over it and the kernel releases the fds sent with it here, on the loop.
        int one = 1;
        (void)::setsockopt(c->fd.get(), SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one));
        c->peer.pidfd = open_peer_pidfd(c->fd.get(), c->peer.pid);
        bool root = c->peer.uid == 0;
        uint32_t &per_uid = connections_per_uid_[c->peer.uid];
        // 0 means unlimited, as for the binding limits.
        if ((options_.max_connections && connections_.size() >= options_.max_connections) ||
            (!root && options_.max_connections_per_uid &&
             per_uid >= options_.max_connections_per_uid)) {
            if (per_uid == 0)
                connections_per_uid_.erase(c->peer.uid);
            if (input_limiter_.allow())
                log_entry(LOG_WARNING, msgid::kRefused,
                          fmt::format("refusing connection from pid {} uid {}: {}", c->peer.pid,
                                      c->peer.uid, proto::reason_text(proto::kLimitConnections)),
                          {{"ORPHAND_REGISTRANT_UID", std::to_string(c->peer.uid)},
                           {"ORPHAND_REGISTRANT_PID", std::to_string(c->peer.pid)}});
            release(std::move(c->fd), c->peer.uid);
            continue;
        }
        ++per_uid;
        Connection *raw = c.get();
        connections_.emplace(raw, std::move(c));
        // Most clients (the shim, "connect, send, close") have sent everything by the time
        // they are accepted: read first, and a connection that is already done never costs
        // an epoll registration.
        read_from(raw, true);
        if (raw->closing || raw->throttled)
            continue;
        raw->interest = wanted_events(*raw);
        if (auto r = loop_.add(raw->fd.get(), raw->interest, raw); !r) {
            close_connection(raw);
            continue;
        }
        raw->watched = true;
    }
}

void Connections::on_connection(Connection *c, uint32_t events) {
    if (c->closing)
        return;
    if ((events & (EPOLLHUP | EPOLLERR)) && !c->hangup) {
        // Both directions are shut (or the peer is gone): no reply can reach it any more, but
        // what it sent before still counts, as a legacy client's records always have. Pending
        // replies are dropped and the rest of its input is read and handled until EOF.
        c->hangup = true;
        c->out.clear();
        c->out_sent = 0;
    }
    if (events & EPOLLOUT)
        flush(c);
    resume(c);
}

void Connections::resume(Connection *c) {
    if (c->closing || c->throttled)
        return;
    c->ready = false;
    if (c->out.size() > c->out_sent) {
        // Nothing more is handled until the client has taken its replies.
        update_interest(c);
        return;
    }
    if (!c->in.empty()) {
        std::string in = std::move(c->in);
        c->in.clear();
        size_t taken = 0;
        while (taken < in.size() && !c->closing) {
            size_t n = c->framer.feed_until(
                reinterpret_cast<const unsigned char *>(in.data()) + taken, in.size() - taken,
                [&](const unsigned char *m, size_t size) { return handle(c, m, size); });
            taken += n;
            if (c->out.size() > c->out_sent || c->ready)
                break;
        }
        if (c->closing)
            return;
        if (taken < in.size()) {
            c->in.assign(in, taken);
            update_interest(c);
            return;
        }
    }
    if (c->out.size() == c->out_sent && !c->ready)
        read_from(c, c->hangup);
    if (!c->closing)
        update_interest(c);
}

ssize_t Connections::receive(Connection *c, unsigned char *buf, size_t size) {
    // A client sends fds with the first byte of a message, but one recvmsg may join the bytes
    // of several sends, fds or not: the kernel stops after the first send with fds, wherever
    // that began. So a read that may meet fds stops at the end of the current message, and
    // then they belong to it. Whether fds lie ahead is asked first with a peek that takes
    // none (MSG_CTRUNC says so; the copies it drops are not the last references, so that never
    // blocks). A client that sent fds is read message by message until one comes without.
    size_t want = size;
    if (c->exact) {
        want = c->framer.remaining();
    } else {
        struct iovec iov = {buf, size};
        struct msghdr peek {};
        peek.msg_iov = &iov;
        peek.msg_iovlen = 1;
        ssize_t n = ::recvmsg(c->fd.get(), &peek, MSG_PEEK | MSG_DONTWAIT);
        if (n <= 0)
            return n < 0 ? -errno : 0;
        if (peek.msg_flags & MSG_CTRUNC) {
            c->exact = true;
            want = c->framer.remaining();
        } else {
            want = static_cast<size_t>(n);
        }
    }
    // Room for all the fds one message can carry (SCM_MAX_FD): any the kernel could not
    // install, it would release here, on the loop, where the last close may block.
    union {
        struct cmsghdr align;
        char data[CMSG_SPACE(sizeof(int) * 253)];
    } control;
    struct iovec iov = {buf, want};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data;
    msg.msg_controllen = sizeof(control.data);
    ssize_t n = ::recvmsg(c->fd.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0)
        return -errno;
    bool got_fds = CMSG_FIRSTHDR(&msg) != nullptr || (msg.msg_flags & MSG_CTRUNC);
    keep_fds(c, msg);
    if (n > 0)
        c->exact = got_fds;
    return n;
}

void take_rights(const struct cmsghdr *cm, FdBatch &batch, bool accept, FdCloser &closer,
                 uid_t uid) {
    size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t j = 0; j < count; ++j) {
        int raw;
        std::memcpy(&raw, CMSG_DATA(cm) + j * sizeof(int), sizeof(int));
        UniqueFd fd(raw);
        bool pidfd = is_pidfd(fd.get());
        if (!accept || batch.count == batch.fds.size())
            batch.too_many = true;
        else if (pidfd)
            batch.fds[batch.count++] = std::move(fd);
        else
            batch.not_pidfd[batch.count++] = true;
        if (fd)
            pidfd ? fd.reset() : closer.take(std::move(fd), uid);
    }
}

void Connections::keep_fds(Connection *c, struct msghdr &msg) {
    // Every fd is taken at once, so that none leaks whatever happens to the message. Pidfds
    // are kept for the message; any other fd goes to the FdCloser unexamined.
    bool first = !c->has_fds;
    if (first) {
        c->fds = FdBatch{};
        c->fds.message = c->consumed;
    }
    bool any = false;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        any = true;
        // Fds sent with a later part of the same message break the protocol's rule: the
        // message is refused as carrying too many.
        take_rights(cm, c->fds, first, *closer_, c->peer.uid);
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        any = true;
        c->fds.too_many = true;
    }
    if (any)
        c->has_fds = true;
}

void Connections::read_from(Connection *c, bool until_eagain) {
    static unsigned char buf[kReadSize];
    for (int i = 0; i < kReadsPerEvent && !c->closing; ++i) {
        if (closer_->throttled(c->peer.uid)) {
            throttle(c);
            return;
        }
        ssize_t n = receive(c, buf, sizeof(buf));
        if (n < 0 && (n == -EAGAIN || n == -EINTR))
            return;
        if (n <= 0) {
            // EOF, or an error that ends the stream: nothing more can arrive, and everything
            // that arrived before has been handled, so closing it cannot block.
            c->eof = true;
            close_connection(c);
            return;
        }
        if (!process(c, buf, static_cast<size_t>(n)))
            return;
        // A short read usually drained the socket; only a fresh connection, or one whose peer
        // has gone, reads on to see the EOF.
        if (static_cast<size_t>(n) < sizeof(buf) && !until_eagain && !c->exact)
            return;
    }
}

bool Connections::process(Connection *c, const unsigned char *data, size_t size) {
    // Requests are handled only while their replies are taken: once output is pending (the
    // client is not reading) or a request yielded the loop, the rest waits in `in`.
    size_t taken = c->framer.feed_until(
        data, size, [&](const unsigned char *m, size_t len) { return handle(c, m, len); });
    if (c->closing)
        return false;
    if (taken < size)
        c->in.append(reinterpret_cast<const char *>(data) + taken, size - taken);
    return c->in.empty() && c->out.size() == c->out_sent && !c->ready;
}

void Connections::throttle(Connection *c) {
    if (c->throttled)
        return;
    c->throttled = true;
    if (c->watched) {
        loop_.remove(c->fd.get());
        c->watched = false;
    }
    throttled_.push_back(c);
}

void Connections::release(UniqueFd fd, uid_t uid) {
    // The last close of a Unix socket releases the fds still queued in it, and those are the
    // client's to choose. Once its reading side is shut, the peer can queue nothing more
    // (unix(7): its sends fail with EPIPE); if nothing is queued then, the close cannot block.
    int queued = 1;
    if (::shutdown(fd.get(), SHUT_RD) == 0 && ::ioctl(fd.get(), FIONREAD, &queued) == 0 &&
        queued == 0)
        fd.reset();
    else
        closer_->take(std::move(fd), uid);
}

void Connections::on_closer() {
    closer_->drain_notification();
    if (listener_paused_ && !closer_->full()) {
        listener_paused_ = false;
        (void)loop_.modify(listener_.get(), EPOLLIN, &listener_source_);
    }
    std::vector<Connection *> again;
    std::swap(again, throttled_);
    for (Connection *c : again) {
        if (c->closing)
            continue;
        if (closer_->throttled(c->peer.uid)) {
            throttled_.push_back(c);
            continue;
        }
        c->throttled = false;
        c->interest = 0;
        if (auto r = loop_.add(c->fd.get(), 0, c); !r) {
            close_connection(c);
            continue;
        }
        c->watched = true;
        resume(c);
    }
}

bool Connections::handle(Connection *c, const unsigned char *msg, size_t size) {
    uint64_t start = c->consumed;
    c->consumed += size;
    FdBatch *fds = c->has_fds && c->fds.message == start ? &c->fds : nullptr;
    uint32_t action = proto::load<proto::Record>(msg).action;
    handler_.handle_request(c, msg, size, fds);
    if (c->has_fds && c->fds.message <= start) {
        c->has_fds = false;
        c->fds = FdBatch{}; // closes whatever was not adopted: pidfds only
    }
    if (c->closing)
        return false;
    // A LIST or STATUS may cost the loop a while: one per connection per turn.
    if (action == proto::kList || action == proto::kStatus) {
        if (!c->ready) {
            c->ready = true;
            ready_.push_back(c);
        }
        return false;
    }
    return c->out.size() == c->out_sent;
}

void Connections::reply(Connection *c, const void *data, size_t size) {
    if (c->hangup)
        return; // the peer can no longer read it
    c->out.append(static_cast<const char *>(data), size);
    flush(c);
}

void Connections::flush(Connection *c) {
    while (c->out_sent < c->out.size()) {
        ssize_t n = ::send(c->fd.get(), c->out.data() + c->out_sent, c->out.size() - c->out_sent,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            // The peer shut its reading side or is gone: drop the replies, and handle what it
            // sent until EOF as after a hangup.
            c->hangup = true;
            break;
        }
        c->out_sent += static_cast<size_t>(n);
    }
    // Sent bytes are dropped from the front only once they are most of the buffer, so that a
    // large reply sent in many pieces is moved a bounded number of times, not once per piece.
    if (c->out_sent == c->out.size() || c->hangup) {
        c->out.clear();
        c->out_sent = 0;
    } else if (c->out_sent >= kReadSize && c->out_sent * 2 >= c->out.size()) {
        c->out.erase(0, c->out_sent);
        c->out_sent = 0;
    }
    if (c->watched && !c->closing)
        update_interest(c);
}

void Connections::update_interest(Connection *c) {
    uint32_t want = wanted_events(*c);
    if (want == c->interest || !c->watched)
        return;
    c->interest = want;
    (void)loop_.modify(c->fd.get(), want, c);
}

void Connections::close_connection(Connection *c) {
    if (c->closing)
        return;
    c->closing = true;
    if (c->watched)
        loop_.remove(c->fd.get());
    auto it = connections_per_uid_.find(c->peer.uid);
    if (it != connections_per_uid_.end() && --it->second == 0)
        connections_per_uid_.erase(it);
    if (c->eof)
        c->fd.reset();
    else
        release(std::move(c->fd), c->peer.uid);
    c->has_fds = false;
    c->fds = FdBatch{};
    if (c->throttled)
        std::erase(throttled_, c);
    if (c->ready)
        std::erase(ready_, c);
    closed_.push_back(c);
}

} // namespace orphand
