// SPDX-License-Identifier: MIT
// Peer identity: SO_PEERCRED and SO_PEERPIDFD, the peer's pid namespace and its privilege.
#include "peer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace orphand {
namespace {

// CapEff of a process that runs as `uid` (real, effective, saved and fs) includes CAP_KILL
// (bit 5), read from /proc while the pidfd pins it.
bool has_cap_kill(const PidFd &p, pid_t pid, uid_t uid) {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/status", pid);
    UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd)
        return false;
    char buf[4096];
    ssize_t n = ::read(fd.get(), buf, sizeof(buf) - 1);
    if (n <= 0 || !p.valid() || p.send_signal(0) < 0)
        return false;
    buf[n] = '\0';
    // The process must still run as the uid it connected with. A client that execs a
    // set-user-ID program after connecting keeps its pid, and that program's capabilities
    // would otherwise be lent to whoever still holds the connection.
    const char *ids = std::strstr(buf, "\nUid:");
    if (!ids)
        return false;
    ids += 5;
    for (int i = 0; i < 4; ++i) {
        char *end;
        unsigned long id = std::strtoul(ids, &end, 10);
        if (end == ids || id != uid)
            return false;
        ids = end;
    }
    const char *cap = std::strstr(buf, "\nCapEff:");
    if (!cap)
        return false;
    unsigned long long mask = std::strtoull(cap + 8, nullptr, 16);
    return mask & (1ull << 5);
}

// Inode of one of our own or a process's namespaces, or 0.
ino_t ns_inode(const char *path) {
    struct stat st {};
    return ::stat(path, &st) == 0 ? st.st_ino : 0;
}

} // namespace

bool read_peer_cred(int sock, struct ucred *cred) {
    socklen_t len = sizeof(*cred);
    return ::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, cred, &len) == 0;
}

PidFd open_peer_pidfd(int sock, pid_t pid) {
    if (kernel_features().peer_pidfd) {
        int pfd = -1;
        socklen_t plen = sizeof(pfd);
        if (::getsockopt(sock, SOL_SOCKET, kSoPeerPidfd, &pfd, &plen) == 0 && pfd >= 0)
            return PidFd(pid, UniqueFd(pfd));
    } else if (pid > 0) {
        // FIXME: drop once Linux 6.5 is the minimum. Opened by pid: racy if the peer is
        // already gone and its pid reused; orphanctl status reports this fallback.
        if (auto p = PidFd::open(pid))
            return std::move(*p);
    }
    return {};
}

bool peer_foreign(Peer &peer, PeerNamespaceCache &cache) {
    if (peer.pidns_known)
        return peer.foreign_pidns;
    peer.pidns_known = true;
    static const ino_t our_pidns = ns_inode("/proc/self/ns/pid");
    // The peer's pid (from SO_PEERCRED, in our namespace) is 0 if the peer is invisible to us.
    // Otherwise NSpid lists its pid at each level from ours down: one level means ours. That
    // works through the pidfd without ptrace access to the peer's /proc entries, which an
    // orphand running under DynamicUser= lacks for other users.
    // A process never changes pid namespace, and clients often connect many times from one
    // process (the shim once per fork): the last answer is kept, keyed by the peer's pidfs
    // inode, which names one process for the whole boot.
    uint64_t inode = peer.pidfd.inode();
    if (inode != 0 && inode == cache.inode) {
        peer.foreign_pidns = cache.foreign;
        peer.inner_pid = cache.inner_pid;
        return peer.foreign_pidns;
    }
    std::array<pid_t, 8> levels{};
    int n = peer.pid > 0 && peer.pidfd.valid() ? pidfd_nspids(peer.pidfd.fd(), levels) : 0;
    if (n >= 1 && levels[0] > 0) {
        peer.foreign_pidns = n > 1;
        peer.inner_pid = levels[n - 1];
        cache = {inode, peer.foreign_pidns, peer.inner_pid};
    } else if (peer.pid > 0) {
        // Gone already (its pidfd no longer names pids): fall back to /proc, trusted only if
        // the peer is still unreaped after the read. If not even that, only pidfds count.
        char path[64];
        std::snprintf(path, sizeof(path), "/proc/%d/ns/pid", peer.pid);
        ino_t pidns = ns_inode(path);
        peer.foreign_pidns = !(pidns != 0 && pidns == our_pidns && peer.pidfd.valid() &&
                               peer.pidfd.send_signal(0) == 0);
    } else {
        peer.foreign_pidns = true;
    }
    return peer.foreign_pidns;
}

bool peer_privileged(Peer &peer) {
    // SO_PEERCRED maps the uid into our user namespace: 0 is our root.
    if (peer.uid == 0)
        return true;
    if (peer.privilege_known)
        return peer.privileged;
    peer.privilege_known = true;
    // CAP_KILL counts only when held in our user namespace. Read once per connection, when
    // it first matters: a registration, or a request that reaches other users' bindings.
    static const ino_t our_userns = ns_inode("/proc/self/ns/user");
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/ns/user", peer.pid);
    peer.privileged = peer.pid > 0 && ns_inode(path) == our_userns &&
                      has_cap_kill(peer.pidfd, peer.pid, peer.uid);
    return peer.privileged;
}

} // namespace orphand
