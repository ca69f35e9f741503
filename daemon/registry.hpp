// SPDX-License-Identifier: MIT
// Registry: the watched processes, the bindings between them, and the kills they cause,
// reported as events (KillEvent) to a KillObserver.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "event_loop.hpp"
#include "orphand/protocol.hpp"
#include "pidfd.hpp"
#include "process_table.hpp"
#include "scope.hpp"
#include "scope_worker.hpp"

namespace orphand {

struct Binding;

// What to do to a child when its parent dies.
struct Policy {
    int signal = 15;                      // first signal
    uint32_t grace_ms = 5000;             // then SIGKILL after this long; proto::kGraceNever: never
    uint8_t scope = proto::kScopeProcess; // what the signal reaches (proto::Scope)
};
static_assert(sizeof(Policy) == 12);

// Who asked for a binding, as the kernel reported it for the connection.
struct Registrant {
    uid_t uid = 0;
    pid_t pid = 0;
    bool privileged = false; // root or CAP_KILL in our user namespace
};

struct Process;

// A SIGKILL due when a killed child outlives its grace period. A child killed for several
// bindings has one for each: every binding's policy is carried out.
struct Escalation {
    Process *process = nullptr;
    Registrant registrant;   // whose binding it serves: checked again before the SIGKILL
    uint32_t slot = kNoSlot; // its record in the binding log (see BindingStore)
    bool from_scope = false; // of a process a scope reached: counted in the registrant's quota
    static constexpr uint32_t kNoSlot = ~0u;
};

// A watched process: a parent of some bindings, a child of others, or a child being killed.
// Kept small (one per watched process, up to the fd limit): fields are ordered to pack.
struct Process : Source {
    explicit Process(PidFd p) : Source(Kind::Process), pidfd(std::move(p)) {}
    pid_t pid() const { return pidfd.pid(); }

