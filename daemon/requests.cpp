// SPDX-License-Identifier: MIT
// Requests: decoded requests carried out: REGISTER's processes resolved and authorized,
// bindings added and removed, LIST and STATUS answered, refusals logged.
#include "requests.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "authorization.hpp"
#include "orphand_config.h"
#include "scope.hpp"

namespace orphand {
namespace {

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

Requests::Requests(Registry &registry, const Options &options, LogLimiter &input_limiter,
                   uint64_t start_ns, bool durable)
    : registry_(&registry), options_(options), input_limiter_(input_limiter), start_ns_(start_ns),
      durable_(durable) {}

void Requests::handle_request(Connection *c, const unsigned char *msg, size_t size, FdBatch *fds) {
    DecodedRequest r = decode_request(msg, size, options_.policy, fds);
    if (r.legacy)
        handle_legacy(c, r, fds);
    else
        handle_v1(c, r, fds);
}

void Requests::handle_datagram(Peer &peer, const unsigned char *msg, size_t size, FdBatch *fds) {
    if (size != sizeof(proto::Record)) {
        std::string what = fmt::format("a datagram of {} bytes, not one record,", size);
        log_refusal(peer, nullptr, what.c_str(), 0, 0, {-EINVAL, proto::kUnknownAction});
        return;
    }
    DecodedRequest r = decode_request(msg, size, options_.policy, fds);
    Verdict v = r.error;
    if (r.kind == DecodedRequest::Kind::Register && v.error == 0)
        v = do_register(peer, r.parent, r.child, r.policy, fds);
    else if (r.kind == DecodedRequest::Kind::Unregister && v.error == 0)
        v = do_unregister(peer, r.parent, r.child);
    else if (r.kind != DecodedRequest::Kind::Register && r.kind != DecodedRequest::Kind::Unregister)
        v = {-EINVAL, proto::kUnknownAction}; // PING and HELLO need a connection to answer on
    if (v.error < 0)
        log_refusal(peer, nullptr,
                    r.kind == DecodedRequest::Kind::Register     ? "REGISTER"
                    : r.kind == DecodedRequest::Kind::Unregister ? "UNREGISTER"
                                                                 : "record",
                    r.parent, r.child, v);
}

void Requests::handle_legacy(Connection *c, const DecodedRequest &r, FdBatch *fds) {
    switch (r.kind) {
    case DecodedRequest::Kind::Ping:
        connections_->reply(c, &r.record, sizeof(r.record));
        return;
    case DecodedRequest::Kind::Register: {
        Verdict v =
            r.error.error < 0 ? r.error : do_register(c->peer, r.parent, r.child, r.policy, fds);
        if (v.error < 0)
            log_refusal(c->peer, &c->bad_records, "REGISTER", r.parent, r.child, v);
        return;
    }
    case DecodedRequest::Kind::Unregister: {
        Verdict v = r.error.error < 0 ? r.error : do_unregister(c->peer, r.parent, r.child);
        if (v.error < 0)
            log_refusal(c->peer, &c->bad_records, "UNREGISTER", r.parent, r.child, v);
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
        log_refusal(c->peer, &c->bad_records, "record", r.parent, r.child, r.error);
        return;
    }
}

void Requests::handle_v1(Connection *c, const DecodedRequest &r, FdBatch *fds) {
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
        Verdict v =
            r.error.error < 0 ? r.error : do_register(c->peer, r.parent, r.child, r.policy, fds);
        if (v.error < 0)
            log_refusal(c->peer, &c->bad_records, "REGISTER", r.parent, r.child, v);
        send_reply(c, q, v);
        return;
    }
    case DecodedRequest::Kind::Unregister:
        send_reply(c, q, r.error.error < 0 ? r.error : do_unregister(c->peer, r.parent, r.child));
        return;
    case DecodedRequest::Kind::List:
        list(c, q);
        return;
    case DecodedRequest::Kind::Status:
        status(c, q);
        return;
    default:
        log_refusal(c->peer, &c->bad_records, "request", r.parent, r.child, r.error);
        send_reply(c, q, r.error);
        return;
    }
}

Verdict Requests::do_register(Peer &peer, uint32_t parent_pid, uint32_t child_pid,
                              const Policy &policy, FdBatch *fds) {
    // decode_request has checked the fd count and the pids.
    size_t nfds = fds ? fds->count : 0;
    // Raw pids are only meaningful from a client in our pid namespace. The namespace is looked
    // up only when a request depends on it: pidfds that match the pids in the record (the
    // shim's case) do not.
    if (nfds == 0 && peer_foreign(peer, last_peer_))
        return {-EXDEV, proto::kForeignPidNamespace};

    // Checks a passed pidfd against the pid the client named. A client in another pid
    // namespace names pids as it sees them; then any level of the process's pids matches.
    auto matches = [&](const PidFd &p, uint32_t pid) {
        if (static_cast<uint32_t>(p.pid()) == pid)
            return true;
        if (!peer_foreign(peer, last_peer_))
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
    // The client's privilege is read (once per connection) only where it decides: a child that
    // is neither protected nor the client's own. A request refused for another reason must not
    // fix it for the connection's later requests.
    Registrant who{peer.uid, peer.pid, false};
    Verdict auth = authorize_bind(who, target, self);
    if (auth.reason == proto::kNotPermitted) {
        who.privileged = peer_privileged(peer);
        auth = authorize_bind(who, target, self);
    }
    if (auth.error < 0)
        return auth;

    PidFd parent;
    bool parent_is_peer = false;
    if (nfds >= 2) {
        parent = adopt(1, parent_pid, &v, nullptr);
        if (!parent.valid())
            return v;
    } else if (static_cast<pid_t>(parent_pid) == peer.pid ||
               (peer_foreign(peer, last_peer_) &&
                static_cast<pid_t>(parent_pid) == peer.inner_pid)) {
        // The client itself, through the connection's pidfd: no pid race even if it is already
        // gone. A client in another pid namespace can name no other parent without a pidfd.
        if (peer.gone)
            parent = PidFd(peer.pid, UniqueFd()); // it already died: acted on at once
        else if (!peer.pidfd.valid())
            return {-ESRCH, proto::kNoSuchProcess};
        else
            parent_is_peer = true; // its pidfd is taken below, once nothing can be refused
    } else if (peer_foreign(peer, last_peer_)) {
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
    // Whether the client may signal any process is part of the binding even when it binds its
    // own child: that child may change its uid before the kill, and the registrant's right to
    // kill it then is what it had at registration.
    who.privileged = peer_privileged(peer);
    if (parent_is_peer) {
        // A datagram's sender is known for that datagram alone: its pidfd is taken, not copied.
        if (peer.once)
            parent = std::move(peer.pidfd);
        else
            parent = PidFd(peer.pid, UniqueFd(::fcntl(peer.pidfd.fd(), F_DUPFD_CLOEXEC, 3)));
        if (!parent.valid())
            return {-errno, proto::kOutOfFds};
    }
    return registry_->add(std::move(parent), std::move(child), policy, who);
}

Verdict Requests::do_unregister(Peer &peer, uint32_t parent_pid, uint32_t child_pid) {
    // decode_request has checked the pids.
    if (peer_foreign(peer, last_peer_))
        return {-EXDEV, proto::kForeignPidNamespace};
    return registry_->remove(static_cast<pid_t>(parent_pid), static_cast<pid_t>(child_pid),
                             Registrant{peer.uid, peer.pid, peer_privileged(peer)});
}

void Requests::log_refusal(const Peer &peer, uint32_t *bad_records, const char *what,
                           uint32_t parent, uint32_t child, Verdict v) {
    if (v.reason == proto::kNoSuchProcess) {
        // A child that exited before its registration was read: an ordinary race (a shell
        // running /bin/true), nothing to warn about.
        log_fmt(LOG_DEBUG, "ignored {} (parent {}, child {}) from pid {}: child already gone", what,
                parent, child, peer.pid);
        return;
    }
    // Client-controlled input: a per-connection cap and a global rate keep a flood of junk
    // from flooding the log.
    if ((bad_records && ++*bad_records > 3) || !input_limiter_.allow())
        return;
    uint64_t suppressed = input_limiter_.take_suppressed();
    log_entry(
        LOG_WARNING, msgid::kRefused,
        fmt::format("refused {} (parent {}, child {}) from pid {} uid {}: {}{}", what, parent,
                    child, peer.pid, peer.uid, proto::reason_text(v.reason),
                    suppressed ? fmt::format(" ({} similar messages suppressed)", suppressed) : ""),
        {{"ORPHAND_PARENT_PID", std::to_string(parent)},
         {"ORPHAND_CHILD_PID", std::to_string(child)},
         {"ORPHAND_REGISTRANT_UID", std::to_string(peer.uid)},
         {"ORPHAND_REGISTRANT_PID", std::to_string(peer.pid)},
         {"ORPHAND_REASON", proto::reason_text(v.reason)},
         {"ERRNO", std::to_string(-v.error)}});
}

void Requests::send_reply(Connection *c, const proto::Request &q, Verdict v, uint32_t count) {
    proto::Reply r{};
    r.seq = q.seq;
    r.action = q.action;
    r.error = v.error;
    r.reason = v.reason;
    r.count = count;
    connections_->reply(c, &r, sizeof(r));
}

void Requests::list(Connection *c, const proto::Request &q) {
    // Children found exited are not listed (unless they exited after a sweep made lately).
    registry_->sweep_if_due();
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

void Requests::status(Connection *c, const proto::Request &q) {
    registry_->sweep_if_due();
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
    info.features = features_mask() | (durable_ ? proto::kFeatureDurable : 0u);
    info.daemon_pid = static_cast<uint32_t>(::getpid());
    info.default_signal = static_cast<uint32_t>(options_.policy.signal);
    info.default_grace_ms = options_.policy.grace_ms;
    send_reply(c, q, {0, proto::kOk}, 1);
    connections_->reply(c, &info, sizeof(info));
}

} // namespace orphand
