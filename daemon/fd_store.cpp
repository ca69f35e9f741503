// SPDX-License-Identifier: MIT
// Bindings kept in systemd's file descriptor store, and restored from it at start-up.
#include "fd_store.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "send_fds.hpp"

namespace orphand {
namespace {

// Inode of a pidfd: unique per process on pidfs (Linux 6.9); the same for every pidfd before.
uint64_t inode_of(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

StoredBinding describe(const Binding &b) {
    StoredBinding s;
    s.parent_pid = b.parent->pidfd.pid();
    s.parent_inode = inode_of(b.parent->pidfd.fd());
    s.child_pid = b.child->pidfd.pid();
    s.child_inode = inode_of(b.child->pidfd.fd());
    s.policy = b.policy;
    s.registrant = b.registrant;
    s.parent_comm = b.parent->comm.data();
    return s;
}

// A command name in hex: FDNAME allows printable ASCII without ':', and names may hold any byte.
std::string hex(std::string_view text) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : text) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

bool unhex(std::string_view text, std::string *out) {
    if (text.size() % 2 || text.size() > 2 * (proto::kCommLen - 1))
        return false;
    auto value = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    };
    out->clear();
    for (size_t i = 0; i < text.size(); i += 2) {
        int hi = value(text[i]), lo = value(text[i + 1]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return false;
        *out += static_cast<char>(hi << 4 | lo);
    }
    return true;
}

} // namespace

std::string fd_store_name(const StoredBinding &b) {
    char name[256];
    std::snprintf(name, sizeof(name),
                  "b1.p%d.i%" PRIu64 ".c%d.j%" PRIu64 ".s%d.g%u.u%u.r%d.x%d.n%s", b.parent_pid,
                  b.parent_inode, b.child_pid, b.child_inode, b.policy.signal, b.policy.grace_ms,
                  b.registrant.uid, b.registrant.pid, b.registrant.privileged ? 1 : 0,
                  hex(b.parent_comm.substr(0, proto::kCommLen - 1)).c_str());
    return name;
}

bool parse_fd_store_name(std::string_view name, StoredBinding *out) {
    if (name.size() > 255)
        return false;
    std::string text(name);
    StoredBinding b;
    int privileged = 0, end = 0;
    unsigned long long pino = 0, cino = 0;
    if (std::sscanf(text.c_str(), "b1.p%d.i%llu.c%d.j%llu.s%d.g%u.u%u.r%d.x%d.n%n", &b.parent_pid,
                    &pino, &b.child_pid, &cino, &b.policy.signal, &b.policy.grace_ms,
                    &b.registrant.uid, &b.registrant.pid, &privileged, &end) != 9 ||
        end <= 0 || !unhex(std::string_view(text).substr(static_cast<size_t>(end)), &b.parent_comm))
        return false;
    if (b.parent_pid <= 0 || b.child_pid <= 0 || b.parent_pid == b.child_pid ||
        b.policy.signal < 1 || b.policy.signal >= NSIG || (privileged != 0 && privileged != 1))
        return false;
    b.parent_inode = pino;
    b.child_inode = cino;
    b.registrant.privileged = privileged == 1;
    // The name is canonical: anything that does not print back the same is not ours.
    if (fd_store_name(b) != text)
        return false;
    *out = b;
    return true;
}

Result<std::unique_ptr<FdStore>> FdStore::connect(uint32_t max_fds, EventLoop &loop,
                                                  uint32_t delay_ms) {
    const char *path = std::getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@'))
        return Error{-ENOENT, "NOTIFY_SOCKET is not set"};
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    size_t len = std::strlen(path);
    if (len >= sizeof(addr.sun_path))
        return Error{-ENAMETOOLONG, "NOTIFY_SOCKET"};
    std::memcpy(addr.sun_path, path, len);
    if (path[0] == '@')
        addr.sun_path[0] = '\0'; // abstract namespace
    socklen_t addr_len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + len +
                                                (path[0] == '@' ? 0 : 1));
    // One socket for the daemon's lifetime rather than one per message (sd_pid_notify's way):
    // a registration costs one sendmsg. Blocking, so that a busy PID 1 slows registrations down
    // instead of losing entries; the timeout keeps a stuck PID 1 from stopping the loop.
    UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return Error{-errno, "socket"};
    struct timeval timeout = {2, 0};
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), addr_len) < 0)
        return Error{-errno, "connect NOTIFY_SOCKET"};
    UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!timer)
        return Error{-errno, "timerfd_create"};
    std::unique_ptr<FdStore> store(
        new FdStore(std::move(fd), max_fds, loop, std::move(timer), uint64_t{delay_ms} * 1000000u));
    if (auto r = loop.add(store->timer_.get(), EPOLLIN, &store->timer_source_); !r)
        return r.error();
    return store;
}

