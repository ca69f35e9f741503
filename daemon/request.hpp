// SPDX-License-Identifier: MIT
// Request decoding: a framed message and the fds that came with it, as a typed request.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "orphand/protocol.hpp"
#include "registry.hpp"
#include "unique_fd.hpp"

namespace orphand {

// Fds that came with a message. Only pidfds are kept (an fd of any other kind went to the
// FdCloser when it arrived, and is marked here).
struct FdBatch {
    uint64_t message = 0; // stream offset of the first byte of the message they came with
    std::array<UniqueFd, proto::kMaxFds> fds;
    std::array<bool, proto::kMaxFds> not_pidfd{};
    size_t count = 0;
    bool too_many = false;
};

// What one message asks for, decoded without looking at any process or at the connection.
struct DecodedRequest {
    enum class Kind : uint8_t { Ping, Hello, Register, Unregister, List, Status, Unknown };
    Kind kind = Kind::Unknown;
    bool legacy = false;      // a 12-byte record: no replies but to PING and HELLO
    proto::Record record{};   // legacy: the record as received (a PING is echoed)
    proto::Request request{}; // v1: the request as received (its reply carries seq and action)
    uint32_t parent = 0;
    uint32_t child = 0;
    Policy policy;       // Register: the defaults, with what the request sets
    uint8_t version = 0; // Hello on a legacy record: the protocol version agreed
    // error < 0: the message is refused as it stands, before any process is looked up:
    // kBadPolicy (v1: unknown flags, a scope the action does not take, a bad signal),
    // kTooManyFds, kBadPid, kSameProcess (REGISTER), kBadPid (UNREGISTER), or
    // kUnknownAction (Unknown).
    Verdict error;
};

// Decodes the complete message [msg, msg + size): a legacy record if size is
// sizeof(proto::Record), else a v1 request (size is sizeof(proto::Request)). `defaults` is the
// daemon's policy; `fds` the fds that came with the message's first byte, or null. Pure: no
// I/O, no allocation; every input decodes to something.
DecodedRequest decode_request(const unsigned char *msg, size_t size, const Policy &defaults,
                              const FdBatch *fds);

} // namespace orphand
