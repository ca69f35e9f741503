// SPDX-License-Identifier: MIT
// BindingLog: every live binding and pending escalation as a record in a file mapped into
// orphand's memory, so that they survive a restart or a crash of orphand.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "log.hpp"
#include "registry.hpp"
#include "result.hpp"
#include "unique_fd.hpp"

namespace orphand {

// The file, `bindings` in the state directory (the service's RuntimeDirectory=), is a header
// and then fixed-size slots. Writing a record is a store into shared memory: no system call,
// and the page cache keeps it whatever happens to orphand (SIGKILL, a crash, the OOM killer).
// A record's state word is written last, with release ordering, and cleared to free it: a
// record torn by a crash mid-write is never taken as live. Slots are reused; the file is as large
// as the most records live at once, and is trimmed at start-up to its highest live record. A
// restore rewrites each record in its own slot, so a crash during it loses nothing either, and no
// second copy of the file is ever needed.
//
// A process is named by its pidfs inode number (Linux 6.9: unique for the boot) or, on older
// kernels, by its start time in clock ticks (/proc/PID/stat): a pid alone could name another
// process by the time the record is read. Identities cost an fstat each, so they are added when
// the loop is next idle (identify); until then, a restore takes the process its pid names only
// if it started no later than the registration (created_ns), which a process that took the pid
// since cannot have done unless every pid was cycled through within one clock tick. The header
// holds the boot id, so a file that outlived a reboot is not believed.
struct LogRecord {
    uint32_t state = 0;     // kFree, kBinding or kEscalation; written last
    uint32_t checksum = 0;  // over the rest of the record but the ids and `parent_comm`
    uint64_t parent_id = 0; // 0 until the parent is identified (see BindingLog::parent_named)
    uint64_t child_id = 0;
    uint64_t deadline_ns = 0; // escalations: CLOCK_MONOTONIC
    int32_t parent_pid = 0;
    int32_t child_pid = 0;
    int32_t signal = 0;
    uint32_t grace_ms = 0;
    uint32_t uid = 0;
    int32_t registrant_pid = 0;
    uint32_t flags = 0;        // kPrivileged
    uint32_t scope = 0;        // proto::Scope; 0 (process) in files of older versions
    char parent_comm[16] = {}; // for the log only; may be torn, so not checksummed
    uint64_t created_ns = 0;   // CLOCK_BOOTTIME at registration
    uint8_t reserved[8] = {};

    static constexpr uint32_t kFree = 0;
    static constexpr uint32_t kBinding = 0x444e4942;    // "BIND"
    static constexpr uint32_t kEscalation = 0x4c494b53; // "SKIL"
    static constexpr uint32_t kPrivileged = 1;
};
static_assert(sizeof(LogRecord) == 96);

// Counts from restoring the file at start-up.
struct RestoreCounts {
    uint32_t restored = 0;    // bindings enforced again
    uint32_t parent_dead = 0; // the parent died while orphand was down: child killed at once
    uint32_t escalations = 0; // pending SIGKILLs re-armed
    uint32_t gone = 0;        // the child exited meanwhile, or the record was a duplicate
    uint32_t invalid = 0;     // damaged records, or naming a process never signalled: dropped
    uint32_t kept = 0;        // not restored for want of fds: kept for the next start
};

class BindingLog final : public BindingStore {
  public:
    ~BindingLog() override;
    BindingLog(const BindingLog &) = delete;
    BindingLog &operator=(const BindingLog &) = delete;

    // Opens the state directory `dir` and restores the bindings of the file found there into
    // `registry` (parents that died meanwhile have their children killed), logging what it
    // did. Returns null, with a warning, when the directory cannot be used: orphand then runs
    // without durability.
    static std::unique_ptr<BindingLog> start(const std::string &dir, Registry &registry);

    void binding_added(Binding &b) override;
    void binding_removed(Binding &b) override;
    void parent_named(Process &p) override;
    void escalation_added(Escalation &e, uint64_t deadline_ns) override;
    void escalation_removed(Escalation &e) override;

    // Records whose processes are not identified yet: the loop calls identify() when it is
    // idle, or when kMaxUnidentified wait.
    bool has_unidentified() const { return !unidentified_.empty(); }
    size_t unidentified() const { return unidentified_.size(); }
    void identify();
    static constexpr size_t kMaxUnidentified = 1024;
    // Kills of a restore are described once this many wait (each holds a pidfd).
    static constexpr size_t kDescribeDuringRestore = 256;

    const std::string &path() const { return path_; }
    uint32_t live() const { return live_; }
    // Bindings enforced but not in the file (it could not grow: the file system is full).
    uint64_t unrecorded() const { return unrecorded_; }

    // The identity of a process as the log records it (see LogRecord); 0 if unknown.
    static uint64_t identity_of(const PidFd &p);

  private:
    BindingLog(UniqueFd dir, std::string path) : dir_(std::move(dir)), path_(std::move(path)) {}
    Result<void> map(UniqueFd fd);
    // Starts an empty log in the file.
    Result<void> init();
    // Re-creates the bindings of `records` (slot, record), each in its own slot again.
    RestoreCounts restore(const std::vector<std::pair<uint32_t, LogRecord>> &records,
                          Registry &registry);
    // After a restore: the free list, the live count, and the file trimmed to what is live.
    void settle();
    // A free slot, growing the file if needed; kNoSlot when it cannot grow.
    uint32_t allocate();
    LogRecord &slot(uint32_t i) { return base_[i + 1]; } // slot 0 is the header
    void commit(uint32_t i, LogRecord &r, uint32_t state);
    void release(uint32_t i);
    void not_recorded(const char *what, int err);

    UniqueFd dir_;
    std::string path_;
    UniqueFd file_;
    LogRecord *base_ = nullptr; // the whole reservation, mapped
    size_t reserved_bytes_ = 0;
    uint32_t capacity_ = 0;                // slots backed by the file
    uint32_t next_ = 0;                    // slots below this have been used
    std::vector<uint32_t> free_;           // the lowest slot last
    uint32_t hint_ = Escalation::kNoSlot;  // during a restore: the slot the next record takes
    const LogRecord *restoring_ = nullptr; // during a restore: the record being restored
    std::vector<const Binding *> owner_;   // by slot: the binding a record is of, if any
    std::vector<uint32_t> unidentified_;   // slots whose record lacks an identity
    uint32_t live_ = 0;
    uint64_t unrecorded_ = 0;
    LogLimiter warn_limiter_{5, 1};
};

} // namespace orphand