Result<void> FdStore::notify(std::string_view text, const int *fds, size_t nfds) {
    // systemd learns our pid from the credentials the kernel attaches (PID 1 sets SO_PASSCRED).
    if (send_with_fds(socket_.get(), text.data(), text.size(), fds, nfds, MSG_NOSIGNAL) < 0)
        return Error{-errno, "sendmsg NOTIFY_SOCKET"};
    return {};
}

namespace {

// True if `p` takes part in a binding other than `b`, whose entry may hold p's pidfd already.
bool in_other_binding(const Process &p, const Binding &b) {
    if (p.children && (p.children != &b || b.next_child))
        return true;
    return p.parents && (p.parents != &b || b.next_parent);
}

} // namespace

int FdStore::entry_fd(const Process &p, const Binding &b, UniqueFd *copy) {
    // systemd drops an fd whose open file description it already stores (a process's pidfd
    // sent with a second binding): such an entry would come back incomplete. Each entry gets
    // its own description then, from pidfd_open; it names the same process if the original
    // pidfd has not exited after the open (the pid cannot have been reused before that).
    if (!in_other_binding(p, b))
        return p.pidfd.fd();
    copy->reset(sys_pidfd_open(p.pidfd.pid(), 0));
    if (!*copy || p.pidfd.exited()) {
        errno = *copy ? ESRCH : errno;
        return -1;
    }
    return copy->get();
}

void FdStore::binding_added(const Binding &b) {
    if (restoring_)
        return; // its entry is already in the store
    if (delay_ns_ == 0) {
        store(b);
        return;
    }
    waiting_.insert(&b);
    queue_.push_back({&b, b.created_ns});
    rearm();
}

void FdStore::rearm() {
    uint64_t next = queue_.empty() ? 0 : queue_.front().created_ns + delay_ns_;
    if (next == armed_ns_)
        return;
    if (arm_timer_at(timer_.get(), next))
        armed_ns_ = next;
}

void FdStore::timer_fired() {
    uint64_t expirations;
    (void)!::read(timer_.get(), &expirations, sizeof(expirations));
    uint64_t now = monotonic_ns();
    while (!queue_.empty() && queue_.front().created_ns + delay_ns_ <= now) {
        Waiting w = queue_.front();
        queue_.pop_front();
        // A queued binding that ended is no longer in waiting_; its address may belong to a
        // newer binding by now, which the creation time tells apart.
        if (waiting_.count(w.binding) && w.binding->created_ns == w.created_ns) {
            waiting_.erase(w.binding);
            store(*w.binding);
        }
    }
    armed_ns_ = ~uint64_t{0}; // the timer has expired: program the next deadline (or none)
    rearm();
}

void FdStore::flush() {
    for (const Waiting &w : queue_) {
        if (waiting_.count(w.binding) && w.binding->created_ns == w.created_ns) {
            waiting_.erase(w.binding);
            store(*w.binding);
        }
    }
    queue_.clear();
    rearm();
}

void FdStore::store(const Binding &b) {
    const char *why = nullptr;
    int err = 0;
    if (stored_fds_ + 2 > max_fds_) {
        why = "systemd's fd store is full (FileDescriptorStoreMax=, --fd-store)";
    } else {
        std::string text = "FDSTORE=1\nFDPOLL=0\nFDNAME=" + fd_store_name(describe(b));
        UniqueFd parent_copy, child_copy;
        int fds[2] = {entry_fd(*b.parent, b, &parent_copy), entry_fd(*b.child, b, &child_copy)};
        if (fds[0] < 0 || fds[1] < 0) {
            why = "cannot open a pidfd for the entry";
            err = errno;
        } else if (auto r = notify(text, fds, 2); !r) {
            why = r.error().what;
            err = -r.code();
        } else {
            stored_fds_ += 2;
            return;
        }
    }
    unstored_.insert(&b);
    if (warn_limiter_.allow())
        log_fmt(LOG_WARNING,
                "binding of {}[{}] to {}[{}] will not survive a restart of orphand: {}{}{}",
                b.child->comm.data(), b.child->pidfd.pid(), b.parent->comm.data(),
                b.parent->pidfd.pid(), why, err ? ": " : "", err ? std::strerror(err) : "");
}

void FdStore::binding_removed(const Binding &b) {
    if (waiting_.erase(&b) > 0 || unstored_.erase(&b) > 0)
        return; // never stored
    remove(fd_store_name(describe(b)));
    stored_fds_ -= stored_fds_ >= 2 ? 2 : stored_fds_;
}

void FdStore::remove(const std::string &name) {
    std::string text = "FDSTOREREMOVE=1\nFDNAME=" + name;
    if (auto r = notify(text, nullptr, 0); !r && warn_limiter_.allow())
        log_fmt(LOG_WARNING, "could not remove {} from systemd's fd store: {}", quoted(name),
                std::strerror(-r.code()));
}

