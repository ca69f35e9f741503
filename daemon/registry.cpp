// SPDX-License-Identifier: MIT
// Bindings between watched processes, and the kills a parent's death causes.
#include "registry.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "authorization.hpp"

namespace orphand {
namespace {} // namespace

Registry::Registry(EventLoop &loop, UniqueFd timer_fd, Source *timer_source, Limits limits)
    : loop_(loop), timer_fd_(std::move(timer_fd)), timer_source_(timer_source), limits_(limits) {}

Registry::~Registry() {
    // Gathered first: destroy() edits the table, and rescanning it for each entry would take
    // quadratic time at exit with many processes watched.
    std::vector<Process *> all;
    all.reserve(processes_.size());
    processes_.for_each([&](Process *p) { all.push_back(p); });
    for (Process *p : all)
        destroy(p);
    while (!detached_.empty())
        destroy(detached_.back());
    collect();
}

size_t Registry::collect() {
    size_t n = graveyard_.size();
    for (Process *p : graveyard_)
        delete p;
    graveyard_.clear();
    return n;
}

Process *Registry::find(pid_t pid) {
    Process *p = processes_.find(pid);
    if (!p)
        return nullptr;
    if (p->pidfd.exited()) {
        // Its exit event is queued but not yet handled. Once reaped, its pid may already belong
        // to another process: stop mapping the pid to it, and let the queued event handle it.
        processes_.erase(p);
        detached_.push_back(p);
        return nullptr;
    }
    return p;
}

Process *Registry::intern(PidFd pidfd, Verdict *error, bool as_parent) {
    if (Process *existing = find(pidfd.pid())) {
        existing->lingering = false;
        if (as_parent && existing->unwatched && !watch_as_parent(existing, error))
            return nullptr;
        return existing; // the pid of a live process names exactly one process
    }
    if (limits_.max_processes && processes_.size() + detached_.size() >= limits_.max_processes) {
        *error = {-EMFILE, proto::kOutOfFds};
        return nullptr;
    }
    auto *p = new Process(std::move(pidfd));
    Result<void> r;
    if (as_parent) {
        r = loop_.add(p->pidfd.fd(), EPOLLIN, p);
    } else {
        // Only a child: nothing watches it (see sweep_all()).
        p->unwatched = true;
        ++unwatched_;
    }
    if (!r) {
        error->error = r.code();
        error->reason = r.code() == -ENOMEM ? proto::kOutOfFds : proto::kInternal;
        delete p;
        return nullptr;
    }
    processes_.insert(p);
    return p;
}

bool Registry::watch_as_parent(Process *p, Verdict *error) {
    // Watched in the loop first: if that fails, it stays a child as it was.
    if (auto r = loop_.add(p->pidfd.fd(), EPOLLIN, p); !r) {
        error->error = r.code();
        error->reason = r.code() == -ENOMEM ? proto::kOutOfFds : proto::kInternal;
        return false;
    }
    p->unwatched = false;
    --unwatched_;
    return true;
}

void Registry::handle_events(const struct epoll_event *events, int n) {
    // Deaths first: every child a death in this batch dooms is signalled before anything else
    // of the batch runs (bookkeeping, requests, logging).
    for (int i = 0; i < n; ++i) {
        auto *source = static_cast<Source *>(events[i].data.ptr);
        if (source->kind == Source::Kind::Process)
            signal_children(static_cast<Process *>(source));
    }
    after_kills();
    retire_drained();
    bool timer = false;
    for (int i = 0; i < n; ++i) {
        auto *source = static_cast<Source *>(events[i].data.ptr);
        if (source->kind == Source::Kind::Process)
            process_exited(static_cast<Process *>(source));
        else if (source == timer_source_)
            timer = true;
    }
    // What the timer is armed for is done as soon as its time has come, on whatever turn: a
    // loop kept busy (a stream of registrations) is never woken by the timer.
    if (timer || (due_ns_ != 0 && monotonic_ns() >= due_ns_))
        timer_fired();
}

void Registry::poll_slice(size_t n) {
    if (n == 0 || ::poll(pollfds_.data(), n, 0) <= 0)
        return;
    for (size_t j = 0; j < n; ++j) {
        Process *p = polled_[j];
        if ((pollfds_[j].revents & (POLLIN | POLLHUP | POLLERR)) && !p->exit_seen) {
            p->exit_seen = true;
            exited_.push_back(p);
        }
    }
}

bool Registry::take_for_poll(Process *p, size_t &n) {
    if (!p->unwatched || p->exit_seen || p->destroyed)
        return false;
    polled_[n] = p;
    pollfds_[n] = {p->pidfd.fd(), POLLIN, 0};
    return ++n == pollfds_.size();
}

void Registry::sweep_all() {
    // In slices of a fixed size: no buffer grows with the children held, and poll(2) takes no
    // more fds than RLIMIT_NOFILE.
    size_t n = 0;
    processes_.for_each([&](Process *p) {
        if (take_for_poll(p, n)) {
            poll_slice(n);
            n = 0;
        }
    });
    poll_slice(n);
}

Binding *Registry::sweep_children(Binding *from) {
    size_t n = 0;
    Binding *b = from;
    for (size_t walked = 0; b && walked < pollfds_.size(); b = b->next_child, ++walked)
        take_for_poll(b->child, n);
    poll_slice(n);
    return b;
}

void Registry::retire_drained() {
    // By index: nothing here adds to exited_, but process_exited() may destroy a process that
    // is further down the list (it is then skipped as destroyed).
    for (size_t i = 0; i < exited_.size(); ++i)
        process_exited(exited_[i]);
    exited_.clear();
}

void Registry::retire_exited_children() {
    uint64_t start = monotonic_ns();
    sweep_all();
    retire_drained();
    // The next sweep on registration once as many more children are held: each child is
    // polled a bounded number of times on average, and exited ones are at most half of those
    // held (plus kSweepMin).
    sweep_at_ = std::max(kSweepMin, 2 * unwatched_);
    uint64_t end = monotonic_ns();
    next_sweep_ns_ = end + std::max(kSweepEveryNs, 9 * (end - start));
}

bool Registry::sweep_if_due() {
    if (monotonic_ns() < next_sweep_ns_)
        return false;
    retire_exited_children();
    return true;
}

void Registry::name_parents() {
    for (pid_t pid : unnamed_) {
        // The pid may name a newer process by now: only a queued one is read.
        Process *p = processes_.find(pid);
        if (p && p->name_queued) {
            p->name_queued = false;
            read_comm(p);
            if (store_)
                store_->parent_named(*p);
        }
    }
    unnamed_.clear();
}

void Registry::name_children() {
    uint64_t now = monotonic_ns();
    while (!unnamed_children_.empty() && unnamed_children_.front().first <= now) {
        // The pid may name a newer process by now: only a queued one is read.
        Process *p = processes_.find(unnamed_children_.front().second);
        unnamed_children_.pop_front();
        if (p && p->child_name_queued) {
            p->child_name_queued = false;
            read_comm(p);
        }
    }
}

void Registry::read_comm(Process *p) {
    if (p->comm[0] != '\0')
        return;
    std::string comm = p->pidfd.comm();
    std::strncpy(p->comm.data(), comm.c_str(), p->comm.size() - 1);
}

const char *Registry::name_of(Process *p) {
    read_comm(p);
    return p->comm.data();
}

Verdict Registry::add(PidFd parent_fd, PidFd child_fd, const Policy &policy, const Registrant &who,
                      const char *restored_parent_comm) {
    Verdict v;
    if (parent_fd.pid() == child_fd.pid())
        return {-EINVAL, proto::kSameProcess};
    if (child_fd.exited())
        return {-ESRCH, proto::kNoSuchProcess};
    // Children that have exited are retired here, before anything of this registration is
    // held: once as many more are held as after the last sweep, or when they could make a
    // limit refuse it. Those a limit asks for are at most as often as sweep_if_due() allows:
    // a client kept at its limit cannot make each of its registrations a sweep of every child.
    if (unwatched_ >= sweep_at_) {
        retire_exited_children();
    } else if ((limits_.max_processes &&
                processes_.size() + detached_.size() + 2 > limits_.max_processes) ||
               (limits_.bindings_per_uid && !who.privileged &&
                held_by(who.uid) >= limits_.bindings_per_uid)) {
        sweep_if_due();
    } else if (Process *p =
                   limits_.bindings_per_parent ? processes_.find(parent_fd.pid()) : nullptr;
               p && p->n_children >= limits_.bindings_per_parent) {
        sweep_if_due();
    }

    CgroupRef cgroup;
    if (policy.scope == proto::kScopeCgroup) {
        if (Verdict c = check_cgroup(parent_fd, child_fd, &cgroup); c.error < 0)
            return c;
    }

    // An invalid parent handle means its pid named no process: it already died.
    if (!parent_fd.valid() || parent_fd.exited()) {
        Process *child = intern(std::move(child_fd), &v, false);
        if (!child)
            return v;
        auto dead = std::make_shared<DeadParent>(&dead_parents_);
        dead->pid = parent_fd.pid();
        kill(child, policy, who, monotonic_ns(),
             restored_parent_comm ? Notice::AtRestore : Notice::AtRegistration, dead, &cgroup);
        after_kills();
        if (restored_parent_comm && restored_parent_comm[0])
            std::snprintf(dead->comm.data(), dead->comm.size(), "%s", restored_parent_comm);
        dead->pidfd = std::move(parent_fd);
        release_if_idle(child);
        return {0, proto::kParentAlreadyDead};
    }

    if (limits_.bindings_per_uid && !who.privileged && held_by(who.uid) >= limits_.bindings_per_uid)
        return {-EDQUOT, proto::kLimitUser};

    Process *parent = intern(std::move(parent_fd), &v, true);
    if (!parent)
        return v;
    // A parent's name is read while it lives: by the time its death is handled, it may be
    // reaped and gone from /proc. It is read once the loop is idle, so that a flood of
    // registrations is not slowed by /proc. Children's names are read when they are killed or
    // listed.
    if (restored_parent_comm && parent->comm[0] == '\0')
        std::strncpy(parent->comm.data(), restored_parent_comm, parent->comm.size() - 1);
    parent->was_parent = true;
    if (parent->comm[0] == '\0' && !parent->name_queued) {
        parent->name_queued = true;
        unnamed_.push_back(parent->pid());
    }
    Process *child = intern(std::move(child_fd), &v, false);
    if (!child) {
        release_if_idle(parent);
        return v;
    }
    if (child->comm[0] == '\0' && !child->child_name_queued) {
        child->child_name_queued = true;
        unnamed_children_.emplace_back(monotonic_ns() + kChildNameAfterNs, child->pid());
        if (unnamed_children_.size() == 1)
            rearm();
    }
    for (Binding *b = child->parents; b; b = b->next_parent)
        if (b->parent == parent && b->registrant.uid == who.uid)
            return {0, proto::kAlreadyBound};
    if (limits_.bindings_per_parent && parent->n_children >= limits_.bindings_per_parent) {
        release_if_idle(child);
        return {-EDQUOT, proto::kLimitParent};
    }

    auto *b = new Binding;
    b->parent = parent;
    b->child = child;
    b->registrant = who;
    b->policy = policy;
    b->created_ns = monotonic_ns();
    link(b);
    if (policy.scope == proto::kScopeCgroup)
        cgroups_.emplace(b, std::move(cgroup));
    if (store_)
        store_->binding_added(*b);
    return {0, proto::kOk};
}

Verdict Registry::check_cgroup(const PidFd &parent, const PidFd &child, CgroupRef *out) const {
    if (cgroup_mount().empty())
        return {-EOPNOTSUPP, proto::kScopeUnsupported};
    auto cg = orphand::cgroup_of(child);
    if (!cg)
        return {-ESRCH, proto::kNoSuchProcess};
    // Read each time: a cgroup scope is rare, and orphand may have been moved.
    static const pid_t self = ::getpid();
    auto own = PidFd::open(self);
    auto mine = own ? orphand::cgroup_of(*own) : Result<CgroupRef>(own.error());
    if (cg->path == "/" || !mine || cgroup_contains(cg->path, mine->path))
        return {-EPERM, proto::kScopeRefused};
    // A parent that is gone cannot be collateral; one alive must not be in it.
    if (parent.valid() && !parent.exited()) {
        auto theirs = orphand::cgroup_of(parent);
        if (theirs && cgroup_contains(cg->path, theirs->path))
            return {-EPERM, proto::kScopeRefused};
    }
    *out = std::move(*cg);
    return {};
}

const CgroupRef *Registry::cgroup_of(const Binding *b) const {
    if (b->policy.scope != proto::kScopeCgroup)
        return nullptr;
    auto it = cgroups_.find(b);
    return it == cgroups_.end() ? nullptr : &it->second;
}

Verdict Registry::remove(pid_t parent_pid, pid_t child_pid, const Registrant &who) {
    Process *child = find(child_pid);
    if (!child)
        return {0, proto::kNotBound};
    Process *parent = nullptr;
    for (Binding *b = child->parents, *next; b; b = next) {
        next = b->next_parent;
        if (b->parent->pidfd.pid() != parent_pid)
            continue;
        // Another user's binding answers as no binding at all, as LIST hides it.
        if (!may_see(who, b->registrant.uid))
            continue;
        parent = b->parent;
        retire(b);
    }
    if (!parent)
        return {0, proto::kNotBound};
    release_if_idle(parent);
    release_if_idle(child);
    return {0, proto::kOk};
}

void Registry::link(Binding *b) {
    Process *parent = b->parent, *child = b->child;
    if (!parent->children)
        ++parents_;
    if (!child->parents)
        ++children_;
    b->next_child = parent->children;
    if (parent->children)
        parent->children->prev_child = b;
    parent->children = b;
    ++parent->n_children;
    b->next_parent = child->parents;
    if (child->parents)
        child->parents->prev_parent = b;
    child->parents = b;
    ++bindings_;
    ++per_uid_[b->registrant.uid];
}

void Registry::unlink(Binding *b) {
    Process *parent = b->parent, *child = b->child;
    if (b->prev_child)
        b->prev_child->next_child = b->next_child;
    else
        parent->children = b->next_child;
    if (b->next_child)
        b->next_child->prev_child = b->prev_child;
    --parent->n_children;
    if (b->prev_parent)
        b->prev_parent->next_parent = b->next_parent;
    else
        child->parents = b->next_parent;
    if (b->next_parent)
        b->next_parent->prev_parent = b->prev_parent;
    if (!parent->children)
        --parents_;
    if (!child->parents)
        --children_;
    --bindings_;
    auto it = per_uid_.find(b->registrant.uid);
    if (it != per_uid_.end() && --it->second == 0)
        per_uid_.erase(it);
}

void Registry::retire(Binding *b) {
    unlink(b);
    if (b->policy.scope == proto::kScopeCgroup)
        cgroups_.erase(b);
    if (store_)
        store_->binding_removed(*b);
    delete b;
}

void Registry::release_if_idle(Process *p) {
    if (p->children || p->parents || p->escalating)
        return;
    if (!p->was_parent || p->lingering) {
        destroy(p);
        return;
    }
    // Evict the oldest lingering parent, if it is still one (the slot may name a process that
    // has died, or been bound again, since).
    pid_t &slot = lingering_[lingering_next_];
    lingering_next_ = (lingering_next_ + 1) % kLinger;
    if (Process *old = slot ? processes_.find(slot) : nullptr;
        old && old->lingering && !old->children && !old->parents && !old->escalating)
        destroy(old);
    slot = p->pid();
    p->lingering = true;
}

void Registry::destroy(Process *p, PidFd *keep) {
    while (p->children)
        retire(p->children);
    while (p->parents)
        retire(p->parents);
    cancel(p);
    if (p->unwatched) {
        p->unwatched = false;
        --unwatched_;
    } else {
        loop_.remove(p->pidfd.fd());
    }
    if (processes_.find(p->pid()) == p)
        processes_.erase(p);
    else
        std::erase(detached_, p);
    p->destroyed = true;
    // Signalled in this batch but destroyed before its own exit was handled (its bindings were
    // removed meanwhile): its kills' descriptions keep the pidfd.
    std::shared_ptr<DeadParent> dead;
    if (auto it = dying_.find(p); it != dying_.end()) {
        dead = std::move(it->second);
        dying_.erase(it);
        if (!keep && dead.use_count() > 1)
            keep = &dead->pidfd;
    }
    if (keep)
        *keep = std::move(p->pidfd);
    p->pidfd.unique_fd().reset();
    graveyard_.push_back(p);
}

void Registry::signal_children(Process *p) {
    if (p->destroyed || p->signalled)
        return;
    p->signalled = true;
    if (!p->children)
        return;
    uint64_t death_ns = monotonic_ns();
    // The signals first, back to back: what each kill leaves to note and schedule waits until
    // every child has its signal.
    sent_.clear();
    sent_.resize(p->n_children);
    size_t i = 0;
    bool scopes = false;
    // Children that have exited are not signalled: they are polled a slice at a time, just
    // before their signals, so that the first kills wait for no more than one slice's poll.
    Binding *polled_to = p->children;
    for (Binding *b = p->children; b; b = b->next_child, ++i) {
        if (b == polled_to)
            polled_to = sweep_children(b);
        if (b->policy.scope != proto::kScopeProcess)
            scopes = true;
        else
            sent_[i] = send(b->child, b->policy, b->registrant, death_ns, nullptr);
    }
    // A wider scope is searched for, which takes longer: after every child alone has its signal.
    i = 0;
    for (Binding *b = p->children; scopes && b; b = b->next_child, ++i)
        if (b->policy.scope != proto::kScopeProcess)
            sent_[i] = send(b->child, b->policy, b->registrant, death_ns, cgroup_of(b));
    // Not named yet (it died before the loop was idle): named now, while it may still be a
    // zombie, not when described, when its parent may have reaped it.
    read_comm(p);
    auto dead = std::make_shared<DeadParent>(&dead_parents_);
    dead->pid = p->pid();
    dead->comm = p->comm;
    i = 0;
    for (Binding *b = p->children; b; b = b->next_child, ++i)
        note(sent_[i], b->child, b->policy, b->registrant, Notice::Watched, dead);
    dying_.emplace(p, std::move(dead));
}

void Registry::process_exited(Process *p) {
    if (p->destroyed)
        return;
    signal_children(p);
    // Everything else comes after every kill of the batch is out.
    after_kills();
    cancel(p);
    // Bindings in which it was the child are done: it is gone without our help.
    while (p->parents) {
        Binding *b = p->parents;
        Process *parent = b->parent;
        retire(b);
        release_if_idle(parent);
    }
    std::shared_ptr<DeadParent> dead;
    if (auto it = dying_.find(p); it != dying_.end()) {
        dead = std::move(it->second);
        dying_.erase(it);
    }
    while (p->children) {
        Binding *b = p->children;
        Process *child = b->child;
        retire(b);
        release_if_idle(child);
    }
    // The parent's pidfd goes with its kills' descriptions, which read its exit status.
    destroy(p, dead ? &dead->pidfd : nullptr);
}

Registry::Sent Registry::send(Process *child, const Policy &policy, const Registrant &who,
                              uint64_t death_ns, const CgroupRef *cgroup) {
    // A child already signalled for another binding gets this one's signal too: no binding,
    // whoever made it, is weakened by another's policy. A child that has exited but is not yet
    // reaped takes the signal as a no-op (its own exit event then retires it and cancels any
    // escalation): asking first would cost every kill a system call.
    Sent s;
    if (child->exit_seen)
        return s; // exited, its binding ending: no kill, of it or of its scope
    if (policy.scope != proto::kScopeProcess) {
        // Every process the scope reaches is checked by the rule the child is, as it is
        // signalled (scope.hpp). Searching for them takes longer than a signal: it is done
        // once every child alone has its signal, on the scope worker (note()).
        s.outcome = Sent::Deferred;
        s.death_ns = death_ns;
        s.cgroup = cgroup;
        return s;
    }
    if (!who.privileged) {
        // Checked again now: the child may have changed its credentials since registration.
        auto creds = child->pidfd.creds();
        if (!creds)
            return s; // gone meanwhile
        if (!may_signal(who, *creds)) {
            s.outcome = Sent::Refused;
            s.child_ruid = creds->ruid;
            return s;
        }
    }
    if (child->pidfd.send_signal(policy.signal) < 0)
        return s; // -ESRCH: reaped meanwhile
    s.outcome = Sent::Signalled;
    s.latency_us = (monotonic_ns() - death_ns) / 1000;
    return s;
}

void Registry::note(const Sent &s, Process *child, const Policy &policy, const Registrant &who,
                    Notice notice, const std::shared_ptr<DeadParent> &parent) {
    if (s.outcome == Sent::Deferred) {
        defer(s, child, policy, who, notice, parent);
        return;
    }
    note_sent(s, child->pid(), child, child->comm, policy, who, notice, parent);
}

void Registry::note_sent(const Sent &s, pid_t child_pid, Process *child,
                         const std::array<char, proto::kCommLen> &comm, const Policy &policy,
                         const Registrant &who, Notice notice,
                         const std::shared_ptr<DeadParent> &parent) {
    bool reached =
        s.scope && (s.scope->signalled > 0 || !s.scope->skipped.empty() || s.scope->incomplete);
    if (s.outcome == Sent::Gone && !reached)
        return;
    KillNote note;
    // A child refused while its scope reached others: the skipped list names the child.
    bool others = s.scope && s.scope->signalled > 0;
    note.notice = s.outcome == Sent::Refused && !others ? Notice::Refused : notice;
    note.signal = policy.signal;
    note.child_pid = child_pid;
    note.pending = child;
    note.comm = comm;
    if (!child && comm[0] == '\0' && s.child_handle) {
        // Named when described, through a pidfd of its own.
        int fd = ::fcntl(s.child_handle->fd(), F_DUPFD_CLOEXEC, 3);
        if (fd >= 0)
            note.child = PidFd(child_pid, UniqueFd(fd));
    }
    note.child_ruid = s.child_ruid;
    note.who = who;
    note.latency_us = s.latency_us;
    note.parent = parent;
    note.scope = policy.scope;
    note.scope_kill = s.scope;
    note.scope_dropped = s.scope_dropped;
    bool escalate = policy.signal != SIGKILL && policy.grace_ms != proto::kGraceNever;
    uint64_t deadline = monotonic_ns() + uint64_t{policy.grace_ms} * 1000000u;
    if (s.scope) {
        // Everything the scope reached is escalated as the child is.
        uint32_t more = s.scope->signalled - (s.scope->child_signalled ? 1 : 0);
        kills_ += more;
        kills_per_uid_[who.uid] += more;
        for (PidFd &r : s.scope->reached) {
            if (!escalate)
                break;
            // Gone already: nothing to escalate, and its pid may name another process by now.
            if (r.exited())
                continue;
            // An unprivileged registrant's escalations hold fds on its quota, as bindings do.
            if (!who.privileged && limits_.bindings_per_uid) {
                if (held_by(who.uid) >= limits_.bindings_per_uid) {
                    ++note.unescalated;
                    continue;
                }
            }
            Verdict v;
            Process *p = intern(std::move(r), &v, false);
            if (p)
                schedule(p, deadline, who, true);
            else
                ++note.unescalated;
        }
        s.scope->reached.clear();
    }
    note.noted_ns = monotonic_ns();
    notes_.push_back(std::move(note));
    ++unpinned_;
    if (s.outcome != Sent::Signalled)
        return;
    ++kills_;
    ++kills_per_uid_[who.uid];
    if (!escalate)
        return;
    if (!child && s.child_handle && !s.child_handle->exited()) {
        // A scope done on the worker: the child, if still there, is watched again to be
        // escalated (find() gives the registry's handle if it still has one).
        int fd = ::fcntl(s.child_handle->fd(), F_DUPFD_CLOEXEC, 3);
        Verdict v;
        child = fd >= 0 ? intern(PidFd(child_pid, UniqueFd(fd)), &v, false) : nullptr;
    }
    if (child)
        schedule(child, deadline, who);
}

void Registry::defer(const Sent &s, Process *child, const Policy &policy, const Registrant &who,
                     Notice notice, const std::shared_ptr<DeadParent> &parent) {
    auto run = std::make_unique<ScopeRun>();
    run->scope = policy.scope;
    run->kill.signal = policy.signal;
    run->kill.allowed = [who](const Creds &c) { return may_signal(who, c); };
    if (s.cgroup) {
        run->cgroup = *s.cgroup;
        run->has_cgroup = true;
    }
    run->policy = policy;
    run->who = who;
    run->notice = notice;
    run->parent = parent;
    run->death_ns = s.death_ns;
    run->comm = child->comm;
    run->uid = who.uid;
    run->privileged = who.privileged;
    run->kill.privileged = who.privileged;
    int fd = ::fcntl(child->pidfd.fd(), F_DUPFD_CLOEXEC, 3);
    if (fd >= 0 && scopes_) {
        run->child = PidFd(child->pid(), UniqueFd(fd));
        std::unique_ptr<ScopeJob> job = std::move(run);
        if (scopes_->submit(job))
            return;
    } else if (fd >= 0) {
        ::close(fd);
    }
    // No fd or thread to spare, or too many of this user's scopes waiting: the child alone, at
    // once. A search never runs on the loop.
    Policy alone = policy;
    alone.scope = proto::kScopeProcess;
    Sent now = send(child, alone, who, s.death_ns, nullptr);
    now.scope_dropped = true;
    note_sent(now, child->pid(), child, child->comm, policy, who, notice, parent);
}

void Registry::scopes_done() {
    if (!scopes_)
        return;
    for (auto &job : scopes_->take_done()) {
        auto &run = static_cast<ScopeRun &>(*job);
        Sent s;
        s.scope = std::make_shared<ScopeKill>(std::move(run.kill));
        s.latency_us = (monotonic_ns() - run.death_ns) / 1000;
        outcome(s, run.child.pid());
        s.child_handle = &run.child;
        note_sent(s, run.child.pid(), nullptr, run.comm, run.policy, run.who, run.notice,
                  run.parent);
    }
    after_kills();
}

void Registry::outcome(Sent &s, pid_t child_pid) {
    if (s.scope->child_signalled) {
        s.outcome = Sent::Signalled;
        return;
    }
    for (const Skipped &k : s.scope->skipped)
        if (k.pid == child_pid) {
            s.outcome = Sent::Refused;
            s.child_ruid = k.ruid;
        }
}

void Registry::kill(Process *child, const Policy &policy, const Registrant &who, uint64_t death_ns,
                    Notice notice, const std::shared_ptr<DeadParent> &parent,
                    const CgroupRef *cgroup) {
    // A single kill (a parent found dead at registration or at start-up): its child is named
    // first, as it could be reaped a moment after its signal, and no other kill waits.
    read_comm(child);
    Sent s = send(child, policy, who, death_ns, cgroup);
    note(s, child, policy, who, notice, parent);
}

void Registry::after_kills() {
    for (auto it = notes_.end() - static_cast<std::ptrdiff_t>(unpinned_); it != notes_.end();
         ++it) {
        if (!it->pending || it->comm[0] != '\0') {
            it->pending = nullptr; // named already: no pidfd needed
            continue;
        }
        // Named now that every kill of the batch is out: the description waits until the
        // children have had time to die, and a child reaped by then has left /proc.
        read_comm(it->pending);
        it->comm = it->pending->comm;
        it->pending = nullptr;
    }
    unpinned_ = 0;
    for (auto due : unstored_)
        if (store_)
            store_->escalation_added(due->second, due->first);
    unstored_.clear();
}

uint64_t Registry::describe_due_ns() const {
    if (notes_.empty())
        return 0;
    if (notes_.size() >= kMaxWaitingNotes || dead_parents_ >= kMaxDeadParents)
        return 1;
    return std::min(notes_.back().noted_ns + kDescribeAfterNs,
                    notes_.front().noted_ns + kDescribeWithinNs);
}

void Registry::describe(size_t max) {
    for (; max > 0 && !notes_.empty(); --max) {
        KillNote note = std::move(notes_.front());
        notes_.pop_front();
        if (observer_)
            observer_->on_kill(note);
    }
}

void Registry::schedule(Process *p, uint64_t deadline_ns, const Registrant &who, bool from_scope) {
    p->escalating = true;
    Escalation e{p, who};
    e.from_scope = from_scope && !who.privileged;
    if (e.from_scope)
        ++scope_escalations_[who.uid];
    auto due = deadlines_.emplace(deadline_ns, e);
    escalations_.emplace(p, due);
    unstored_.push_back(due);
    rearm();
}

uint32_t Registry::held_by(uid_t uid) const {
    auto it = scope_escalations_.find(uid);
    return bindings_of(uid) + (it == scope_escalations_.end() ? 0 : it->second);
}

void Registry::unscheduled(const Escalation &e) {
    if (!e.from_scope)
        return;
    auto it = scope_escalations_.find(e.registrant.uid);
    if (it != scope_escalations_.end() && --it->second == 0)
        scope_escalations_.erase(it);
}

void Registry::restore_escalation(PidFd child_fd, uint64_t deadline_ns, const Registrant &who) {
    Verdict v;
    if (child_fd.exited())
        return;
    Process *p = intern(std::move(child_fd), &v, false);
    if (!p)
        return;
    // Named now, at start-up: its SIGKILL is logged with its name even if it is reaped at once.
    read_comm(p);
    schedule(p, deadline_ns, who);
    after_kills();
}

void Registry::cancel(Process *p) {
    if (!p->escalating)
        return;
    auto [begin, end] = escalations_.equal_range(p);
    for (auto it = begin; it != end; ++it) {
        std::erase(unstored_, it->second);
        if (store_)
            store_->escalation_removed(it->second->second);
        unscheduled(it->second->second);
        deadlines_.erase(it->second);
    }
    escalations_.erase(begin, end);
    p->escalating = false;
    rearm();
}

void Registry::rearm() {
    auto earliest = [](uint64_t a, uint64_t b) { return a == 0 ? b : b == 0 ? a : std::min(a, b); };
    // Children are named on a coarse grid: one turn names every child due, however many forks
    // came meanwhile.
    auto coarse = [](uint64_t ns) {
        return (ns + kHousekeepingGridNs - 1) / kHousekeepingGridNs * kHousekeepingGridNs;
    };
    uint64_t chores = unnamed_children_.empty() ? 0 : coarse(unnamed_children_.front().first);
    uint64_t exact = deadlines_.empty() ? 0 : deadlines_.begin()->first;
    due_ns_ = earliest(exact, chores);
    // For names the timer waits one grid step longer: a loop kept busy (a stream of
    // registrations) reads them on a turn it takes anyway, and the timer never wakes it.
    // Escalations are on time. Armed only while something is due: an idle daemon has no timer.
    uint64_t next = earliest(exact, chores ? chores + kHousekeepingGridNs : 0);
    if (next == armed_ns_)
        return;
    if (arm_timer_at(timer_fd_.get(), next))
        armed_ns_ = next;
}

void Registry::escalate(Process *p, const Escalation &e) {
    if (p->pidfd.exited())
        return; // its own exit event retires it
    KillNote note;
    note.child_pid = p->pid();
    note.pending = p;
    note.comm = p->comm;
    note.who = e.registrant;
    note.signal = SIGKILL;
    note.noted_ns = monotonic_ns();
    if (!e.registrant.privileged) {
        auto creds = p->pidfd.creds();
        if (!creds)
            return; // gone meanwhile
        if (!may_signal(e.registrant, *creds)) {
            note.notice = Notice::EscalationRefused;
            note.child_ruid = creds->ruid;
            notes_.push_back(std::move(note));
            ++unpinned_;
            return;
        }
    }
    if (p->pidfd.send_signal(SIGKILL) == 0) {
        note.notice = Notice::Escalated;
        notes_.push_back(std::move(note));
        ++unpinned_;
        cancel(p); // any later escalation of it has nothing left to do
    }
}

void Registry::timer_fired() {
    uint64_t expirations;
    (void)!::read(timer_fd_.get(), &expirations, sizeof(expirations));
    uint64_t now = monotonic_ns();
    std::vector<Process *> touched;
    // Every escalation due is sent before anything is logged or released.
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        auto due = deadlines_.begin();
        Process *p = due->second.process;
        Escalation e = due->second;
        auto [begin, end] = escalations_.equal_range(p);
        for (auto it = begin; it != end; ++it) {
            if (it->second == due) {
                escalations_.erase(it);
                break;
            }
        }
        std::erase(unstored_, due);
        deadlines_.erase(due);
        p->escalating = escalations_.count(p) > 0;
        touched.push_back(p);
        // Its record goes only once the SIGKILL is out (or not due): a crash before that must
        // leave the escalation to the next orphand.
        escalate(p, e);
        if (store_)
            store_->escalation_removed(e);
        unscheduled(e);
    }
    after_kills();
    for (Process *p : touched)
        if (!p->destroyed)
            release_if_idle(p);
    name_children();
    armed_ns_ = ~uint64_t{0}; // force rearm() to program the next deadline (or disarm)
    rearm();
}

void Registry::for_each(const std::function<void(const Binding &)> &fn) const {
    processes_.for_each([&](const Process *p) {
        for (Binding *b = p->children; b; b = b->next_child)
            fn(*b);
    });
    for (const Process *p : detached_)
        for (Binding *b = p->children; b; b = b->next_child)
            fn(*b);
}

RegistryStats Registry::stats() const {
    return {parents_, children_, bindings_, kills_};
}

UidStats Registry::stats_of(uid_t uid) const {
    auto k = kills_per_uid_.find(uid);
    return {bindings_of(uid), k == kills_per_uid_.end() ? 0 : k->second};
}

uint32_t Registry::bindings_of(uid_t uid) const {
    auto it = per_uid_.find(uid);
    return it == per_uid_.end() ? 0 : it->second;
}

} // namespace orphand
