// SPDX-License-Identifier: MIT
// Unit tests of request decoding: records and requests to typed requests or refusals.
#include <doctest/doctest.h>

#include <signal.h>

#include <cerrno>

#include "request.hpp"

using namespace orphand;
using Kind = DecodedRequest::Kind;

namespace {

DecodedRequest legacy(uint32_t parent, uint32_t child, uint32_t action,
                      const FdBatch *fds = nullptr) {
    proto::Record r{};
    r.parent = parent;
    r.child = child;
    r.action = action;
    return decode_request(reinterpret_cast<const unsigned char *>(&r), sizeof(r), Policy{}, fds);
}

proto::Request request(uint32_t parent, uint32_t child, uint32_t action) {
    proto::Request q{};
    q.parent = parent;
    q.child = child;
    q.action = action;
    q.seq = 7;
    return q;
}

DecodedRequest v1(const proto::Request &q, const FdBatch *fds = nullptr) {
    Policy defaults;
    defaults.signal = SIGHUP;
    defaults.grace_ms = 1234;
    return decode_request(reinterpret_cast<const unsigned char *>(&q), sizeof(q), defaults, fds);
}

void refused(const DecodedRequest &d, int error, uint32_t reason) {
    CHECK(d.error.error == error);
    CHECK(d.error.reason == reason);
}

} // namespace

TEST_CASE("legacy records") {
    auto ping = legacy(1, 2, proto::kPing);
    CHECK(ping.legacy);
    CHECK(ping.kind == Kind::Ping);
    CHECK(ping.record.parent == 1);

    auto reg = legacy(10, 11, proto::kRegister);
    CHECK(reg.kind == Kind::Register);
    CHECK(reg.error.error == 0);
    CHECK(reg.parent == 10);
    CHECK(reg.child == 11);
    CHECK(reg.policy.signal == Policy{}.signal);

    refused(legacy(10, 10, proto::kRegister), -EINVAL, proto::kSameProcess);
    refused(legacy(0, 11, proto::kRegister), -EINVAL, proto::kBadPid);
    refused(legacy(10, 0x80000000u, proto::kRegister), -EINVAL, proto::kBadPid);
    refused(legacy(0, 11, proto::kUnregister), -EINVAL, proto::kBadPid);
    refused(legacy(10, 11, 99), -EINVAL, proto::kUnknownAction);

    FdBatch too_many;
    too_many.too_many = true;
    // Too many fds is the first refusal, before the pids are looked at.
    refused(legacy(0, 0, proto::kRegister, &too_many), -E2BIG, proto::kTooManyFds);
}

TEST_CASE("legacy HELLO") {
    auto hello = legacy(proto::kHelloMagic, 1, proto::kHello);
    CHECK(hello.kind == Kind::Hello);
    CHECK(hello.version == 1);
    CHECK(legacy(proto::kHelloMagic, 1000, proto::kHello).version == proto::kVersion);
    // Without the magic, or asking for version 0, it is no HELLO.
    refused(legacy(1, 1, proto::kHello), -EINVAL, proto::kUnknownAction);
    refused(legacy(proto::kHelloMagic, 0, proto::kHello), -EINVAL, proto::kUnknownAction);
}

TEST_CASE("v1 requests and their policy") {
    auto reg = v1(request(10, 11, proto::kRegister));
    CHECK_FALSE(reg.legacy);
    CHECK(reg.kind == Kind::Register);
    CHECK(reg.request.seq == 7);
    CHECK(reg.policy.signal == SIGHUP);
    CHECK(reg.policy.grace_ms == 1234);

    auto q = request(10, 11, proto::kRegister);
    q.flags = proto::kFlagSignal | proto::kFlagGrace;
    q.signal = SIGUSR1;
    q.grace_ms = proto::kGraceNever;
    q.scope = proto::kScopeTree;
    auto custom = v1(q);
    CHECK(custom.error.error == 0);
    CHECK(custom.policy.signal == SIGUSR1);
    CHECK(custom.policy.grace_ms == proto::kGraceNever);
    CHECK(custom.policy.scope == proto::kScopeTree);

    q.signal = NSIG;
    refused(v1(q), -EINVAL, proto::kBadPolicy);
    q.signal = 0;
    refused(v1(q), -EINVAL, proto::kBadPolicy);
    q = request(10, 11, proto::kRegister);
    q.scope = proto::kScopeCount;
    refused(v1(q), -EINVAL, proto::kBadPolicy);
    q = request(10, 11, proto::kRegister);
    q.flags = 0x80;
    refused(v1(q), -EINVAL, proto::kBadPolicy);
    // A scope is for REGISTER only; a bad policy comes before an unknown action.
    q = request(0, 0, proto::kList);
    q.scope = proto::kScopeTree;
    refused(v1(q), -EINVAL, proto::kBadPolicy);
    q = request(0, 0, 99);
    q.flags = 0x80;
    refused(v1(q), -EINVAL, proto::kBadPolicy);
    // A policy is checked before the pids.
    q = request(0, 0, proto::kRegister);
    q.flags = proto::kFlagSignal;
    refused(v1(q), -EINVAL, proto::kBadPolicy);
}

TEST_CASE("v1 actions") {
    CHECK(v1(request(0, 0, proto::kPing)).kind == Kind::Ping);
    CHECK(v1(request(0, 0, proto::kHello)).kind == Kind::Hello);
    CHECK(v1(request(0, 0, proto::kList)).kind == Kind::List);
    CHECK(v1(request(0, 0, proto::kStatus)).kind == Kind::Status);
    CHECK(v1(request(0, 0, proto::kList)).error.error == 0);
    CHECK(v1(request(3, 4, proto::kUnregister)).kind == Kind::Unregister);
    refused(v1(request(0, 4, proto::kUnregister)), -EINVAL, proto::kBadPid);
    refused(v1(request(5, 5, proto::kRegister)), -EINVAL, proto::kSameProcess);
    refused(v1(request(0, 0, 42)), -EINVAL, proto::kUnknownAction);
    FdBatch too_many;
    too_many.too_many = true;
    refused(v1(request(5, 6, proto::kRegister), &too_many), -E2BIG, proto::kTooManyFds);
}
