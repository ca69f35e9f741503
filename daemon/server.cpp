// SPDX-License-Identifier: MIT
// The Server: orphand assembled (registry, listener, connections, notifier) and its loop;
// decoded requests carried out against the registry.
#include "server.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>
#include <system_error>

#include <systemd/sd-daemon.h>

#include "authorization.hpp"
#include "orphand_config.h"

namespace orphand {
namespace {

constexpr size_t kTrimAfter = 512;      // objects gone since the peak worth trimming the heap for
constexpr size_t kDescribePerTurn = 16; // kill descriptions (a /proc read, a log entry) per turn

[[noreturn]] void fail(int err, const std::string &what) {
    throw std::system_error(err, std::generic_category(), what);
}

uint32_t features_mask() {
    const auto &k = kernel_features();
    uint32_t f = 0;
    if (k.peer_pidfd)
        f |= proto::kFeaturePeerPidfd;
    if (k.pidfd_info)
        f |= proto::kFeaturePidfdInfo;
    if (k.exit_info)
        f |= proto::kFeatureExitInfo;
    if (k.pidfs)
        f |= proto::kFeaturePidfsInode;
    if (log_to_journal())
        f |= proto::kFeatureJournal;
    if (have_pgroup_signal())
        f |= proto::kFeaturePgroupSignal;
    if (!cgroup_mount().empty())
        f |= proto::kFeatureCgroup;
    return f;
}

// The refusal for a pid that pidfd_open(2) would not open. A thread other than a thread group's
// leader gives ENOENT (EINVAL before Linux 6.9).
Verdict open_failure(int error) {
    switch (error) {
    case -ESRCH:
        return {-ESRCH, proto::kNoSuchProcess};
    case -ENOENT:
    case -EINVAL:
        return {-EINVAL, proto::kNotAProcess};
    case -EMFILE:
    case -ENFILE:
    case -ENOMEM:
        return {error, proto::kOutOfFds};
    default:
        return {error, proto::kInternal};
    }
}

} // namespace

Server::Server(const Options &options) : options_(options), start_ns_(monotonic_ns()) {
    // Raise the soft fd limit to the hard one: every watched process costs one fd.
    struct rlimit rl {};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        // Keep fds in reserve for connections, passed fds and /proc reads, so that a client
        // can still be told "out of fds" when watched processes have taken the rest; and for
        // orphand's own (standard streams, epoll sets, timers, signalfd, listener, log).
        constexpr rlim_t kOwnFds = 16;
        rlim_t reserve = std::min<rlim_t>(1024, rl.rlim_cur / 4) + kOwnFds;
        options_.limits.max_processes = static_cast<uint32_t>(
            std::min<rlim_t>(rl.rlim_cur > reserve ? rl.rlim_cur - reserve : 1,
                             std::numeric_limits<uint32_t>::max()));
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    ::sigprocmask(SIG_BLOCK, &mask, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    signal_fd_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd_)
        fail(errno, "signalfd");
    if (auto r = loop_.add(signal_fd_.get(), EPOLLIN, &signal_source_); !r)
        fail(-r.code(), r.error().what);

    UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!timer)
        fail(errno, "timerfd_create");
    if (auto r = loop_.add(timer.get(), EPOLLIN, &timer_source_); !r)
        fail(-r.code(), r.error().what);
    registry_ =
        std::make_unique<Registry>(loop_, std::move(timer), &timer_source_, options_.limits);

    notifier_ = std::make_unique<Notifier>(loop_, *registry_, &watchdog_source_, &status_source_);

