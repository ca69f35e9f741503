// SPDX-License-Identifier: MIT
// The orphand wire format: the 12-byte legacy record and the acknowledged-mode (v1) extension.
//
// This header is shared by the daemon, orphanctl and the LD_PRELOAD shim. It must stay free of
// dependencies, allocation and exceptions: the shim includes it inside other people's processes.
// See orphand-protocol(7) for the full description.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "orphand/orphand.h"
#include "orphand/reason_text.h"

// The numbers and layouts are defined once, in C, in orphand/orphand.h (liborphand's public
// header); this header gives them the names the C++ code uses.
namespace orphand::proto {

// Actions. 1-3 are the original protocol; the rest are extensions.
enum Action : uint32_t {
    kRegister = ORPHAND_ACTION_REGISTER,
    kUnregister = ORPHAND_ACTION_UNREGISTER,
    kPing = ORPHAND_ACTION_PING,
    kHello = ORPHAND_ACTION_HELLO,
    kList = ORPHAND_ACTION_LIST,
    kStatus = ORPHAND_ACTION_STATUS,
};

// The legacy record: host byte order, no header, no length.
using Record = ::orphand_record;

// HELLO is sent as a legacy Record {kHelloMagic, version, kHello}. The daemon answers with a
// Reply (error 0 and `count` = the version it speaks); from then on both sides exchange the
// fixed-size Request and Reply below. A daemon that does not know HELLO ignores it and sends
// nothing, so a client should wait for the reply with a timeout.
inline constexpr uint32_t kHelloMagic = ORPHAND_HELLO_MAGIC;
inline constexpr uint32_t kVersion = ORPHAND_PROTOCOL_VERSION;

// Request flags (v1).
inline constexpr uint32_t kFlagSignal = ORPHAND_FLAG_SIGNAL;
inline constexpr uint32_t kFlagGrace = ORPHAND_FLAG_GRACE;

// What a binding signals when its parent dies (Request::scope).
enum Scope : uint8_t {
    kScopeProcess = ORPHAND_SCOPE_PROCESS,
    kScopePgroup = ORPHAND_SCOPE_PGROUP,
    kScopeTree = ORPHAND_SCOPE_TREE,
    kScopeCgroup = ORPHAND_SCOPE_CGROUP,
};
inline constexpr uint32_t kScopeCount = ORPHAND_SCOPE_COUNT;
// The names orphanctl, the shim's ORPHAND_SCOPE, LIST output and the journal use.
constexpr const char *scope_name(uint32_t scope) {
    switch (scope) {
    case kScopeProcess:
        return "process";
    case kScopePgroup:
        return "pgroup";
    case kScopeTree:
        return "tree";
    case kScopeCgroup:
        return "cgroup";
    default:
        return "?";
    }
}
// The scope a name gives, or kScopeCount for an unknown name. No allocation: the shim uses it.
constexpr uint32_t scope_from_name(const char *name) {
    for (uint32_t s = 0; s < kScopeCount; ++s) {
        const char *a = scope_name(s), *b = name;
        while (*a && *a == *b)
            ++a, ++b;
        if (*a == '\0' && *b == '\0')
            return s;
    }
    return kScopeCount;
}
// The protocol version a connection speaks: the lower of the client's and ours.
inline constexpr uint32_t kVersionScopes = 2; // LIST gives BindingInfo2

// Grace period value meaning "never escalate to SIGKILL".
inline constexpr uint32_t kGraceNever = ORPHAND_GRACE_NEVER;

// A request in acknowledged mode. The first 12 bytes have the layout of Record.
using Request = ::orphand_request;

// Why a request was refused (or, with error 0, a note on how it was accepted).
enum Reason : uint32_t {
    kOk = ORPHAND_REASON_OK,
    kParentAlreadyDead = ORPHAND_REASON_PARENT_ALREADY_DEAD,
    kAlreadyBound = ORPHAND_REASON_ALREADY_BOUND,
    kUnknownAction = ORPHAND_REASON_UNKNOWN_ACTION,
    kBadPid = ORPHAND_REASON_BAD_PID,
    kSameProcess = ORPHAND_REASON_SAME_PROCESS,
    kProtectedTarget = ORPHAND_REASON_PROTECTED_TARGET,
    kNoSuchProcess = ORPHAND_REASON_NO_SUCH_PROCESS,
    kNotPermitted = ORPHAND_REASON_NOT_PERMITTED,
    kNotPidfd = ORPHAND_REASON_NOT_PIDFD,
    kPidfdMismatch = ORPHAND_REASON_PIDFD_MISMATCH,
    kTooManyFds = ORPHAND_REASON_TOO_MANY_FDS,
    kForeignPidNamespace = ORPHAND_REASON_FOREIGN_PID_NAMESPACE,
    kLimitUser = ORPHAND_REASON_LIMIT_USER,
    kLimitParent = ORPHAND_REASON_LIMIT_PARENT,
    kLimitConnections = ORPHAND_REASON_LIMIT_CONNECTIONS,
    kOutOfFds = ORPHAND_REASON_OUT_OF_FDS,
    kBadPolicy = ORPHAND_REASON_BAD_POLICY,
    kNotBound = ORPHAND_REASON_NOT_BOUND,
    kInternal = ORPHAND_REASON_INTERNAL,
    kNotAProcess = ORPHAND_REASON_NOT_A_PROCESS,
    kScopeRefused = ORPHAND_REASON_SCOPE_REFUSED,
    kScopeUnsupported = ORPHAND_REASON_SCOPE_UNSUPPORTED,
    kReasonCount
};

// The reply to a v1 request (and to HELLO).
using Reply = ::orphand_reply;

inline constexpr size_t kCommLen = ORPHAND_COMM_LEN;

// One live binding, as listed by LIST.
using BindingInfo = ::orphand_binding_info;
// On a version 2 connection: with the binding's scope.
using BindingInfo2 = ::orphand_binding_info2;

// Kernel features in use, as reported by STATUS.
enum Feature : uint32_t {
    kFeaturePeerPidfd = ORPHAND_FEATURE_PEER_PIDFD,
    kFeaturePidfdInfo = ORPHAND_FEATURE_PIDFD_INFO,
    kFeatureExitInfo = ORPHAND_FEATURE_EXIT_INFO,
    kFeaturePidfsInode = ORPHAND_FEATURE_PIDFS_INODE,
    kFeatureDurable = ORPHAND_FEATURE_DURABLE,
    kFeatureJournal = ORPHAND_FEATURE_JOURNAL,
    kFeaturePgroupSignal = ORPHAND_FEATURE_PGROUP_SIGNAL,
    kFeatureCgroup = ORPHAND_FEATURE_CGROUP,
};

using StatusInfo = ::orphand_status_info;

// StatusInfo::scope. An unprivileged client is told its own bindings, kills and connections,
// and no parent or child counts; root and CAP_KILL holders are told the daemon's.
inline constexpr uint32_t kStatusAll = ORPHAND_STATUS_SCOPE_ALL;
inline constexpr uint32_t kStatusOwn = ORPHAND_STATUS_SCOPE_OWN;

// The maximum number of fds a REGISTER may carry: the child's pidfd, then the parent's.
inline constexpr size_t kMaxFds = ORPHAND_MAX_FDS;

// Human-readable text for a Reason; never null.
constexpr const char *reason_text(uint32_t reason) {
    return orphand_reason_text_(reason);
}

inline constexpr size_t kMaxMessage = sizeof(Request);

// Splits a byte stream into fixed-size messages without allocating. Feed it whatever a read
// returned; it keeps at most one partial message between calls. The message size may change
// between messages (HELLO switches a connection from Record to Request): call set_size() from
// the callback, which runs only when no partial message is held.
class Framer {
  public:
    explicit constexpr Framer(size_t size = sizeof(Record)) : size_(size) {}

