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
// registration costs no accept, no connection and one wakeup at most. Security properties, as
// for connections: every fd a datagram carries is taken (SCM_MAX_FD) and any that is not a
// pidfd is closed off the loop (FdCloser); while fds wait to be closed, no sender may pass
// more (SO_PASSRIGHTS), and what is queued is read only while the FdCloser's limit stays out of
// reach; one datagram is read per report of the socket, so a flood never holds up other
// clients or kills. There are no replies: a sender that needs one connects (the stream
// socket).
class Datagrams {
  public:
    static constexpr size_t kMaxFdsPerDatagram = 253; // the kernel's SCM_MAX_FD

    // Reads `socket` (non-blocking, with SO_PASSCRED and where it exists SO_PASSPIDFD),
    // watched in `loop` through `source`; `closer`, `loop` and `handler` outlive it.
    Datagrams(EventLoop &loop, FdCloser &closer, UniqueFd socket, Source &source,
              DatagramHandler &handler);
    Datagrams(const Datagrams &) = delete;
    Datagrams &operator=(const Datagrams &) = delete;

    // The socket is readable: reads one datagram (level-triggered: the loop reports the next
    // at its next turn).
    void on_readable();
    // The FdCloser caught up: reading resumes if it had paused.
    void on_closer();
    // Gives up the socket (to be closed where a close may block).
    UniqueFd release_socket() { return std::move(socket_); }

  private:
    void handle(struct msghdr &msg, size_t size, const unsigned char *data);
    void pause();
    // Whether senders may pass fds (SO_PASSRIGHTS, Linux 6.16); a no-op where it fails.
    void refuse_fds(bool refuse);

    EventLoop &loop_;
    FdCloser &closer_;
    UniqueFd socket_;
    Source &source_;
    DatagramHandler &handler_;
    bool paused_ = false;
    bool fds_refused_ = false;
    bool rights_switch_ = true; // SO_PASSRIGHTS works (until it fails once)
};

} // namespace orphand