    bool escalating = false;        // a SIGKILL escalation is pending (see Registry::escalations_)
    bool destroyed = false;         // awaiting deletion at the end of the loop iteration
    bool name_queued = false;       // a parent whose name is to be read (Registry::name_parents)
    bool child_name_queued = false; // a child whose name is to be read (name_children)
    bool was_parent = false;        // has been a parent: lingers once its bindings are gone
    bool lingering = false;         // a parent without bindings, kept watched for a while
    bool signalled = false;         // its death has been acted on: its children are signalled
    bool unwatched = false;         // only a child: not in the loop (Registry::sweep_all)
    bool exit_seen = false;         // found exited by a sweep; its exit is not handled yet
    uint32_t n_children = 0;        // here, beside the flags: a Process stays 64 bytes
    PidFd pidfd;
    uint64_t identity = 0; // the binding log's name for it (see BindingStore); 0: not yet
    std::array<char, proto::kCommLen> comm{}; // read when it becomes a parent, or killed
    Binding *children = nullptr;              // bindings in which this process is the parent
    Binding *parents = nullptr;               // bindings in which this process is the child
};
// A binding's child is a Process of its own: its size is in every binding's memory.
static_assert(sizeof(void *) != 8 || sizeof(Process) == 64, "a Process grew past 64 bytes");

struct Binding {
    Process *parent = nullptr;
    Process *child = nullptr;
    Binding *next_child = nullptr, *prev_child = nullptr;   // in parent->children
    Binding *next_parent = nullptr, *prev_parent = nullptr; // in child->parents
    Registrant registrant;
    Policy policy;
    uint64_t created_ns = 0;
    uint32_t slot = Escalation::kNoSlot;  // its record in the binding log
    uint8_t scope = proto::kScopeProcess; // what its kill reaches (proto::Scope)
};

// Resource bounds; 0 means unlimited.
struct Limits {
    uint32_t bindings_per_uid = 0;
    uint32_t bindings_per_parent = 0;
    uint32_t max_processes = 0; // watched processes (one fd each)
};

// Outcome of a registration: error 0 or a negative errno, and a protocol Reason.
struct Verdict {
    int error = 0;
    uint32_t reason = proto::kOk;
};

// Hooks for persisting bindings and pending escalations across restarts and crashes (the
// binding log). Each may set the object's `slot`, and is called off the kill path.
class BindingStore {
  public:
    virtual ~BindingStore() = default;
    virtual void binding_added(Binding &b) = 0;
    virtual void binding_removed(Binding &b) = 0;
    // A new parent's name has been read, when the loop was idle: its bindings' records may
    // carry it.
    virtual void parent_named(Process &p) = 0;
    // `deadline_ns` is on CLOCK_MONOTONIC, which is the same for every process of a boot.
    virtual void escalation_added(Escalation &e, uint64_t deadline_ns) = 0;
    virtual void escalation_removed(Escalation &e) = 0;
};

struct RegistryStats {
    uint32_t parents = 0;
    uint32_t children = 0;
    uint32_t bindings = 0;
    uint64_t kills = 0;
};

// What one registrant uid may learn of its own bindings.
struct UidStats {
    uint32_t bindings = 0;
    uint64_t kills = 0;
};

// A dead parent, as its kills' descriptions need it: the pidfd gives its exit status.
// Registry::dead_parents_ counts them (kMaxDeadParents).
struct DeadParent {
    explicit DeadParent(size_t *count) : count_(count) { ++*count_; }
    ~DeadParent() { --*count_; }
    DeadParent(const DeadParent &) = delete;
    DeadParent &operator=(const DeadParent &) = delete;
    size_t *count_; // Registry::dead_parents_
    pid_t pid = 0;
    PidFd pidfd; // empty while the parent is still in the registry, or if never open
    std::array<char, proto::kCommLen> comm{};
    int status = -2; // wait(2) status, -1 unknown, -2 not read yet
};

// Which kind of kill (or refusal to kill) an event reports.
enum class KillNotice : uint8_t {
    Watched,
    AtRegistration,
    AtRestore,
    Escalated,
    Refused,
    EscalationRefused
};

// What a kill (or a refusal to kill) did: the event the registry reports once the batch's
// kills are out and its description is due (Registry::describe).
struct KillEvent {
    uint64_t noted_ns = 0; // when the kill was noted (describe_due_ns)
    KillNotice notice = KillNotice::Watched;
    int signal = 0;
    pid_t child_pid = 0;
    Process *pending = nullptr;               // until pinned: the child, still in the registry
    std::array<char, proto::kCommLen> comm{}; // the child's name, if read before the kill
    PidFd child;          // once pinned, if the name is unknown: a duplicate, to read it safely
    uid_t child_ruid = 0; // Refused: the child's uid now
    Registrant who;
    uint64_t latency_us = 0;
    std::shared_ptr<DeadParent> parent; // null for escalations
    uint8_t scope = proto::kScopeProcess;
    std::shared_ptr<ScopeKill> scope_kill; // a scope beyond the child: what it reached
    uint32_t unescalated = 0;              // reached, but not escalated: no fd or quota left
    bool scope_dropped = false;            // signalled alone: the scope could not be queued
};

// What consumes the registry's kill events (the KillLog): logging and /proc reads live there,
// outside the registry.
class KillObserver {
  public:
    // `event` is due: every kill of its batch is out. Its handles are the observer's to use
    // until it returns.
    virtual void on_kill(KillEvent &event) = 0;

  protected:
    ~KillObserver() = default;
};

class Registry {
  public:
    Registry(EventLoop &loop, UniqueFd timer_fd, Source *timer_source, Limits limits);
    ~Registry();
    Registry(const Registry &) = delete;
    Registry &operator=(const Registry &) = delete;

    // Binds `child` to `parent` for `who`, taking both handles (duplicates of an already watched
    // process are dropped). Each registrant uid has its own bindings: the same pair bound by
    // two users is two bindings, each carried out with its own policy, and kAlreadyBound only
    // answers a uid that bound the pair before. A parent already dead kills the child at once
    // (kParentAlreadyDead).
    // `restored` is set for a binding restored at start-up: its parent's name is known from
    // the store, and a dead parent died while orphand was not running.
    Verdict add(PidFd parent, PidFd child, const Policy &policy, const Registrant &who,
                const char *restored_parent_comm = nullptr);

    // Removes the binding parent -> child (by pid) of who's uid; a privileged registrant
    // removes every binding of the pair. kNotBound if there is none: another user's binding
    // is not revealed.
    Verdict remove(pid_t parent, pid_t child, const Registrant &who);

    // The watched, live process with this pid, or null. A watched process that has exited is
    // processed first (its pid may already belong to someone else).
    Process *find(pid_t pid);

