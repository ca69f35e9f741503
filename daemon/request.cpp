// SPDX-License-Identifier: MIT
// Request decoding: legacy records and v1 requests to DecodedRequest, with the checks that
// need no process (policy, pids, fd count).
#include "request.hpp"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <climits>

namespace orphand {
namespace {

bool valid_pid(uint32_t pid) {
    return pid != 0 && pid <= static_cast<uint32_t>(INT_MAX);
}

// The checks of a REGISTER that come before any process is looked up, in this order.
Verdict check_register(uint32_t parent, uint32_t child, const FdBatch *fds) {
    if (fds && fds->too_many)
        return {-E2BIG, proto::kTooManyFds};
    if (!valid_pid(child) || !valid_pid(parent))
        return {-EINVAL, proto::kBadPid};
    if (parent == child)
        return {-EINVAL, proto::kSameProcess};
    return {};
}

Verdict check_unregister(uint32_t parent, uint32_t child) {
    if (!valid_pid(child) || !valid_pid(parent))
        return {-EINVAL, proto::kBadPid};
    return {};
}

DecodedRequest decode_legacy(const proto::Record &r, const Policy &defaults, const FdBatch *fds) {
    DecodedRequest d;
    d.legacy = true;
    d.record = r;
    d.parent = r.parent;
    d.child = r.child;
    d.policy = defaults;
    switch (r.action) {
    case proto::kPing:
        d.kind = DecodedRequest::Kind::Ping;
        return d;
    case proto::kRegister:
        d.kind = DecodedRequest::Kind::Register;
        d.error = check_register(r.parent, r.child, fds);
        return d;
    case proto::kUnregister:
        d.kind = DecodedRequest::Kind::Unregister;
        d.error = check_unregister(r.parent, r.child);
        return d;
    case proto::kHello:
        if (r.parent == proto::kHelloMagic && r.child >= 1) {
            d.kind = DecodedRequest::Kind::Hello;
            d.version = static_cast<uint8_t>(std::min(r.child, proto::kVersion));
            return d;
        }
        [[fallthrough]];
    default:
        d.kind = DecodedRequest::Kind::Unknown;
        d.error = {-EINVAL, proto::kUnknownAction};
        return d;
    }
}

DecodedRequest decode_v1(const proto::Request &q, const Policy &defaults, const FdBatch *fds) {
    DecodedRequest d;
    d.request = q;
    d.parent = q.parent;
    d.child = q.child;
    d.policy = defaults;
    switch (q.action) {
    case proto::kPing:
        d.kind = DecodedRequest::Kind::Ping;
        break;
    case proto::kHello:
        d.kind = DecodedRequest::Kind::Hello;
        break;
    case proto::kRegister:
        d.kind = DecodedRequest::Kind::Register;
        break;
    case proto::kUnregister:
        d.kind = DecodedRequest::Kind::Unregister;
        break;
    case proto::kList:
        d.kind = DecodedRequest::Kind::List;
        break;
    case proto::kStatus:
        d.kind = DecodedRequest::Kind::Status;
        break;
    default:
        d.kind = DecodedRequest::Kind::Unknown;
        break;
    }
    constexpr uint32_t known_flags = proto::kFlagSignal | proto::kFlagGrace;
    bool scope_ok = q.action == proto::kRegister ? q.scope < proto::kScopeCount : q.scope == 0;
    if (!scope_ok || (q.flags & ~known_flags)) {
        d.error = {-EINVAL, proto::kBadPolicy};
        return d;
    }
    switch (d.kind) {
    case DecodedRequest::Kind::Register:
        if (q.flags & proto::kFlagSignal) {
            if (q.signal < 1 || q.signal >= NSIG) {
                d.error = {-EINVAL, proto::kBadPolicy};
                return d;
            }
            d.policy.signal = q.signal;
        }
        if (q.flags & proto::kFlagGrace)
            d.policy.grace_ms = q.grace_ms;
        d.policy.scope = static_cast<uint8_t>(q.scope);
        d.error = check_register(q.parent, q.child, fds);
        return d;
    case DecodedRequest::Kind::Unregister:
        d.error = check_unregister(q.parent, q.child);
        return d;
    case DecodedRequest::Kind::Unknown:
        d.error = {-EINVAL, proto::kUnknownAction};
        return d;
    default:
        return d;
    }
}

} // namespace

DecodedRequest decode_request(const unsigned char *msg, size_t size, const Policy &defaults,
                              const FdBatch *fds) {
    if (size == sizeof(proto::Record))
        return decode_legacy(proto::load<proto::Record>(msg), defaults, fds);
    return decode_v1(proto::load<proto::Request>(msg), defaults, fds);
}

} // namespace orphand