RestoreCounts FdStore::restore(std::vector<StoredFd> entries, Registry &registry) {
    RestoreCounts counts;
    // An entry is one name with its two fds; systemd passes them in no useful order.
    std::map<std::string, std::vector<UniqueFd>> groups;
    for (auto &e : entries)
        groups[e.name].push_back(std::move(e.fd));
    restoring_ = true;
    for (auto &[name, fds] : groups) {
        StoredBinding s;
        if (!parse_fd_store_name(name, &s) || fds.size() != 2) {
            ++counts.invalid;
            remove(name);
            continue;
        }
        // Which pidfd is the parent's: by pidfs inode, or (without pidfs, where every pidfd
        // has the same inode) by the pid of a process that is not reaped yet.
        int parent_index = -1;
        if (s.parent_inode != s.child_inode) {
            for (int i = 0; i < 2; ++i)
                if (inode_of(fds[i].get()) == s.parent_inode)
                    parent_index = i;
            if (parent_index >= 0 && inode_of(fds[1 - parent_index].get()) != s.child_inode)
                parent_index = -1;
        } else {
            for (int i = 0; i < 2 && parent_index < 0; ++i) {
                auto pid = pidfd_pid(fds[i].get());
                if (pid && *pid == s.child_pid)
                    parent_index = 1 - i;
                else if (pid && *pid == s.parent_pid)
                    parent_index = i;
            }
        }
        if (parent_index < 0) {
            // Without pidfs and with both processes reaped there is nothing left to enforce.
            ++(s.parent_inode != s.child_inode ? counts.invalid : counts.gone);
            remove(name);
            continue;
        }
        UniqueFd &parent_fd = fds[parent_index];
        UniqueFd &child_fd = fds[1 - parent_index];
        // A live process must still have the pid in the name; a reaped one has none (0).
        auto check_pid = [](int fd, pid_t expected) {
            auto pid = pidfd_pid(fd);
            return !pid || *pid <= 0 || *pid == expected;
        };
        if (!check_pid(parent_fd.get(), s.parent_pid) || !check_pid(child_fd.get(), s.child_pid)) {
            ++counts.invalid;
            remove(name);
            continue;
        }
        Verdict v = registry.add(PidFd(s.parent_pid, std::move(parent_fd)),
                                 PidFd(s.child_pid, std::move(child_fd)), s.policy, s.registrant,
                                 s.parent_comm.c_str());
        if (v.error == 0 && v.reason == proto::kOk) {
            ++counts.restored;
            stored_fds_ += 2;
        } else {
            ++(v.reason == proto::kParentAlreadyDead ? counts.parent_dead : counts.gone);
            remove(name);
        }
    }
    restoring_ = false;
    return counts;
}

std::unique_ptr<FdStore> start_fd_store(uint32_t max_fds, uint32_t delay_ms,
                                        std::vector<StoredFd> passed, Registry &registry,
                                        EventLoop &loop) {
    if (max_fds == 0 || !std::getenv("NOTIFY_SOCKET")) {
        if (!passed.empty())
            log_fmt(LOG_WARNING,
                    "ignoring {} fds systemd passed: the fd store is not enabled (--fd-store)",
                    passed.size());
        return nullptr;
    }
    auto store = FdStore::connect(max_fds, loop, delay_ms);
    if (!store) {
        log_fmt(LOG_WARNING, "cannot use systemd's fd store: {}: {}", store.error().what,
                std::strerror(-store.code()));
        return nullptr;
    }
    // Every stored fd comes back at start-up: orphand must be able to hold them all besides
    // its own, or the restart fails and systemd's start limit ends up flushing the store.
    struct rlimit rl {};
    constexpr uint64_t kReserve = 1024;
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < uint64_t{max_fds} + kReserve) {
        uint32_t capped = rl.rlim_cur > 2 * kReserve ? static_cast<uint32_t>(rl.rlim_cur - kReserve)
                                                     : static_cast<uint32_t>(rl.rlim_cur / 2);
        log_fmt(LOG_WARNING,
                "the fd limit ({}) leaves too little room for an fd store of {} fds: storing at "
                "most {} (raise LimitNOFILE=)",
                static_cast<uint64_t>(rl.rlim_cur), max_fds, capped);
        max_fds = capped;
    }
    (*store)->max_fds_ = max_fds;
    if (!passed.empty()) {
        size_t n = passed.size();
        RestoreCounts c = (*store)->restore(std::move(passed), registry);
        log_fmt(LOG_INFO,
                "restored {} bindings from systemd's fd store ({} fds); {} parents died while "
                "orphand was down (their children were killed), {} bindings ended meanwhile, "
                "{} entries invalid",
                c.restored, n, c.parent_dead, c.gone, c.invalid);
    }
    log_fmt(LOG_INFO,
            "bindings are kept in systemd's fd store (up to {} fds) once they have lived {} ms: "
            "they survive restarts and crashes of orphand",
            max_fds, delay_ms);
    return std::move(*store);
}

} // namespace orphand