    closer_ = std::make_unique<FdCloser>(loop_, &closer_source_);
    scopes_ = std::make_unique<ScopeWorker>(loop_, &scopes_source_);
    registry_->set_scope_worker(scopes_.get());
    Listener listener = acquire_listener(options_.socket_path);
    listener_ = std::move(listener.fd);
    socket_activated_ = listener.socket_activated;
    bound_path_ = std::move(listener.bound_path);
    if (auto r = loop_.add(listener_.get(), EPOLLIN, &listener_source_); !r)
        fail(-r.code(), r.error().what);
    connections_ =
        std::make_unique<Connections>(loop_, *closer_, listener_, listener_source_, options_,
                                      input_limiter_, static_cast<RequestHandler &>(*this));
    for (const auto &o : options_.obsolete)
        log_fmt(LOG_WARNING, "ignoring {}: bindings are kept in the binding log (--state-dir)", o);
    drop_fd_store(listener.passed_fds);
    std::string state_dir = options_.state_dir;
    if (options_.state == Options::StateChoice::Default) {
        // systemd sets it for RuntimeDirectory=, several directories separated by ':'.
        const char *runtime = std::getenv("RUNTIME_DIRECTORY");
        std::string_view dirs = runtime ? runtime : "";
        state_dir = std::string(dirs.substr(0, dirs.find(':')));
    }
    if (!state_dir.empty() && options_.state != Options::StateChoice::None)
        binding_log_ = BindingLog::start(state_dir, *registry_);
    // The restore's kills are all out: describe them now, before any client is served.
    registry_->describe(SIZE_MAX);
}

Server::~Server() {
    // Bindings torn down at exit stay in the binding log: the next start restores them.
    registry_->set_store(nullptr);
    connections_.reset();
    if (!bound_path_.empty())
        ::unlink(bound_path_.c_str());
}

