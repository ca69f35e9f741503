// SPDX-License-Identifier: MIT
// The binding log: bindings and pending escalations in a memory-mapped file, restored at start.
#include "binding_log.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "event_loop.hpp"

namespace orphand {
namespace {

constexpr char kFileName[] = "bindings";
constexpr char kMagic[8] = {'O', 'R', 'P', 'H', 'B', 'L', 'O', 'G'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kIdPidfsInode = 1; // LogRecord ids are pidfs inode numbers
constexpr uint32_t kIdStartTime = 2;  // ... or start times (kernels before 6.9)
// The address space reserved for the mapping: 11 million records. Only what the file backs is
// ever touched; the file grows in steps, doubling up to kMaxGrowth.
constexpr size_t kReserve = size_t{1} << 30;
constexpr size_t kMinGrowth = 64 * 1024;
constexpr size_t kMaxGrowth = 8 * 1024 * 1024;

// The header, in slot 0.
struct Header {
    char magic[8];
    uint32_t version;
    uint32_t record_size;
    uint32_t id_kind;
    uint32_t reserved0;
    char boot_id[40]; // /proc/sys/kernel/random/boot_id
    uint8_t reserved[32];
};
static_assert(sizeof(Header) == sizeof(LogRecord));

uint32_t id_kind() {
    return kernel_features().pidfs ? kIdPidfsInode : kIdStartTime;
}

const std::string &boot_id() {
    static const std::string id = [] {
        char buf[64] = {};
        UniqueFd fd(::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC));
        ssize_t n = fd ? ::read(fd.get(), buf, sizeof(buf) - 1) : -1;
        std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
        while (!s.empty() && s.back() == '\n')
            s.pop_back();
        return s;
    }();
    return id;
}

// FNV-1a over the record but the fields written after it is live: the state word, the checksum,
// the identities and the parent's name.
uint32_t checksum(const LogRecord &r) {
    const auto *bytes = reinterpret_cast<const unsigned char *>(&r);
    uint32_t h = 2166136261u;
    for (size_t i = offsetof(LogRecord, deadline_ns); i < sizeof(LogRecord); ++i) {
        if (i >= offsetof(LogRecord, parent_comm) &&
            i < offsetof(LogRecord, parent_comm) + sizeof(r.parent_comm))
            continue;
        h = (h ^ bytes[i]) * 16777619u;
    }
    return h;
}

std::atomic_ref<uint32_t> state_of(LogRecord &r) {
    return std::atomic_ref<uint32_t>(r.state);
}

// A name read from the file: printable, terminated.
std::string comm_of(const LogRecord &r) {
    std::string s;
    for (char c : r.parent_comm) {
        if (c == '\0')
            break;
        s += c;
    }
    return s;
}

uint64_t boottime_ns() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_BOOTTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// The process `pid` names now, if it is the one recorded as `id`. A record without an identity
// (0; see BindingLog::identify) takes the process only if it started no later than
// `created_ns`, the registration: a process that took the pid since started after it (to the
// clock tick of /proc/PID/stat).
Result<PidFd> open_identified(pid_t pid, uint64_t id, uint64_t created_ns = 0) {
    if (pid <= 0 || (id == 0 && created_ns == 0))
        return Error{-EINVAL, "record"};
    auto p = PidFd::open(pid);
    if (!p)
        return p.error();
    if (id != 0) {
        if (BindingLog::identity_of(*p) != id)
            return Error{-ESRCH, "pid reused"};
        return p;
    }
    static const long ticks = ::sysconf(_SC_CLK_TCK);
    uint64_t started = p->start_time();
    if (started == 0 || ticks <= 0 ||
        started > created_ns / (1000000000u / static_cast<uint64_t>(ticks)))
        return Error{-ESRCH, "pid reused"};
    return p;
}

// The identity of a process the restore opened for a record: the recorded one, which
// open_identified checked, if there is one.
uint64_t restored_identity(const PidFd &p, uint64_t recorded) {
    return recorded ? recorded : BindingLog::identity_of(p);
}

} // namespace

uint64_t BindingLog::identity_of(const PidFd &p) {
    if (kernel_features().pidfs)
        return p.inode();
    // FIXME: drop once Linux 6.9 is the minimum (a /proc read per new process).
    return p.start_time();
}

BindingLog::~BindingLog() {
    // The file stays: the next start restores it. The service manager removes the directory
    // when the service is stopped rather than restarted (RuntimeDirectoryPreserve=restart).
    if (base_)
        ::munmap(base_, reserved_bytes_);
}

Result<void> BindingLog::map(UniqueFd fd) {
    void *base = ::mmap(nullptr, kReserve, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED)
        return Error{-errno, "mmap"};
    file_ = std::move(fd);
    base_ = static_cast<LogRecord *>(base);
    reserved_bytes_ = kReserve;
    return {};
}

Result<void> BindingLog::init() {
    if (::ftruncate(file_.get(), 0) < 0)
        return Error{-errno, "ftruncate"};
    // The header's slot is backed by the first growth.
    if (int r = ::posix_fallocate(file_.get(), 0, kMinGrowth); r != 0)
        return Error{-r, "fallocate"};
    capacity_ = static_cast<uint32_t>(kMinGrowth / sizeof(LogRecord)) - 1;
    Header h{};
    std::memcpy(h.magic, kMagic, sizeof(h.magic));
    h.version = kVersion;
    h.record_size = sizeof(LogRecord);
    h.id_kind = id_kind();
    std::snprintf(h.boot_id, sizeof(h.boot_id), "%s", boot_id().c_str());
    std::memcpy(static_cast<void *>(base_), &h, sizeof(h));
    return {};
}

std::unique_ptr<BindingLog> BindingLog::start(const std::string &dir, Registry &registry) {
    auto unusable = [&](std::string_view what, int err) {
        log_fmt(LOG_WARNING,
                "cannot use the state directory {}: {}: {}; bindings will not survive a restart "
                "or a crash of orphand",
                quoted(dir), what, std::strerror(err));
        return nullptr;
    };
    UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd)
        return unusable("open", errno);
    std::unique_ptr<BindingLog> log(new BindingLog(std::move(dfd), dir + "/" + kFileName));
    UniqueFd fd(::openat(log->dir_.get(), kFileName,
                         O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
    if (!fd)
        return unusable(kFileName, errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0)
        return unusable("fstat", errno);
    if (!S_ISREG(st.st_mode))
        return unusable(fmt::format("{} is not a regular file", kFileName), EINVAL);
    // Records say whose authority a kill has: only a file that no one else could have written
    // is believed.
    if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0)
        return unusable(fmt::format("{} belongs to uid {} with mode {:o}, not to orphand alone",
                                    kFileName, st.st_uid, st.st_mode & 07777),
                        EPERM);
    // One orphand per state directory: a second one's records would overwrite the first's.
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0)
        return unusable(errno == EWOULDBLOCK ? "another orphand is using it" : "flock", errno);
    Header h{};
    bool have = st.st_size >= static_cast<off_t>(2 * sizeof(LogRecord)) &&
                ::pread(fd.get(), &h, sizeof(h), 0) == static_cast<ssize_t>(sizeof(h));
    bool valid = false;
    if (st.st_size == 0) {
        // A first start.
    } else if (!have || std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) {
        log_fmt(LOG_WARNING, "{} is not a binding log of orphand: replaced", quoted(log->path_));
    } else if (h.version != kVersion || h.record_size != sizeof(LogRecord) ||
               h.id_kind != id_kind()) {
        log_fmt(LOG_WARNING,
                "{} was written by another version of orphand (format {}, records of {} bytes): "
                "its bindings are not restored",
                quoted(log->path_), h.version, h.record_size);
    } else if (std::string(h.boot_id, strnlen(h.boot_id, sizeof(h.boot_id))) != boot_id()) {
        log_fmt(LOG_WARNING, "{} is from an earlier boot: replaced", quoted(log->path_));
    } else {
        valid = true;
    }
    if (auto r = log->map(std::move(fd)); !r)
        return unusable(r.error().what, -r.code());
    if (!valid) {
        if (auto r = log->init(); !r)
            return unusable(r.error().what, -r.code());
        registry.set_store(log.get());
        return log;
    }

