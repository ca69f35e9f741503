// SPDX-License-Identifier: MIT
// Datagrams: the registration path made for the shim, one datagram and no connection per fork.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <cstddef>

#include "event_loop.hpp"
#include "fd_closer.hpp"
#include "peer.hpp"
#include "request.hpp"
#include "unique_fd.hpp"

namespace orphand {

// What handles one datagram: `peer` is its sender as the kernel reported it (SCM_CREDENTIALS,
// SCM_PIDFD), `fds` the fds that came with it. What it does not take is closed once it returns.
class DatagramHandler {
  public:
    virtual void handle_datagram(Peer &peer, const unsigned char *msg, size_t size,
                                 FdBatch *fds) = 0;

  protected:
    ~DatagramHandler() = default;
};

// Reads the datagram socket: each datagram is one message, whose sender the kernel names, so a
// registration costs no accept, no connection and one wakeup at most (several when they queue).
// Security properties, as for connections: every fd a datagram carries is taken (SCM_MAX_FD) and
// any that is not a pidfd is closed off the loop (FdCloser); nothing is read while the FdCloser
// is full; a turn reads at most kPerTurn datagrams, so a flood never holds up other clients or
// kills. There are no replies: a sender that needs one connects (the stream socket).
class Datagrams {
  public:
    static constexpr size_t kBatch = 16;   // datagrams per recvmmsg
    static constexpr size_t kPerTurn = 64; // datagrams per loop turn, at most

    // Reads `socket` (non-blocking, with SO_PASSCRED and where it exists SO_PASSPIDFD),
    // watched in `loop` through `source`; `closer`, `loop` and `handler` outlive it.
    Datagrams(EventLoop &loop, FdCloser &closer, UniqueFd socket, Source &source,
              DatagramHandler &handler);
    Datagrams(const Datagrams &) = delete;
    Datagrams &operator=(const Datagrams &) = delete;

    // The socket is readable: reads up to kPerTurn datagrams (level-triggered: the loop
    // reports the rest at its next turn).
    void on_readable();
    // The FdCloser caught up: reading resumes if it had paused.
    void on_closer();

    struct Stats {
        uint64_t received = 0;
        uint64_t anonymous = 0; // no sender known: ignored
    };
    const Stats &stats() const { return stats_; }

  private:
    void handle(struct msghdr &msg, size_t size, const unsigned char *data);
    void pause();

    EventLoop &loop_;
    FdCloser &closer_;
    UniqueFd socket_;
    Source &source_;
    DatagramHandler &handler_;
    bool paused_ = false;
    Stats stats_;
};

} // namespace orphand