int Server::run() {
    const auto &k = kernel_features();
    log_fmt(LOG_INFO,
            "orphand {} listening on {} ({}); SO_PEERPIDFD {}, PIDFD_GET_INFO {}, exit status "
            "{}; default policy {}, {}",
            ORPHAND_VERSION,
            socket_activated_ ? std::string("the socket systemd passed") : quoted(bound_path_),
            socket_activated_ ? "socket-activated" : "bound", k.peer_pidfd ? "yes" : "no",
            k.pidfd_info ? "yes" : "no", k.exit_info ? "yes" : "no",
            signal_name(options_.policy.signal),
            options_.policy.grace_ms == proto::kGraceNever
                ? std::string("no SIGKILL escalation")
                : fmt::format("then SIGKILL after {} ms", options_.policy.grace_ms));
    if (!binding_log_)
        log_fmt(LOG_INFO, "no binding log: bindings will not survive a restart or a crash of "
                          "orphand (see --state-dir)");
    notifier_->ready();

    while (!stop_) {
        // Blocks when nothing is pending; polls while new parents wait to be named or STATUS=
        // is out of date, which is done as soon as the loop finds nothing else to do. Kills
        // wait to be described until their time (Registry::describe_due_ns).
        int timeout = -1;
        if (registry_->has_unnamed() || (binding_log_ && binding_log_->has_unidentified()) ||
            notifier_->status_waiting() || connections_->has_ready()) {
            timeout = 0;
        } else if (uint64_t due = registry_->describe_due_ns()) {
            uint64_t now = monotonic_ns();
            timeout = due <= now ? 0 : static_cast<int>((due - now + 999'999) / 1'000'000);
        }
        if (!dispatch(timeout))
            return 1;
    }
    notifier_->stopping();
    // Scope kills still queued are carried out (their searches cut short), then every kill
    // already sent is logged before orphand goes.
    if (!scopes_->finish(10'000))
        log_fmt(LOG_WARNING, "a scope kill is still running as orphand stops");
    registry_->scopes_done();
    registry_->describe(SIZE_MAX);
    log_fmt(LOG_INFO, "stopping; {} bindings were live", registry_->stats().bindings);
    return 0;
}

bool Server::dispatch(int timeout_ms) {
    std::array<struct epoll_event, 256> events;
    int n = loop_.wait(events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0) {
        if (n == -EINTR)
            return true;
        log_fmt(LOG_ERR, "epoll_wait failed: {}", std::strerror(-n));
        return false;
    }
    if (n == 0) {
        registry_->name_parents();
        if (binding_log_)
            binding_log_->identify();
        notifier_->update_status();
    }
    // The registry's events first: every kill of the batch is out before anything else runs
    // (requests, logging).
    registry_->handle_events(events.data(), n);
    for (int i = 0; i < n; ++i) {
        auto *source = static_cast<Source *>(events[i].data.ptr);
        switch (source->kind) {
        case Source::Kind::Process:
        case Source::Kind::Timer:
        case Source::Kind::Children:
            break; // the registry's
        case Source::Kind::Connection:
            connections_->on_connection(static_cast<Connection *>(source), events[i].events);
            break;
        case Source::Kind::Listener:
            connections_->on_listener();
            break;
        case Source::Kind::Signal:
            on_signal();
            break;
        case Source::Kind::Closer:
            connections_->on_closer();
            break;
        case Source::Kind::Scopes:
            registry_->scopes_done();
            break;
        case Source::Kind::Status:
            notifier_->on_status_timer();
            break;
        case Source::Kind::Watchdog:
            notifier_->on_watchdog();
            break;
        }
    }
    // Kills are described a few at a time, between batches of events, once their children have
    // had time to die: a fan-out's journal entries never hold up a later kill or a
    // registration, nor compete with the children for the CPUs.
    if (uint64_t due = registry_->describe_due_ns(); due && due <= monotonic_ns())
        registry_->describe(kDescribePerTurn);
    // Processes are identified in the binding log when the loop is idle, or when a flood of
    // registrations leaves it no idle turn for a while.
    if (binding_log_ && binding_log_->unidentified() >= BindingLog::kMaxUnidentified)
        binding_log_->identify();
    // Connections that yielded or had more to read than one turn's worth go on now, after
    // everyone else's events.
    connections_->resume_ready();
    bool freed = connections_->collect();
    // A process that exited closed its pidfd: a listener paused on EMFILE may accept again.
    freed |= registry_->collect() > 0;
    if (freed)
        connections_->fds_freed();
    // glibc keeps freed heap pages: after a burst (a flood of clients, a kill storm) the
    // daemon would stay at its peak size. Give them back once most of the peak is gone.
    auto s = registry_->stats();
    size_t live = connections_->size() + s.parents + s.children;
    live_high_ = std::max(live_high_, live);
    // Also once nothing is left at all, however small the burst was: an idle daemon is back at
    // its size at start.
    if ((live == 0 && live_high_ > 0) ||
        (live_high_ - live >= kTrimAfter && live <= live_high_ / 2)) {
        ::malloc_trim(0);
        live_high_ = live;
    }
    return true;
}

void Server::on_signal() {
    struct signalfd_siginfo si {};
    while (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            stop_ = true;
    }
}

void Server::handle_request(Connection *c, const unsigned char *msg, size_t size, FdBatch *fds) {
    DecodedRequest r = decode_request(msg, size, options_.policy, fds);
    if (r.legacy)
        handle_legacy(c, r, fds);
    else
        handle_v1(c, r, fds);
}

void Server::handle_legacy(Connection *c, const DecodedRequest &r, FdBatch *fds) {
    switch (r.kind) {
    case DecodedRequest::Kind::Ping:
        connections_->reply(c, &r.record, sizeof(r.record));
        return;
    case DecodedRequest::Kind::Register: {
        Verdict v = r.error.error < 0 ? r.error : do_register(c, r.parent, r.child, r.policy, fds);
        if (v.error < 0)
            log_refusal(c, "REGISTER", r.parent, r.child, v);
        return;
    }
    case DecodedRequest::Kind::Unregister: {
        Verdict v = r.error.error < 0 ? r.error : do_unregister(c, r.parent, r.child);
        if (v.error < 0)
            log_refusal(c, "UNREGISTER", r.parent, r.child, v);
        return;
    }
    case DecodedRequest::Kind::Hello: {
        c->v1 = true;
        c->version = r.version;
        c->framer.set_size(sizeof(proto::Request));
        proto::Reply rep{};
        rep.action = proto::kHello;
        rep.count = c->version;
        connections_->reply(c, &rep, sizeof(rep));
        return;
    }
    default:
        log_refusal(c, "record", r.parent, r.child, r.error);
        return;
    }
}

void Server::handle_v1(Connection *c, const DecodedRequest &r, FdBatch *fds) {
    const proto::Request &q = r.request;
    if (r.error.reason == proto::kBadPolicy) {
        send_reply(c, q, r.error);
        return;
    }
    switch (r.kind) {
    case DecodedRequest::Kind::Ping:
    case DecodedRequest::Kind::Hello:
        send_reply(c, q, {0, proto::kOk}, r.kind == DecodedRequest::Kind::Hello ? c->version : 0);
        return;
    case DecodedRequest::Kind::Register: {
        Verdict v = r.error.error < 0 ? r.error : do_register(c, r.parent, r.child, r.policy, fds);
        if (v.error < 0)
            log_refusal(c, "REGISTER", r.parent, r.child, v);
        send_reply(c, q, v);
        return;
    }
    case DecodedRequest::Kind::Unregister:
        send_reply(c, q, r.error.error < 0 ? r.error : do_unregister(c, r.parent, r.child));
        return;
    case DecodedRequest::Kind::List:
        list(c, q);
        return;
    case DecodedRequest::Kind::Status:
        status(c, q);
        return;
    default:
        log_refusal(c, "request", r.parent, r.child, r.error);
        send_reply(c, q, r.error);
        return;
    }
}

Verdict Server::do_register(Connection *c, uint32_t parent_pid, uint32_t child_pid,
                            const Policy &policy, FdBatch *fds) {
    // decode_request has checked the fd count and the pids.
    size_t nfds = fds ? fds->count : 0;
    // Raw pids are only meaningful from a client in our pid namespace. The namespace is looked
    // up only when a request depends on it: pidfds that match the pids in the record (the
    // shim's case) do not.
    if (nfds == 0 && peer_foreign(c->peer, last_peer_))
        return {-EXDEV, proto::kForeignPidNamespace};

    // Checks a passed pidfd against the pid the client named. A client in another pid
    // namespace names pids as it sees them; then any level of the process's pids matches.
    auto matches = [&](const PidFd &p, uint32_t pid) {
        if (static_cast<uint32_t>(p.pid()) == pid)
            return true;
        if (!peer_foreign(c->peer, last_peer_))
            return false;
        std::array<pid_t, 8> levels{};
        int n = pidfd_nspids(p.fd(), levels);
        for (int i = 0; i < n; ++i)
            if (static_cast<uint32_t>(levels[i]) == pid)
                return true;
        return false;
    };
    auto adopt = [&](size_t index, uint32_t pid, Verdict *v, ProcessInfo *info) -> PidFd {
        if (fds->not_pidfd[index]) {
            *v = {-EBADF, proto::kNotPidfd};
            return {};
        }
        auto p = PidFd::adopt(std::move(fds->fds[index]), info);
        if (!p) {
            *v = p.code() == -ESRCH    ? Verdict{-ESRCH, proto::kNoSuchProcess}
                 : p.code() == -EINVAL ? Verdict{-EINVAL, proto::kNotAProcess}
                                       : Verdict{-EBADF, proto::kNotPidfd};
            return {};
        }
        if (!matches(*p, pid)) {
            *v = {-EINVAL, proto::kPidfdMismatch};
            return {};
        }
        return std::move(*p);
    };

    Verdict v;
    PidFd child;
    // One PIDFD_GET_INFO (6.13+) gives the pid, the parent pid and the credentials.
    ProcessInfo info;
    if (nfds >= 1) {
        child = adopt(0, child_pid, &v, &info);
        if (!child.valid())
            return v;
    } else {
        auto p = PidFd::open(static_cast<pid_t>(child_pid));
        if (!p)
            return open_failure(p.code());
        child = std::move(*p);
        if (kernel_features().pidfd_info && pidfd_get_info(child.fd(), &info) < 0)
            info = {};
    }
    // Kernel threads are kthreadd (pid 2) and its children; /proc confirms the flag.
    bool maybe_kthread = !info.have_pid || info.ppid == 2;
    static const pid_t self = ::getpid();
    BindTarget target;
    target.pid = child.pid();
    target.kernel_thread =
        maybe_kthread && !is_protected(target.pid, self, false) && is_kernel_thread(target.pid);
    // kill(2)'s rule on the child's credentials, unless privileged (authorize_bind).
    if (info.have_creds) {
        target.creds = {info.ruid, info.euid, info.suid};
        target.creds_known = true;
    } else if (!is_protected(target.pid, self, target.kernel_thread)) {
        if (auto r = child.creds()) {
            target.creds = *r;
            target.creds_known = true;
        }
    }
    // Whether the client may signal any process is part of the binding even when it binds its
    // own child: that child may change its uid before the kill, and the registrant's right to
    // kill it then is what it had at registration. Read once per connection.
    Registrant who{c->peer.uid, c->peer.pid, peer_privileged(c->peer)};
    if (Verdict auth = authorize_bind(who, target, self); auth.error < 0)
        return auth;

    PidFd parent;
    if (nfds >= 2) {
        parent = adopt(1, parent_pid, &v, nullptr);
        if (!parent.valid())
            return v;
    } else if (static_cast<pid_t>(parent_pid) == c->peer.pid ||
               (peer_foreign(c->peer, last_peer_) &&
                static_cast<pid_t>(parent_pid) == c->peer.inner_pid)) {
        // The client itself, through the connection's pidfd: no pid race even if it is already
        // gone. A client in another pid namespace can name no other parent without a pidfd.
        if (!c->peer.pidfd.valid())
            return {-ESRCH, proto::kNoSuchProcess};
        parent = PidFd(c->peer.pid, UniqueFd(::fcntl(c->peer.pidfd.fd(), F_DUPFD_CLOEXEC, 3)));
        if (!parent.valid())
            return {-errno, proto::kOutOfFds};
    } else if (peer_foreign(c->peer, last_peer_)) {
        return {-EXDEV, proto::kForeignPidNamespace};
    } else {
        auto p = PidFd::open(static_cast<pid_t>(parent_pid));
        if (p) {
            parent = std::move(*p);
        } else if (p.code() == -ESRCH) {
            // No such process: it already died. The binding is acted on at once.
            parent = PidFd(static_cast<pid_t>(parent_pid), UniqueFd());
        } else {
            // Anything else says nothing of the parent's death: a kill on a guess would be a
            // kill by mistake.
            return open_failure(p.code());
        }
    }
    return registry_->add(std::move(parent), std::move(child), policy, who);
}

Verdict Server::do_unregister(Connection *c, uint32_t parent_pid, uint32_t child_pid) {
    // decode_request has checked the pids.
    if (peer_foreign(c->peer, last_peer_))
        return {-EXDEV, proto::kForeignPidNamespace};
    return registry_->remove(static_cast<pid_t>(parent_pid), static_cast<pid_t>(child_pid),
                             Registrant{c->peer.uid, c->peer.pid, peer_privileged(c->peer)});
}

void Server::log_refusal(Connection *c, const char *what, uint32_t parent, uint32_t child,
                         Verdict v) {
    if (v.reason == proto::kNoSuchProcess) {
        // A child that exited before its registration was read: an ordinary race (a shell
        // running /bin/true), nothing to warn about.
        log_fmt(LOG_DEBUG, "ignored {} (parent {}, child {}) from pid {}: child already gone", what,
                parent, child, c->peer.pid);
        return;
    }
    // Client-controlled input: a per-connection cap and a global rate keep a flood of junk
    // from flooding the log.
    if (++c->bad_records > 3 || !input_limiter_.allow())
        return;
    uint64_t suppressed = input_limiter_.take_suppressed();
    log_entry(
        LOG_WARNING, msgid::kRefused,
        fmt::format("refused {} (parent {}, child {}) from pid {} uid {}: {}{}", what, parent,
                    child, c->peer.pid, c->peer.uid, proto::reason_text(v.reason),
                    suppressed ? fmt::format(" ({} similar messages suppressed)", suppressed) : ""),
        {{"ORPHAND_PARENT_PID", std::to_string(parent)},
         {"ORPHAND_CHILD_PID", std::to_string(child)},
         {"ORPHAND_REGISTRANT_UID", std::to_string(c->peer.uid)},
         {"ORPHAND_REGISTRANT_PID", std::to_string(c->peer.pid)},
         {"ORPHAND_REASON", proto::reason_text(v.reason)},
         {"ERRNO", std::to_string(-v.error)}});
}

void Server::send_reply(Connection *c, const proto::Request &q, Verdict v, uint32_t count) {
    proto::Reply r{};
    r.seq = q.seq;
    r.action = q.action;
    r.error = v.error;
    r.reason = v.reason;
    r.count = count;
    connections_->reply(c, &r, sizeof(r));
}

void Server::list(Connection *c, const proto::Request &q) {
    // Children that have exited are not listed, even those whose exits wait to be retired.
    registry_->retire_exited_children();
    std::vector<proto::BindingInfo2> infos;
    infos.reserve(registry_->stats().bindings);
    uint64_t now = monotonic_ns();
    // Unprivileged clients see their own bindings only: who registered what, and which of
    // another user's processes are watched, is not theirs to know.
    Registrant who{c->peer.uid, c->peer.pid, peer_privileged(c->peer)};
    registry_->for_each([&](const Binding &b) {
        if (!may_see(who, b.registrant.uid))
            return;
        proto::BindingInfo2 i2{};
        i2.scope = b.policy.scope;
        proto::BindingInfo &i = i2.info;
        i.parent_pid = static_cast<uint32_t>(b.parent->pidfd.pid());
        i.child_pid = static_cast<uint32_t>(b.child->pidfd.pid());
        i.registrant_uid = b.registrant.uid;
        i.registrant_pid = static_cast<uint32_t>(b.registrant.pid);
        i.signal = b.policy.signal;
        i.grace_ms = b.policy.grace_ms;
        i.age_ms = (now - b.created_ns) / 1000000u;
        std::snprintf(i.parent_comm, sizeof(i.parent_comm), "%s", registry_->name_of(b.parent));
        std::snprintf(i.child_comm, sizeof(i.child_comm), "%s", registry_->name_of(b.child));
        infos.push_back(i2);
    });
    send_reply(c, q, {0, proto::kOk}, static_cast<uint32_t>(infos.size()));
    if (c->version >= proto::kVersionScopes) {
        connections_->reply(c, infos.data(), infos.size() * sizeof(proto::BindingInfo2));
        return;
    }
    std::vector<proto::BindingInfo> v1;
    v1.reserve(infos.size());
    for (const auto &i2 : infos)
        v1.push_back(i2.info);
    connections_->reply(c, v1.data(), v1.size() * sizeof(proto::BindingInfo));
}

void Server::status(Connection *c, const proto::Request &q) {
    registry_->retire_exited_children();
    auto s = registry_->stats();
    proto::StatusInfo info{};
    std::snprintf(info.version, sizeof(info.version), "%s", ORPHAND_VERSION);
    info.uptime_ms = (monotonic_ns() - start_ns_) / 1000000u;
    if (peer_privileged(c->peer)) {
        info.kills = s.kills;
        info.parents = s.parents;
        info.children = s.children;
        info.bindings = s.bindings;
        info.connections = static_cast<uint32_t>(connections_->size());
    } else {
        // What others have bound, and how busy the daemon is with them, is not for an
        // unprivileged client to learn (orphand(8), SECURITY): it gets its own figures.
        auto mine = registry_->stats_of(c->peer.uid);
        info.kills = mine.kills;
        info.bindings = mine.bindings;
        info.connections = connections_->of_uid(c->peer.uid);
        info.scope = proto::kStatusOwn;
    }
    info.features = features_mask() | (binding_log_ ? proto::kFeatureDurable : 0u);
    info.daemon_pid = static_cast<uint32_t>(::getpid());
    info.default_signal = static_cast<uint32_t>(options_.policy.signal);
    info.default_grace_ms = options_.policy.grace_ms;
    send_reply(c, q, {0, proto::kOk}, 1);
    connections_->reply(c, &info, sizeof(info));
}

} // namespace orphand
