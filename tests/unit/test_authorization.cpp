// SPDX-License-Identifier: MIT
// Unit tests of authorization: who may bind, signal and see what, from a table of cases.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>

#include "authorization.hpp"

using namespace orphand;

namespace {

constexpr pid_t kSelf = 4000; // orphand's own pid in these cases
constexpr uid_t kUser = 1000;
constexpr uid_t kOther = 1001;
constexpr uid_t kNobody = 65534;

Registrant unprivileged(uid_t uid) {
    return Registrant{uid, 5000, false};
}
Registrant privileged(uid_t uid) {
    return Registrant{uid, 5000, true};
}

BindTarget process(pid_t pid, uid_t ruid, uid_t euid, uid_t suid) {
    BindTarget t;
    t.pid = pid;
    t.creds_known = true;
    t.creds = {ruid, euid, suid};
    return t;
}
BindTarget gone(pid_t pid) {
    BindTarget t;
    t.pid = pid;
    return t;
}
BindTarget kernel_thread(pid_t pid) {
    BindTarget t = process(pid, 0, 0, 0);
    t.kernel_thread = true;
    return t;
}

struct Case {
    const char *name;
    Registrant who;
    BindTarget child;
    int error;
    uint32_t reason;
};

} // namespace

TEST_CASE("authorize_bind: who may bind which child") {
    const Case cases[] = {
        {"own child (real uid)", unprivileged(kUser), process(100, kUser, kUser, kUser), 0,
         proto::kOk},
        {"own child (saved uid only)", unprivileged(kUser), process(100, 0, 0, kUser), 0,
         proto::kOk},
        {"effective uid alone is not kill(2)'s rule", unprivileged(kUser),
         process(100, 0, kUser, 0), -EPERM, proto::kNotPermitted},
        {"another user's child", unprivileged(kUser), process(100, kOther, kOther, kOther), -EPERM,
         proto::kNotPermitted},
        {"root's child, unprivileged client", unprivileged(kUser), process(100, 0, 0, 0), -EPERM,
         proto::kNotPermitted},
        {"nobody binds its own", unprivileged(kNobody), process(100, kNobody, kNobody, kNobody), 0,
         proto::kOk},
        {"CAP_KILL binds another user's child", privileged(kUser),
         process(100, kOther, kOther, kOther), 0, proto::kOk},
        {"root binds another user's child", privileged(0), process(100, kOther, kOther, kOther), 0,
         proto::kOk},
        {"privileged client binds its own child", privileged(kUser),
         process(100, kUser, kUser, kUser), 0, proto::kOk},
        {"init, even for root", privileged(0), process(1, 0, 0, 0), -EPERM,
         proto::kProtectedTarget},
        {"kthreadd, even for root", privileged(0), process(2, 0, 0, 0), -EPERM,
         proto::kProtectedTarget},
        {"orphand itself, even for root", privileged(0), process(kSelf, 0, 0, 0), -EPERM,
         proto::kProtectedTarget},
        {"orphand itself, for its own user", unprivileged(kUser),
         process(kSelf, kUser, kUser, kUser), -EPERM, proto::kProtectedTarget},
        {"a kernel thread, even for root", privileged(0), kernel_thread(300), -EPERM,
         proto::kProtectedTarget},
        {"protected before gone", unprivileged(kUser), gone(1), -EPERM, proto::kProtectedTarget},
        {"gone: credentials unknown", unprivileged(kUser), gone(100), -ESRCH,
         proto::kNoSuchProcess},
        {"gone, even for root", privileged(0), gone(100), -ESRCH, proto::kNoSuchProcess},
        {"gone before not permitted", unprivileged(kOther), gone(100), -ESRCH,
         proto::kNoSuchProcess},
    };
    for (const Case &c : cases) {
        CAPTURE(c.name);
        Verdict v = authorize_bind(c.who, c.child, kSelf);
        CHECK(v.error == c.error);
        CHECK(v.reason == c.reason);
    }
}

TEST_CASE("may_signal: kill(2)'s rule, or privilege") {
    CHECK(may_signal(unprivileged(kUser), {kUser, kOther, kOther}));
    CHECK(may_signal(unprivileged(kUser), {kOther, kOther, kUser}));
    CHECK_FALSE(may_signal(unprivileged(kUser), {kOther, kUser, kOther}));
    CHECK_FALSE(may_signal(unprivileged(kUser), {0, 0, 0}));
    CHECK(may_signal(privileged(kUser), {0, 0, 0}));
    CHECK(may_signal(privileged(0), {kOther, kOther, kOther}));
}

TEST_CASE("is_protected") {
    CHECK(is_protected(1, kSelf, false));
    CHECK(is_protected(2, kSelf, false));
    CHECK(is_protected(kSelf, kSelf, false));
    CHECK(is_protected(300, kSelf, true));
    CHECK_FALSE(is_protected(3, kSelf, false));
    CHECK_FALSE(is_protected(kSelf + 1, kSelf, false));
}

TEST_CASE("may_see: own bindings, or all when privileged") {
    CHECK(may_see(unprivileged(kUser), kUser));
    CHECK_FALSE(may_see(unprivileged(kUser), kOther));
    CHECK_FALSE(may_see(unprivileged(kUser), 0));
    CHECK(may_see(privileged(kUser), kOther));
    CHECK(may_see(privileged(0), kUser));
}