    // Called by the loop when a watched process's pidfd is readable: it has exited.
    // signal_children() only sends the signals its death calls for; the loop calls it for every
    // death of a batch of events before anything else, so that no kill waits for bookkeeping,
    // a /proc read or a log entry. process_exited() does the rest (and the signals, if
    // signal_children was not called).
    void signal_children(Process *p);
    void process_exited(Process *p);
    // The registry's part of a batch of loop events (its processes, its timer),
    // in the order the kill path needs: every child that a death in the batch dooms is
    // signalled first, then everything else. The loop calls it with the whole batch before it
    // handles the other events.
    void handle_events(const struct epoll_event *events, int n);
    // Processes that are only children are watched by nothing: their exits cost no wakeup
    // and no epoll registration. Exited ones are found by polling their pidfds (sweep), and
    // retired: all of them when LIST, STATUS or STATUS= are answered (sweep_if_due), or on a
    // registration once
    // as many more children are held as after the last sweep (so at most half of those held
    // have exited, plus kSweepMin), or when a limit would refuse it; a dying parent's children
    // just before they are signalled. Parents are watched in the loop: a death is never delayed.
    static constexpr size_t kSweepMin = 64;
    // Retires every child that has exited.
    void retire_exited_children();
    // Processes held that are only children (their pidfds are in no epoll set).
    size_t unwatched() const { return unwatched_; }
    // The same, unless the last one was less than kSweepEveryNs ago, or less than nine times
    // its own duration: what clients can ask for again and again (LIST, STATUS, a registration
    // at a limit) takes at most a tenth of the daemon's time in sweeps. True if it swept.
    static constexpr uint64_t kSweepEveryNs = 20'000'000;
    bool sweep_if_due();
    // The bookkeeping that waits until the kills are out: gives every note that still points at
    // a registry process its own pidfd duplicate (before any process may be destroyed), and
    // records new escalations in the store.
    void after_kills();
    // Kills are described (reported to the KillObserver, which reads /proc and logs) after
    // every kill of the batch is out, a few at a time, so that descriptions never hold up a
    // kill or a registration. describe() reports at most `max` events, oldest first.
    bool has_descriptions() const { return !notes_.empty(); }
    size_t descriptions() const { return notes_.size(); }
    void describe(size_t max);
    // When descriptions may be written: kDescribeAfterNs after the latest kill, so that the
    // journal's work does not compete with the children that must run to die, but no later
    // than kDescribeWithinNs after the oldest one, nor once kMaxWaitingNotes wait. 0: none wait.
    static constexpr uint64_t kDescribeAfterNs = 50'000'000;
    static constexpr uint64_t kDescribeWithinNs = 1'000'000'000;
    static constexpr size_t kMaxWaitingNotes = 4096;
    // Dead parents whose kills wait to be described, each holding its pidfd (for its exit
    // status): beyond this many, descriptions are due at once, so that a stream of deaths
    // cannot hold more fds than the reserve.
    static constexpr size_t kMaxDeadParents = 64;
    uint64_t describe_due_ns() const;
    // Re-arms an escalation restored at start-up: SIGKILL for `child` at `deadline_ns` unless
    // it has exited by then.
    void restore_escalation(PidFd child, uint64_t deadline_ns, const Registrant &who);
    // Called by the loop when the escalation timer fires.
    void timer_fired();
    // New parents' names, for the log, are read off the registration path: when the loop is
    // idle (name_parents), or at the latest when the parent dies.
    bool has_unnamed() const { return !unnamed_.empty(); }
    void name_parents();
    // A child's name is read once it has lived kChildNameAfterNs since its registration (a
    // forked child usually execs first), on the escalation timer: a kill then names it without
    // a /proc read between the death and the signal, even if the child is reaped at once.
    static constexpr uint64_t kChildNameAfterNs = 50'000'000;
    // Children are named on the first turn of the loop once the monotonic clock reaches a
    // multiple of this at or after their time, or on the timer one step later: at most 40
    // wakeups a second for it, none while the loop is kept busy.
    static constexpr uint64_t kHousekeepingGridNs = 25'000'000;
    void name_children();
    // Frees processes destroyed during this loop iteration. The loop calls it after dispatching
    // a batch of events, so that no event of the batch points at freed memory. Returns how many
    // were freed (each had closed its pidfd).
    size_t collect();