    // Restored in place: each binding gets its own slot back, so that a crash during the restore
    // leaves every record either as it was or rewritten the same.
    size_t bytes = std::min(static_cast<size_t>(st.st_size), kReserve);
    if (static_cast<size_t>(st.st_size) > kReserve)
        log_fmt(LOG_WARNING,
                "{} is larger than orphand ever makes it: records past {} MiB are ignored",
                quoted(log->path_), kReserve >> 20);
    log->capacity_ = static_cast<uint32_t>(bytes / sizeof(LogRecord)) - 1;
    std::vector<std::pair<uint32_t, LogRecord>> records;
    uint32_t damaged = 0;
    for (uint32_t i = 0; i < log->capacity_; ++i) {
        LogRecord r = log->slot(i);
        if (r.state == LogRecord::kFree)
            continue;
        if ((r.state == LogRecord::kBinding || r.state == LogRecord::kEscalation) &&
            r.checksum == checksum(r)) {
            records.emplace_back(i, r);
        } else {
            ++damaged;
            state_of(log->slot(i)).store(LogRecord::kFree, std::memory_order_release);
        }
    }
    registry.set_store(log.get());
    RestoreCounts counts = log->restore(records, registry);
    counts.invalid += damaged;
    log->settle();
    log_fmt(LOG_INFO,
            "restored {} bindings from {} ({} parents died while orphand was not running, their "
            "children killed; {} escalations re-armed; {} ended meanwhile; {} damaged records "
            "dropped)",
            counts.restored, quoted(log->path_), counts.parent_dead, counts.escalations,
            counts.gone, counts.invalid);
    if (counts.kept)
        log_fmt(LOG_WARNING,
                "{} records of {} could not be restored for want of file descriptors (raise "
                "LimitNOFILE=); they are kept for the next start but not enforced now",
                counts.kept, quoted(log->path_));
    return log;
}

