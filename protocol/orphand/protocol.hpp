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

namespace orphand::proto {

// Actions. 1-3 are the original protocol; the rest are extensions.
enum Action : uint32_t {
    kRegister = 1,   // kill `child` when `parent` is no longer alive
    kUnregister = 2, // forget the binding (parent, child)
    kPing = 3,       // legacy: echo the record back; v1: a Reply
    kHello = 4,      // switch the connection to acknowledged mode (v1)
    kList = 5,       // v1 only: a Reply followed by `count` BindingInfo records
    kStatus = 6,     // v1 only: a Reply followed by one StatusInfo
};

// The legacy record: host byte order, no header, no length.
struct Record {
    uint32_t parent;
    uint32_t child;
    uint32_t action;
};
static_assert(sizeof(Record) == 12);
static_assert(offsetof(Record, parent) == 0 && offsetof(Record, child) == 4 &&
              offsetof(Record, action) == 8);

// HELLO is sent as a legacy Record {kHelloMagic, version, kHello}. The daemon answers with a
// Reply (error 0 and `count` = the version it speaks); from then on both sides exchange the
// fixed-size Request and Reply below. A daemon that does not know HELLO ignores it and sends
// nothing, so a client should wait for the reply with a timeout.
inline constexpr uint32_t kHelloMagic = 0x4850524f; // "ORPH" read as little-endian bytes
inline constexpr uint32_t kVersion = 1;

// Request flags (v1).
inline constexpr uint32_t kFlagSignal = 1u << 0; // `signal` holds the first signal to send
inline constexpr uint32_t kFlagGrace = 1u << 1;  // `grace_ms` holds the grace period

// Grace period value meaning "never escalate to SIGKILL".
inline constexpr uint32_t kGraceNever = 0xffffffffu;

// A request in acknowledged mode. The first 12 bytes have the layout of Record.
struct Request {
    uint32_t parent;
    uint32_t child;
    uint32_t action;
    uint32_t seq; // echoed in the reply
    uint32_t flags;
    int32_t signal;    // with kFlagSignal
    uint32_t grace_ms; // with kFlagGrace; kGraceNever disables escalation
    uint32_t reserved; // must be 0
};
static_assert(sizeof(Request) == 32);
static_assert(offsetof(Request, parent) == 0 && offsetof(Request, child) == 4 &&
              offsetof(Request, action) == 8 && offsetof(Request, seq) == 12 &&
              offsetof(Request, flags) == 16 && offsetof(Request, signal) == 20 &&
              offsetof(Request, grace_ms) == 24 && offsetof(Request, reserved) == 28);

// Why a request was refused (or, with error 0, a note on how it was accepted).
enum Reason : uint32_t {
    kOk = 0,
    kParentAlreadyDead = 1,    // accepted; the child was killed at once
    kAlreadyBound = 2,         // accepted; the binding existed already
    kUnknownAction = 3,        // EINVAL
    kBadPid = 4,               // EINVAL: pid 0, negative or out of range
    kSameProcess = 5,          // EINVAL: parent and child are one process
    kProtectedTarget = 6,      // EPERM: pid 1, orphand itself or a kernel thread
    kNoSuchProcess = 7,        // ESRCH: the child does not exist (or is already gone)
    kNotPermitted = 8,         // EPERM: the client may not signal that child
    kNotPidfd = 9,             // EBADF: an fd passed with the request is not a pidfd
    kPidfdMismatch = 10,       // EINVAL: a passed pidfd is not the pid named in the request
    kTooManyFds = 11,          // E2BIG: more than two fds passed
    kForeignPidNamespace = 12, // EXDEV: raw pids from a client in another pid namespace
    kLimitUser = 13,           // EDQUOT: bindings per uid exhausted
    kLimitParent = 14,         // EDQUOT: bindings per parent exhausted
    kLimitConnections = 15,    // EUSERS: too many connections
    kOutOfFds = 16,            // EMFILE/ENFILE: the daemon has no fd left for the pidfd
    kBadPolicy = 17,           // EINVAL: invalid signal or grace period, or reserved bits set
    kNotBound = 18,            // accepted (UNREGISTER): there was no such binding
    kInternal = 19,            // any other errno
    kNotAProcess = 20,         // EINVAL: a pid or pidfd names a thread, not a process
    kReasonCount
};

// The reply to a v1 request (and to HELLO).
struct Reply {
    uint32_t seq;    // the request's seq
    uint32_t action; // the request's action
    int32_t error;   // 0 or a negative errno
    uint32_t reason; // a Reason
    uint32_t count;  // HELLO: version; LIST: number of BindingInfo that follow; STATUS: 1
    uint32_t reserved[3];
};
static_assert(sizeof(Reply) == 32);
static_assert(offsetof(Reply, error) == 8 && offsetof(Reply, count) == 16);

inline constexpr size_t kCommLen = 16; // TASK_COMM_LEN

// One live binding, as listed by LIST.
struct BindingInfo {
    uint32_t parent_pid;
    uint32_t child_pid;
    uint32_t registrant_uid;
    uint32_t registrant_pid;
    int32_t signal;
    uint32_t grace_ms;
    uint64_t age_ms;
    char parent_comm[kCommLen]; // NUL-terminated
    char child_comm[kCommLen];  // NUL-terminated
};
static_assert(sizeof(BindingInfo) == 64);

// Kernel features in use, as reported by STATUS.
enum Feature : uint32_t {
    kFeaturePeerPidfd = 1u << 0,  // SO_PEERPIDFD (Linux 6.5)
    kFeaturePidfdInfo = 1u << 1,  // PIDFD_GET_INFO (Linux 6.13)
    kFeatureExitInfo = 1u << 2,   // PIDFD_INFO_EXIT (Linux 6.15)
    kFeaturePidfsInode = 1u << 3, // unique pidfs inode numbers (Linux 6.9)
    kFeatureDurable = 1u << 4,    // bindings survive restarts and crashes (the binding log)
    kFeatureJournal = 1u << 5,    // logging to the journal
};

struct StatusInfo {
    char version[16]; // NUL-terminated
    uint64_t uptime_ms;
    uint64_t kills;
    uint32_t parents;
    uint32_t children;
    uint32_t bindings;
    uint32_t connections;
    uint32_t features; // Feature bits
    uint32_t daemon_pid;
    uint32_t default_signal;
    uint32_t default_grace_ms;
    uint32_t scope; // kStatusAll, or kStatusOwn: the figures are the client's own
    uint32_t reserved[3];
};
static_assert(sizeof(StatusInfo) == 80);
static_assert(offsetof(StatusInfo, scope) == 64);

// StatusInfo::scope. An unprivileged client is told its own bindings, kills and connections,
// and no parent or child counts; root and CAP_KILL holders are told the daemon's.
inline constexpr uint32_t kStatusAll = 0;
inline constexpr uint32_t kStatusOwn = 1;

// The maximum number of fds a REGISTER may carry: the child's pidfd, then the parent's.
inline constexpr size_t kMaxFds = 2;

// Human-readable text for a Reason; never null.
constexpr const char *reason_text(uint32_t reason) {
    switch (reason) {
    case kOk:
        return "ok";
    case kParentAlreadyDead:
        return "parent already dead, child killed at once";
    case kAlreadyBound:
        return "already bound";
    case kUnknownAction:
        return "unknown action";
    case kBadPid:
        return "invalid pid";
    case kSameProcess:
        return "parent and child are the same process";
    case kProtectedTarget:
        return "protected target (pid 1, orphand or a kernel thread)";
    case kNoSuchProcess:
        return "no such process";
    case kNotPermitted:
        return "not permitted to signal that child";
    case kNotPidfd:
        return "passed fd is not a pidfd";
    case kPidfdMismatch:
        return "passed pidfd does not match the pid in the request";
    case kTooManyFds:
        return "too many fds passed";
    case kForeignPidNamespace:
        return "client in another pid namespace must pass pidfds";
    case kLimitUser:
        return "too many bindings for this user";
    case kLimitParent:
        return "too many bindings for this parent";
    case kLimitConnections:
        return "too many connections";
    case kOutOfFds:
        return "daemon out of file descriptors";
    case kBadPolicy:
        return "invalid signal, grace period or flags";
    case kNotBound:
        return "no such binding";
    case kInternal:
        return "internal error";
    case kNotAProcess:
        return "names a thread, not a process";
    default:
        return "unknown reason";
    }
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