    // Visits every binding.
    void for_each(const std::function<void(const Binding &)> &fn) const;
    RegistryStats stats() const;
    uint32_t bindings_of(uid_t uid) const;
    UidStats stats_of(uid_t uid) const;
    // The process's name, read once from /proc (while the pidfd proves it is the same process)
    // and kept: listing a binding again costs no /proc read.
    const char *name_of(Process *p);

    void set_store(BindingStore *store) { store_ = store; }
    // Scope kills go to `worker` when there is one (else they are done on the loop).
    void set_scope_worker(ScopeWorker *worker) { scopes_ = worker; }
    // Kill events go to `observer` when they are described (describe()); without one they are
    // dropped.
    void set_kill_observer(KillObserver *observer) { observer_ = observer; }
    // Called by the loop when the scope worker has finished jobs: their kills are noted and
    // escalated.
    void scopes_done();

  private:
    // The watched process with this handle's pid, or a new one; a new parent is watched in the
    // loop, a new child by nothing (and a child that becomes a parent moves to the loop).
    Process *intern(PidFd pidfd, Verdict *error, bool as_parent);
    // Watches a child that becomes a parent in the loop.
    bool watch_as_parent(Process *p, Verdict *error);
    // Polls unwatched children and takes those that have exited into exited_, marking each
    // exit_seen (send() then skips them): every child held, or the children of the bindings
    // from `from` on, one slice of them (returns the binding after the slice).
    void sweep_all();
    Binding *sweep_children(Binding *from);
    // A slice of them: take_for_poll adds `p` if it is to be polled (true once the slice is
    // full); poll_slice polls the `n` taken.
    bool take_for_poll(Process *p, size_t &n);
    void poll_slice(size_t n);
    // Handles the exits the sweeps found.
    void retire_drained();
    // Fills p->comm once, from /proc, if the process is still there.
    void read_comm(Process *p);
    void link(Binding *b);
    void unlink(Binding *b);
    void retire(Binding *b);
    void release_if_idle(Process *p);
    // `keep` (optional) receives the pidfd rather than it being closed.
    void destroy(Process *p, PidFd *keep = nullptr);

    using Notice = KillNotice;
    using KillNote = KillEvent;
    // What sending a binding's signal came to.
    struct Sent {
        // Deferred: a scope beyond the child, to be searched for and signalled after every
        // other kill of the batch (note() hands it to the scope worker).
        enum Outcome : uint8_t { Gone, Refused, Signalled, Deferred } outcome = Gone;
        uid_t child_ruid = 0; // Refused: the child's uid now
        uint64_t latency_us = 0;
        std::shared_ptr<ScopeKill> scope;    // a scope beyond the child: what it reached
        uint64_t death_ns = 0;               // Deferred: the parent's death
        const CgroupRef *cgroup = nullptr;   // Deferred: the binding's cgroup, for scope cgroup
        const PidFd *child_handle = nullptr; // a scope done on the worker: the child
        bool scope_dropped = false;          // the child alone: its scope could not be queued
    };
    // A scope kill on the worker, with what its description and escalations need.
    struct ScopeRun : ScopeJob {
        Policy policy;
        Registrant who;
        Notice notice = Notice::Watched;
        std::shared_ptr<DeadParent> parent;
        uint64_t death_ns = 0;
        std::array<char, proto::kCommLen> comm{};
    };
    // Sends the binding's policy to `child`, because a parent died at `death_ns`: the signal
    // alone, after the registrant's right to send it is checked again.
    Sent send(Process *child, const Policy &policy, const Registrant &who, uint64_t death_ns,
              const CgroupRef *cgroup);
    // The cgroup a binding of scope cgroup reaches, recorded at registration.
    const CgroupRef *cgroup_of(const Binding *b) const;
    // Checks a cgroup scope at registration: refused for a root cgroup, or one that holds the
    // parent (if it is alive) or orphand; the cgroup into *out.
    Verdict check_cgroup(const PidFd &parent, const PidFd &child, CgroupRef *out) const;
    // Notes what send() did, for its description, and schedules the escalation; a scope
    // beyond the child goes to the scope worker (defer), or is done at once without one.
    void note(const Sent &s, Process *child, const Policy &policy, const Registrant &who,
              Notice notice, const std::shared_ptr<DeadParent> &parent);
    // note() for a kill done: `child` is null for a scope done on the worker, whose own
    // handle (s.child_handle) names the child in its description.
    void note_sent(const Sent &s, pid_t child_pid, Process *child,
                   const std::array<char, proto::kCommLen> &comm, const Policy &policy,
                   const Registrant &who, Notice notice, const std::shared_ptr<DeadParent> &parent);
    void defer(const Sent &s, Process *child, const Policy &policy, const Registrant &who,
               Notice notice, const std::shared_ptr<DeadParent> &parent);
    // Sets s.outcome from what a scope kill did to the child.
    static void outcome(Sent &s, pid_t child_pid);
    // send(), then note().
    void kill(Process *child, const Policy &policy, const Registrant &who, uint64_t death_ns,
              Notice notice, const std::shared_ptr<DeadParent> &parent,
              const CgroupRef *cgroup = nullptr);
    // Sends the SIGKILL of escalation `e` to `p`, if it is still allowed, and notes it.
    void escalate(Process *p, const Escalation &e);
    void schedule(Process *p, uint64_t deadline_ns, const Registrant &who, bool from_scope = false);
    // An escalation is gone (done or cancelled): its quota is given back.
    void unscheduled(const Escalation &e);
    // What an unprivileged uid holds against its quota: its bindings, and the escalations of
    // processes its scopes reached.
    uint32_t held_by(uid_t uid) const;
    void cancel(Process *p);
    void rearm();

