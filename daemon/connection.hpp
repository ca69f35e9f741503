// SPDX-License-Identifier: MIT
// Connections: client connections, from accept to close: reading, framing, passed fds, replies
// and throttling. What a message asks is the RequestHandler's.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "event_loop.hpp"
#include "fd_closer.hpp"
#include "log.hpp"
#include "options.hpp"
#include "orphand/protocol.hpp"
#include "peer.hpp"
#include "request.hpp"
#include "unique_fd.hpp"

namespace orphand {

struct Connection : Source {
    Connection() : Source(Kind::Connection) {}
    UniqueFd fd;
    Peer peer;
    bool v1 = false;
    uint8_t version = 0;  // in acknowledged mode: the protocol version agreed by HELLO
    bool watched = false; // registered in the loop (a connection done at accept never is)
    bool closing = false;
    bool eof = false;       // the peer can send no more and all it sent is read
    bool hangup = false;    // the peer can take no more replies: they are dropped
    bool exact = true;      // the next read stops at the end of the current message
    bool throttled = false; // its uid has too many fds waiting to be closed (see FdCloser)
    bool ready = false;     // has input to handle at the next turn of the loop
    uint32_t interest = 0;  // events it is watched for
    proto::Framer framer;
    uint64_t consumed = 0; // bytes of complete messages so far
    bool has_fds = false;
    FdBatch fds;     // fds for the message starting at fds.message
    std::string in;  // bytes read but not handled yet: output was pending, or it yielded
    std::string out; // replies not yet written, from out_sent on
    size_t out_sent = 0;
    bool refusal_logged = false;
    uint32_t bad_records = 0;
};

// What handles a connection's complete messages (the Server). It may reply (Connections::reply)
// and must not close the connection; `fds` are the fds that came with the message, or null,
// and what it does not take is closed once it returns.
class RequestHandler {
  public:
    virtual void handle_request(Connection *c, const unsigned char *msg, size_t size,
                                FdBatch *fds) = 0;

  protected:
    ~RequestHandler() = default;
};

// Takes every fd of the SCM_RIGHTS message `cm` into `batch`: pidfds are kept, at most
// kMaxFds of them; any other fd is marked (not_pidfd) and goes to `closer` unexamined, on behalf
// of `uid`. Fds beyond kMaxFds, or all of them if !accept, make the batch too_many.
void take_rights(const struct cmsghdr *cm, FdBatch &batch, bool accept, FdCloser &closer,
                 uid_t uid);

// Every client connection, from accept to close. Security properties kept here: no close that
// may block happens on the loop (a socket or fd the client may have filled goes to the
// FdCloser), urgent data is read inline (SO_OOBINLINE), a read takes every fd one message can
// carry (SCM_MAX_FD), connections are limited in all and per uid, a uid whose fds wait to be
// closed is not read (throttled), and a LIST or STATUS ends its connection's turn.
class Connections {
  public:
    // Accepts on `listener`, watched in `loop` through `listener_source`; all of its arguments
    // outlive it. Complete messages go to `handler`.
    Connections(EventLoop &loop, FdCloser &closer, const UniqueFd &listener,
                Source &listener_source, const Options &options, LogLimiter &input_limiter,
                RequestHandler &handler);
    // Releases every connection's socket (never a blocking close on the loop).
    ~Connections();
    Connections(const Connections &) = delete;
    Connections &operator=(const Connections &) = delete;

    // The loop's events: the listener is readable, a connection has events, the FdCloser
    // caught up.
    void on_listener();
    void on_connection(Connection *c, uint32_t events);
    void on_closer();
    // After a batch of events: connections that yielded or had more to read go on.
    void resume_ready();
    bool has_ready() const { return !ready_.empty(); }
    // Frees the connections closed during the batch; true if there were any.
    bool collect();
    // An fd was freed (a connection, or a watched process): a listener paused for want of
    // fds accepts again.
    void fds_freed();

    // Queues `data` for the client and sends what it can at once; dropped after a hangup.
    void reply(Connection *c, const void *data, size_t size);

    size_t size() const { return connections_.size(); }
    uint32_t of_uid(uid_t uid) const;

    // For tests and fuzzing: serves `fd` (taken), one end of a connected stream socket, as a
    // client whose identity is `peer` (as SO_PEERCRED reports it), as if just accepted.
    void adopt_connection(UniqueFd fd, const struct ucred &peer);

  private:
    void read_from(Connection *c, bool until_eagain = false);
    ssize_t receive(Connection *c, unsigned char *buf, size_t size);
    void keep_fds(Connection *c, struct msghdr &msg);
    bool process(Connection *c, const unsigned char *data, size_t size);
    void resume(Connection *c);
    void throttle(Connection *c);
    bool handle(Connection *c, const unsigned char *msg, size_t size);
    void flush(Connection *c);
    void update_interest(Connection *c);
    void close_connection(Connection *c);
    // Closes a connection's socket at once if that cannot block, or hands it to closer_.
    void release(UniqueFd fd, uid_t uid);

    EventLoop &loop_;
    FdCloser *closer_;
    const UniqueFd &listener_;
    Source &listener_source_;
    const Options &options_;
    LogLimiter &input_limiter_; // shared with the Server's refusals
    RequestHandler &handler_;
    bool listener_paused_ = false;
    std::unordered_map<Connection *, std::unique_ptr<Connection>> connections_;
    std::vector<Connection *> closed_;
    std::vector<Connection *> ready_;     // input left to handle at the next turn
    std::vector<Connection *> throttled_; // not read until their uid's closes catch up
    std::unordered_map<uid_t, uint32_t> connections_per_uid_;
};

} // namespace orphand