void BindingLog::settle() {
    // The free slots, the lowest on top; the file shrinks to the highest live one (in steps).
    uint32_t top = 0;
    for (uint32_t i = 0; i < capacity_; ++i)
        if (slot(i).state != LogRecord::kFree)
            top = i + 1;
    size_t bytes = (size_t{top} + 1) * sizeof(LogRecord);
    size_t keep = std::max(kMinGrowth, (bytes + kMinGrowth - 1) / kMinGrowth * kMinGrowth);
    if (keep < (size_t{capacity_} + 1) * sizeof(LogRecord) &&
        ::ftruncate(file_.get(), static_cast<off_t>(keep)) == 0)
        capacity_ = static_cast<uint32_t>(keep / sizeof(LogRecord)) - 1;
    next_ = top;
    live_ = 0;
    free_.clear();
    for (uint32_t i = top; i-- > 0;) {
        if (slot(i).state == LogRecord::kFree)
            free_.push_back(i);
        else
            ++live_;
    }
}

RestoreCounts BindingLog::restore(const std::vector<std::pair<uint32_t, LogRecord>> &records,
                                  Registry &registry) {
    RestoreCounts counts;
    static const pid_t self = ::getpid();
    // What cannot be done for want of fds (EMFILE, ENFILE, ENOMEM) is neither enforced nor
    // given up: the record stays for the next start.
    auto short_of_fds = [](int err) { return err == -EMFILE || err == -ENFILE || err == -ENOMEM; };
    for (const auto &[i, r] : records) {
        hint_ = i;
        restoring_ = &r;
        bool keep = false;
        Registrant who{r.uid, r.registrant_pid, (r.flags & LogRecord::kPrivileged) != 0};
        auto child = open_identified(r.child_pid, r.child_id, r.created_ns);
        if (!child) {
            keep = short_of_fds(child.code());
            ++(keep ? counts.kept : counts.gone); // else exited while orphand was down
        } else if (r.child_pid == 1 || r.child_pid == self || is_kernel_thread(r.child_pid)) {
            ++counts.invalid; // never a target, whatever a record says
        } else if (r.state == LogRecord::kEscalation) {
            registry.restore_escalation(std::move(*child), r.deadline_ns, who);
            ++counts.escalations;
        } else {
            // A parent that is gone, or whose pid now names another process, died meanwhile:
            // an empty handle with its pid. Processes are identified when the loop is next idle
            // after the registration; for a record without their identity (a crash before
            // that), the start time decides.
            auto parent = open_identified(r.parent_pid, r.parent_id, r.created_ns);
            if (!parent && short_of_fds(parent.code())) {
                keep = true;
                ++counts.kept;
            } else {
                PidFd parent_fd = parent ? std::move(*parent) : PidFd(r.parent_pid, UniqueFd());
                Policy policy{r.signal, r.grace_ms,
                              static_cast<uint8_t>(r.scope < proto::kScopeCount ? r.scope : 0)};
                std::string comm = comm_of(r);
                Verdict v = registry.add(std::move(parent_fd), std::move(*child), policy, who,
                                         comm.c_str());
                if (v.reason == proto::kOk)
                    ++counts.restored;
                else if (v.reason == proto::kParentAlreadyDead)
                    ++counts.parent_dead;
                else if ((keep = v.reason == proto::kOutOfFds))
                    ++counts.kept;
                else
                    ++counts.gone;
            }
        }
        // Its slot was not taken again: nothing of it is left to enforce.
        if (hint_ != Escalation::kNoSlot && !keep)
            state_of(slot(i)).store(LogRecord::kFree, std::memory_order_release);
        hint_ = Escalation::kNoSlot;
        restoring_ = nullptr;
        // Each kill keeps a pidfd until it is described: many parents that died meanwhile
        // must not use up the fds the rest of the restore needs.
        if (registry.descriptions() >= kDescribeDuringRestore)
            registry.describe(kDescribeDuringRestore);
    }
    return counts;
}

