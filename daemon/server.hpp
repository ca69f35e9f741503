// SPDX-License-Identifier: MIT
// Server: the listening socket, client connections, and the requests they carry.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "binding_log.hpp"
#include "event_loop.hpp"
#include "fd_closer.hpp"
#include "listener.hpp"
#include "log.hpp"
#include "notify.hpp"
#include "options.hpp"
#include "peer.hpp"
#include "pidfd.hpp"
#include "registry.hpp"
#include "request.hpp"

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

class Server {
  public:
    // Sets up the loop, signal handling and the listening socket (passed by systemd or bound
    // at options.socket_path). Throws std::runtime_error on start-up failure.
    explicit Server(const Options &options);
    ~Server();

    // Runs until SIGTERM or SIGINT. Returns the exit status.
    int run();

    // For tests: handle one complete message as if read from `c`.
    Registry &registry() { return *registry_; }

    // For tests and fuzzing: waits at most timeout_ms (-1: forever) for events and handles
    // them, as one turn of run(). False if the loop failed.
    bool dispatch(int timeout_ms);
    // For tests and fuzzing: serves `fd` (taken), one end of a connected stream socket, as a
    // client whose identity is `peer` (as SO_PEERCRED reports it), as if just accepted.
    void adopt_connection(UniqueFd fd, const struct ucred &peer);
    // For tests and fuzzing: fds handed to the FdCloser that it has not closed yet.
    size_t pending_closes() { return closer_->pending(); }
    // Scope kills queued or running on the scope worker (for tests).
    size_t pending_scopes() { return scopes_->pending(); }

  private:
    void on_listener();
    void on_connection(Connection *c, uint32_t events);
    void read_from(Connection *c, bool until_eagain = false);
    ssize_t receive(Connection *c, unsigned char *buf, size_t size);
    void keep_fds(Connection *c, struct msghdr &msg);
    bool process(Connection *c, const unsigned char *data, size_t size);
    void resume(Connection *c);
    void throttle(Connection *c);
    void on_closer();
    bool handle(Connection *c, const unsigned char *msg, size_t size);
    void handle_legacy(Connection *c, const DecodedRequest &r, FdBatch *fds);
    void handle_v1(Connection *c, const DecodedRequest &r, FdBatch *fds);
    Verdict do_register(Connection *c, uint32_t parent, uint32_t child, const Policy &policy,
                        FdBatch *fds);
    Verdict do_unregister(Connection *c, uint32_t parent, uint32_t child);
    void reply(Connection *c, const void *data, size_t size);
    void send_reply(Connection *c, const proto::Request &q, Verdict v, uint32_t count = 0);
    void flush(Connection *c);
    void update_interest(Connection *c);
    void close_connection(Connection *c);
    // Closes a connection's socket at once if that cannot block, or hands it to closer_.
    void release(UniqueFd fd, uid_t uid);
    void log_refusal(Connection *c, const char *what, uint32_t parent, uint32_t child, Verdict v);
    void list(Connection *c, const proto::Request &q);
    void status(Connection *c, const proto::Request &q);
    void on_signal();

    Options options_;
    EventLoop loop_;
    std::unique_ptr<Registry> registry_;
    std::unique_ptr<BindingLog> binding_log_; // null without a state directory
    Source listener_source_{Source::Kind::Listener};
    Source signal_source_{Source::Kind::Signal};
    Source timer_source_{Source::Kind::Timer};
    Source watchdog_source_{Source::Kind::Watchdog};
    Source closer_source_{Source::Kind::Closer};
    Source scopes_source_{Source::Kind::Scopes};
    Source status_source_{Source::Kind::Status};
    std::unique_ptr<Notifier> notifier_;
    std::unique_ptr<FdCloser> closer_;
    std::unique_ptr<ScopeWorker> scopes_;
    UniqueFd listener_;
    UniqueFd signal_fd_;
    bool listener_paused_ = false;
    bool socket_activated_ = false;
    bool stop_ = false;
    std::unordered_map<Connection *, std::unique_ptr<Connection>> connections_;
    std::vector<Connection *> closed_;
    std::vector<Connection *> ready_;     // input left to handle at the next turn
    std::vector<Connection *> throttled_; // not read until their uid's closes catch up
    std::unordered_map<uid_t, uint32_t> connections_per_uid_;
    LogLimiter input_limiter_{20, 5};
    uint64_t start_ns_ = 0;
    std::string bound_path_;
    PeerNamespaceCache last_peer_; // see peer_foreign
    size_t live_high_ = 0; // most connections + watched processes since the heap was trimmed
};

} // namespace orphand