    EventLoop &loop_;
    UniqueFd timer_fd_;
    Source *timer_source_;
    Limits limits_;
    // DeadParent objects alive (kMaxDeadParents); before the members that hold them, which
    // are destroyed first.
    size_t dead_parents_ = 0;
    size_t unwatched_ = 0;                // processes that are only children
    size_t sweep_at_ = kSweepMin;         // a registration sweeps when unwatched_ reaches it
    uint64_t next_sweep_ns_ = 0;          // sweep_if_due() sweeps from then on
    std::vector<Process *> exited_;       // found exited by the sweeps, not yet handled
    std::array<Process *, 256> polled_{}; // a sweep's slice of children, and their pidfds
    std::array<struct pollfd, 256> pollfds_{};
    BindingStore *store_ = nullptr;
    ScopeWorker *scopes_ = nullptr;
    KillObserver *observer_ = nullptr;
    PidTable<Process> processes_;
    std::unordered_map<uid_t, uint32_t> per_uid_;
    using Deadlines = std::multimap<uint64_t, Escalation>;
    Deadlines deadlines_;
    std::unordered_multimap<Process *, Deadlines::iterator> escalations_;
    std::vector<Deadlines::iterator> unstored_; // escalations not yet in the store
    std::unordered_map<uid_t, uint64_t> kills_per_uid_;
    std::vector<Process *> graveyard_;
    std::deque<KillNote> notes_;
    std::vector<Sent> sent_; // signal_children's, kept to reuse its memory
    // Bindings of scope cgroup: the cgroup each reaches. Only they pay for it.
    std::unordered_map<const Binding *, CgroupRef> cgroups_;
    // Escalations pending for processes a scope reached, per unprivileged registrant uid: they
    // count against its bindings quota (Limits::bindings_per_uid), as each holds an fd.
    std::unordered_map<uid_t, uint32_t> scope_escalations_;
    std::unordered_map<Process *, std::shared_ptr<DeadParent>> dying_; // signalled, not retired
    size_t unpinned_ = 0;        // notes_ at the back still pointing at registry processes
    std::vector<pid_t> unnamed_; // parents to name (by pid: they may be gone by then)
    std::deque<std::pair<uint64_t, pid_t>> unnamed_children_; // (when, pid), oldest first
    // Parents whose last child is gone stay watched (by pid, oldest first) until kLinger
    // newer ones have joined them: a shell or make forks child after child, and each would
    // otherwise cost a new pidfd, an epoll registration and a /proc read.
    static constexpr size_t kLinger = 64;
    std::array<pid_t, kLinger> lingering_{};
    size_t lingering_next_ = 0;
    std::vector<Process *> detached_; // exited, no longer mapped by pid, exit event pending
    uint64_t armed_ns_ = 0;           // the timer's deadline; 0: disarmed
    uint64_t due_ns_ = 0;             // when the next escalation or housekeeping is due; 0: none
    uint32_t bindings_ = 0;
    uint32_t parents_ = 0;
    uint32_t children_ = 0;
    uint64_t kills_ = 0;
};

} // namespace orphand
