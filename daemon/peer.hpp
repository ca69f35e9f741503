// SPDX-License-Identifier: MIT
// Peer: who is at the other end of a client connection, and what it may be trusted with.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>

#include "pidfd.hpp"

namespace orphand {

// A connection's peer as the kernel reported it at accept (SO_PEERCRED, SO_PEERPIDFD), with
// what is looked up about it lazily, once, only when a request depends on it (see
// peer_privileged and peer_foreign): the shim's one-record connections need neither.
struct Peer {
    pid_t pid = 0; // in our pid namespace; 0 if the peer is invisible to us
    uid_t uid = 0; // mapped into our user namespace
    gid_t gid = 0;
    PidFd pidfd; // from SO_PEERPIDFD, or opened by pid; or empty
    bool privilege_known = false;
    bool privileged = false; // root, or CAP_KILL in our user namespace
    bool pidns_known = false;
    bool foreign_pidns = false;
    pid_t inner_pid = 0; // the peer's pid in its own namespace (when foreign)
    bool once = false;   // the sender of one datagram: what it holds may be taken, not copied
    bool gone = false;   // a datagram's sender known to have exited and been reaped (no pidfd)

    Peer() = default;
    explicit Peer(const struct ucred &cred) : pid(cred.pid), uid(cred.uid), gid(cred.gid) {}
};

// The pid namespace answer for the last peer process looked up (see peer_foreign).
struct PeerNamespaceCache {
    uint64_t inode = 0; // pidfs inode of the peer; 0: none
    bool foreign = false;
    pid_t inner_pid = 0;
};

// SO_PEERCRED of the connected socket `sock` into *cred; false if it cannot be read.
bool read_peer_cred(int sock, struct ucred *cred);

// A pidfd for the peer of `sock`, whose pid (from SO_PEERCRED) is `pid`: SO_PEERPIDFD where
// the kernel has it, else opened by pid. Empty if neither works.
PidFd open_peer_pidfd(int sock, pid_t pid);

// Whether the peer lives in another pid namespace than orphand (then its raw pids mean nothing
// here), noting its own pid there in peer.inner_pid. A peer whose namespace cannot be learnt
// counts as foreign. Looked up once per connection; `cache` keeps the last answer across
// connections of one process.
bool peer_foreign(Peer &peer, PeerNamespaceCache &cache);

// Whether the peer is root or holds CAP_KILL in orphand's user namespace while still running
// as the uid it connected with. Looked up once per connection.
bool peer_privileged(Peer &peer);

} // namespace orphand