uint32_t BindingLog::allocate() {
    if (hint_ != Escalation::kNoSlot)
        return std::exchange(hint_, Escalation::kNoSlot);
    if (!free_.empty()) {
        uint32_t i = free_.back();
        free_.pop_back();
        return i;
    }
    if (next_ < capacity_)
        return next_++;
    size_t bytes = (size_t{capacity_} + 1) * sizeof(LogRecord);
    size_t grow = std::min(std::max(bytes, kMinGrowth), kMaxGrowth);
    size_t want = std::min(bytes + grow, reserved_bytes_);
    // posix_fallocate gives the pages now: a later store into them cannot fault for want of
    // space (a full tmpfs would otherwise deliver SIGBUS).
    if (want <= bytes)
        return Escalation::kNoSlot;
    if (int r = ::posix_fallocate(file_.get(), 0, static_cast<off_t>(want)); r != 0) {
        not_recorded("the file cannot grow", r);
        return Escalation::kNoSlot;
    }
    capacity_ = static_cast<uint32_t>(want / sizeof(LogRecord)) - 1;
    return next_++;
}

void BindingLog::commit(uint32_t i, LogRecord &r, uint32_t state) {
    r.checksum = checksum(r);
    LogRecord &dst = slot(i);
    // All but the state word: a restore rewrites a live record in place, which must never look
    // free, even for a moment.
    std::memcpy(reinterpret_cast<char *>(&dst) + sizeof(r.state),
                reinterpret_cast<const char *>(&r) + sizeof(r.state), sizeof(r) - sizeof(r.state));
    // The record is whole before its state says it is live.
    state_of(dst).store(state, std::memory_order_release);
    ++live_;
}

void BindingLog::release(uint32_t i) {
    state_of(slot(i)).store(LogRecord::kFree, std::memory_order_release);
    free_.push_back(i);
    --live_;
}

