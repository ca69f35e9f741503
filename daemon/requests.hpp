// SPDX-License-Identifier: MIT
// Requests: what the daemon does for each decoded request, against the registry.
#pragma once

#include <cstddef>
#include <cstdint>

#include "connection.hpp"
#include "datagram.hpp"
#include "log.hpp"
#include "options.hpp"
#include "peer.hpp"
#include "registry.hpp"
#include "request.hpp"

namespace orphand {

// Carries out a connection's messages: decodes each (decode_request), resolves REGISTER's
// processes (pidfds passed or opened, the peer's pid namespace), authorizes the binding
// (authorize_bind), adds or removes it in the registry, answers LIST and STATUS as the peer
// may see them, and replies (v1) or logs refusals (rate-limited).
class Requests final : public RequestHandler, public DatagramHandler {
  public:
    // `registry`, `options` and `input_limiter` outlive it; `start_ns` is when orphand
    // started (STATUS's uptime); `durable`: bindings survive a restart (a binding log).
    Requests(Registry &registry, const Options &options, LogLimiter &input_limiter,
             uint64_t start_ns, bool durable);
    // The connections whose messages it handles, and replies through; set before any message.
    void set_connections(Connections *connections) { connections_ = connections; }

    void handle_request(Connection *c, const unsigned char *msg, size_t size,
                        FdBatch *fds) override;
    // A datagram: one legacy REGISTER or UNREGISTER record, carried out like one read from a
    // connection of `peer`'s; nothing else is taken (there is no one to reply to).
    void handle_datagram(Peer &peer, const unsigned char *msg, size_t size, FdBatch *fds) override;

  private:
    void handle_legacy(Connection *c, const DecodedRequest &r, FdBatch *fds);
    void handle_v1(Connection *c, const DecodedRequest &r, FdBatch *fds);
    Verdict do_register(Peer &peer, uint32_t parent, uint32_t child, const Policy &policy,
                        FdBatch *fds);
    Verdict do_unregister(Peer &peer, uint32_t parent, uint32_t child);
    void send_reply(Connection *c, const proto::Request &q, Verdict v, uint32_t count = 0);
    // `bad_records` counts the refusals logged for one connection (null for a datagram): a few
    // per connection, and the global rate, keep a flood of junk from flooding the log.
    void log_refusal(const Peer &peer, uint32_t *bad_records, const char *what, uint32_t parent,
                     uint32_t child, Verdict v);
    void list(Connection *c, const proto::Request &q);
    void status(Connection *c, const proto::Request &q);

    Registry *registry_;
    const Options &options_;
    LogLimiter &input_limiter_; // shared with Connections
    uint64_t start_ns_;
    bool durable_;
    Connections *connections_ = nullptr;
    PeerNamespaceCache last_peer_; // see peer_foreign
};

} // namespace orphand