    // Calls `on_message(const unsigned char *msg, size_t size)` for every complete message in
    // [data, data + len), in order, completing one left over from a previous call. Returns the
    // number of messages delivered.
    template <typename F> size_t feed(const unsigned char *data, size_t len, F &&on_message) {
        size_t delivered = 0;
        feed_until(data, len, [&](const unsigned char *msg, size_t size) {
            ++delivered;
            on_message(msg, size);
            return true;
        });
        return delivered;
    }

    // As feed(), but `on_message` returns whether to go on: after a message for which it
    // returns false, the rest of the input is left alone. Returns the number of bytes of
    // [data, data + len) taken (kept as a partial message or delivered); the caller feeds the
    // others again later.
    template <typename F> size_t feed_until(const unsigned char *data, size_t len, F &&on_message) {
        // An empty read may come with a null pointer, which memcpy must never see.
        if (len == 0)
            return 0;
        size_t pos = 0;
        if (have_ > 0) {
            size_t take = size_ - have_ < len ? size_ - have_ : len;
            std::memcpy(partial_ + have_, data, take);
            have_ += take;
            pos = take;
            if (have_ < size_)
                return pos;
            have_ = 0;
            if (!on_message(static_cast<const unsigned char *>(partial_), size_))
                return pos;
        }
        while (len - pos >= size_) {
            const unsigned char *msg = data + pos;
            pos += size_;
            if (!on_message(msg, size_))
                return pos;
        }
        std::memcpy(partial_, data + pos, len - pos);
        have_ = len - pos;
        return len;
    }

    // Bytes of an incomplete message held back.
    size_t pending() const { return have_; }
    // Bytes still needed to complete the current message.
    size_t remaining() const { return size_ - have_; }
    size_t size() const { return size_; }
    // Only valid while no partial message is held (that is, from the feed() callback).
    void set_size(size_t size) { size_ = size <= kMaxMessage ? size : kMaxMessage; }

  private:
    size_t size_;
    size_t have_ = 0;
    unsigned char partial_[kMaxMessage]{};
};

// Copies a message out of the stream (records may be unaligned in a buffer).
template <typename T> inline T load(const unsigned char *bytes) {
    T value;
    std::memcpy(&value, bytes, sizeof(T));
    return value;
}

} // namespace orphand::proto