void BindingLog::not_recorded(const char *what, int err) {
    ++unrecorded_;
    if (warn_limiter_.allow())
        log_fmt(LOG_WARNING,
                "a binding will not survive a restart or a crash of orphand: {} ({}: {}); {} so "
                "far",
                what, quoted(path_), std::strerror(err), unrecorded_);
}

void BindingLog::binding_added(Binding &b) {
    uint32_t i = allocate();
    if (i == Escalation::kNoSlot)
        return;
    Process &parent = *b.parent, &child = *b.child;
    // The record is durable at once; identities, an fstat each, are added when the loop is idle
    // (identify), like the parent's name. A restore completes them as it goes.
    if (restoring_) {
        if (!child.identity)
            child.identity = restored_identity(child.pidfd, restoring_->child_id);
        if (!parent.identity)
            parent.identity = restored_identity(parent.pidfd, restoring_->parent_id);
    }
    LogRecord r;
    r.parent_id = parent.identity;
    r.child_id = child.identity;
    r.parent_pid = parent.pid();
    r.child_pid = child.pid();
    r.signal = b.policy.signal;
    r.grace_ms = b.policy.grace_ms;
    r.scope = b.policy.scope;
    r.uid = b.registrant.uid;
    r.registrant_pid = b.registrant.pid;
    r.flags = b.registrant.privileged ? LogRecord::kPrivileged : 0;
    r.created_ns = boottime_ns();
    std::memcpy(r.parent_comm, parent.comm.data(), sizeof(r.parent_comm));
    commit(i, r, LogRecord::kBinding);
    b.slot = i;
    if (owner_.size() <= i)
        owner_.resize(size_t{i} + 1);
    owner_[i] = &b;
    if (!r.parent_id || !r.child_id)
        unidentified_.push_back(i);
}

void BindingLog::binding_removed(Binding &b) {
    if (b.slot == Escalation::kNoSlot)
        return;
    owner_[b.slot] = nullptr;
    release(b.slot);
    b.slot = Escalation::kNoSlot;
}

void BindingLog::parent_named(Process &p) {
    // Outside the checksum: a crash mid-copy tears a name, never a binding.
    for (const Binding *b = p.children; b; b = b->next_child)
        if (b->slot != Escalation::kNoSlot)
            std::memcpy(slot(b->slot).parent_comm, p.comm.data(), sizeof(LogRecord::parent_comm));
}

void BindingLog::identify() {
    for (uint32_t i : unidentified_) {
        const Binding *b = owner_[i];
        if (!b)
            continue; // ended meanwhile
        for (Process *p : {b->parent, b->child})
            if (!p->identity)
                p->identity = identity_of(p->pidfd);
        // Outside the checksum, each one aligned 8-byte store: never torn.
        LogRecord &r = slot(i);
        std::atomic_ref<uint64_t>(r.parent_id)
            .store(b->parent->identity, std::memory_order_relaxed);
        std::atomic_ref<uint64_t>(r.child_id).store(b->child->identity, std::memory_order_relaxed);
    }
    unidentified_.clear();
}

void BindingLog::escalation_added(Escalation &e, uint64_t deadline_ns) {
    uint32_t i = allocate();
    if (i == Escalation::kNoSlot)
        return;
    Process &child = *e.process;
    if (!child.identity)
        child.identity = restoring_ ? restored_identity(child.pidfd, restoring_->child_id)
                                    : identity_of(child.pidfd);
    LogRecord r;
    r.child_id = child.identity;
    r.child_pid = child.pid();
    r.deadline_ns = deadline_ns;
    r.signal = 9;
    r.uid = e.registrant.uid;
    r.registrant_pid = e.registrant.pid;
    r.flags = e.registrant.privileged ? LogRecord::kPrivileged : 0;
    commit(i, r, LogRecord::kEscalation);
    e.slot = i;
}

void BindingLog::escalation_removed(Escalation &e) {
    if (e.slot == Escalation::kNoSlot)
        return;
    release(e.slot);
    e.slot = Escalation::kNoSlot;
}

} // namespace orphand
