// SPDX-License-Identifier: MIT
// Server: orphand assembled from its parts, and its event loop.
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
#include "connection.hpp"
#include "datagram.hpp"
#include "event_loop.hpp"
#include "fd_closer.hpp"
#include "kill_log.hpp"
#include "listener.hpp"
#include "log.hpp"
#include "notify.hpp"
#include "options.hpp"
#include "peer.hpp"
#include "pidfd.hpp"
#include "registry.hpp"
#include "request.hpp"
#include "requests.hpp"

namespace orphand {

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
    void adopt_connection(UniqueFd fd, const struct ucred &peer) {
        connections_->adopt_connection(std::move(fd), peer);
    }
    // For tests and fuzzing: fds handed to the FdCloser that it has not closed yet.
    size_t pending_closes() { return closer_->pending(); }
    // Scope kills queued or running on the scope worker (for tests).
    size_t pending_scopes() { return scopes_->pending(); }

  private:
    void on_signal();

    Options options_;
    EventLoop loop_;
    KillLog kill_log_; // describes the registry's kills
    std::unique_ptr<Registry> registry_;
    std::unique_ptr<BindingLog> binding_log_; // null without a state directory
    Source listener_source_{Source::Kind::Listener};
    Source datagram_source_{Source::Kind::Datagrams};
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
    bool socket_activated_ = false;
    bool stop_ = false;
    LogLimiter input_limiter_{20, 5};
    // Declared after what they refer to (registry_, listener_, input_limiter_, each other):
    // destroyed before them.
    std::unique_ptr<Requests> requests_;
    std::unique_ptr<Connections> connections_;
    std::unique_ptr<Datagrams> datagrams_; // null without a datagram socket
    uint64_t start_ns_ = 0;
    std::string bound_path_;
    std::string datagram_bound_path_;
    size_t live_high_ = 0; // most connections + watched processes since the heap was trimmed
};

} // namespace orphand
