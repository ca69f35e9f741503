// SPDX-License-Identifier: MIT
// libFuzzer target: request decoding, driven directly: no Server, no socket, no process.
//
// Each input is a client's byte stream, framed as the daemon frames it (legacy records until a
// HELLO, then v1 requests) and fed in chunks, with a batch of passed fds described for each
// message (a count, fds that are not pidfds, too many). Every message is decoded with
// decode_request, and the target checks (abort()) what the daemon relies on:
// - a refusal is a negative errno with a reason other than OK, and only the reasons the
//   decoder may give; what is not refused names valid, distinct pids (REGISTER) or valid pids
//   (UNREGISTER), comes with at most proto::kMaxFds fds, and has a policy the daemon can carry
//   out (a real signal, a known scope);
// - a legacy HELLO agrees on a version from 1 to proto::kVersion;
// - decoding is a function of its input: the same message decodes the same way twice.
//
// Input layout: [defaults] [fd plan] [chunk length] stream...
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "orphand/protocol.hpp"
#include "request.hpp"

namespace {

using namespace orphand;

[[noreturn]] void fail(const char *what) {
    std::fprintf(stderr, "fuzz_request: %s\n", what);
    std::abort();
}

// The daemon's default policy, as its options may set it.
Policy make_defaults(uint8_t b) {
    static const int signals[] = {SIGTERM, SIGKILL, SIGHUP, SIGUSR1};
    Policy p;
    p.signal = signals[b & 3];
    p.grace_ms = (b >> 2 & 3) == 3 ? proto::kGraceNever : (b >> 2 & 3) * 1000u;
    return p;
}

// The fds the plan gives the `index`th message: described only (none is opened), as the
// connection layer fills an FdBatch.
FdBatch *make_fds(FdBatch &batch, unsigned plan, size_t index) {
    unsigned bits = plan >> (index % 4 * 2) & 3;
    if (bits == 0)
        return nullptr;
    batch = FdBatch{};
    batch.count = bits == 3 ? proto::kMaxFds : bits;
    batch.not_pidfd[0] = (plan >> 7 & 1) && index % 3 == 0;
    batch.too_many = bits == 3 && (plan & 0x40);
    return &batch;
}

bool same(const DecodedRequest &a, const DecodedRequest &b) {
    return a.kind == b.kind && a.legacy == b.legacy && a.parent == b.parent && a.child == b.child &&
           a.policy.signal == b.policy.signal && a.policy.grace_ms == b.policy.grace_ms &&
           a.policy.scope == b.policy.scope && a.version == b.version &&
           a.error.error == b.error.error && a.error.reason == b.error.reason &&
           std::memcmp(&a.record, &b.record, sizeof(a.record)) == 0 &&
           std::memcmp(&a.request, &b.request, sizeof(a.request)) == 0;
}

bool valid_pid(uint32_t pid) {
    return pid != 0 && pid <= 0x7fffffffu;
}

void check(const DecodedRequest &d, const FdBatch *fds) {
    using Kind = DecodedRequest::Kind;
    if (d.error.error > 0 || (d.error.error < 0) != (d.error.reason != proto::kOk))
        fail("a refusal without a negative errno and a reason, or a reason without a refusal");
    if (d.error.error < 0) {
        switch (d.error.reason) {
        case proto::kBadPolicy:
            if (d.legacy)
                fail("a legacy record refused for a policy it cannot carry");
            break;
        case proto::kTooManyFds:
        case proto::kSameProcess:
            if (d.kind != Kind::Register)
                fail("a refusal only REGISTER may get");
            break;
        case proto::kBadPid:
            if (d.kind != Kind::Register && d.kind != Kind::Unregister)
                fail("BAD_PID for a request that names no pid");
            break;
        case proto::kUnknownAction:
            if (d.kind != Kind::Unknown)
                fail("UNKNOWN_ACTION for a known action");
            break;
        default:
            fail("a reason the decoder never gives");
        }
        return;
    }
    if (d.kind == Kind::Unknown)
        fail("an unknown action not refused");
    if (d.kind == Kind::Register) {
        if (!valid_pid(d.parent) || !valid_pid(d.child) || d.parent == d.child)
            fail("REGISTER accepted with bad pids");
        if (fds && (fds->too_many || fds->count > proto::kMaxFds))
            fail("REGISTER accepted with too many fds");
        if (d.policy.signal < 1 || d.policy.signal >= NSIG || d.policy.scope >= proto::kScopeCount)
            fail("REGISTER accepted with a policy that cannot be carried out");
    }
    if (d.kind == Kind::Unregister && (!valid_pid(d.parent) || !valid_pid(d.child)))
        fail("UNREGISTER accepted with bad pids");
    if (d.legacy && d.kind == Kind::Hello && (d.version < 1 || d.version > proto::kVersion))
        fail("HELLO agreed on a version that does not exist");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3)
        return 0;
    Policy defaults = make_defaults(data[0]);
    unsigned plan = data[1];
    size_t chunk = data[2] % 64 + 1;
    data += 3;
    size -= 3;

    proto::Framer framer;
    size_t index = 0;
    FdBatch batch;
    auto on_message = [&](const unsigned char *msg, size_t len) {
        const FdBatch *fds = make_fds(batch, plan, index++);
        DecodedRequest d = decode_request(msg, len, defaults, fds);
        if (d.legacy != (len == sizeof(proto::Record)))
            fail("a message decoded as the wrong protocol");
        check(d, fds);
        if (!same(d, decode_request(msg, len, defaults, fds)))
            fail("the same message decoded two ways");
        // As the connection does: a legacy HELLO switches the stream to v1 requests.
        if (d.legacy && d.kind == DecodedRequest::Kind::Hello)
            framer.set_size(sizeof(proto::Request));
        return true;
    };
    for (size_t pos = 0; pos < size; pos += chunk) {
        size_t len = size - pos < chunk ? size - pos : chunk;
        size_t taken = 0;
        while (taken < len)
            taken += framer.feed_until(data + pos + taken, len - taken, on_message);
    }
    return 0;
}
