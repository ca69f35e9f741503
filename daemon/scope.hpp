// SPDX-License-Identifier: MIT
// Kill scopes: the processes a binding's kill reaches besides its child (the child's process
// group, its descendants, or its cgroup), found when the parent dies and signalled one by one
// through pidfds, each after the registrant's rule is checked on it.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "orphand/protocol.hpp"
#include "pidfd.hpp"
#include "result.hpp"

namespace orphand {

// A cgroup (v2) as a binding records it: its path below the cgroup2 mount and its id (the
// directory's inode number), which a cgroup removed and created again under the same path does
// not keep.
struct CgroupRef {
    std::string path; // "/system.slice/foo.service/job"; "/" is the root cgroup
    uint64_t id = 0;
};

// The cgroup2 mount orphand uses ("/sys/fs/cgroup"), or "" if none is there (cgroup v1 or
// none): the cgroup scope is then refused with kScopeUnsupported. Probed once.
const std::string &cgroup_mount();

// The cgroup of a live process, from the "0::" line of /proc/PID/cgroup, read while its pidfd
// proves the pid still names it, with the id of its directory under cgroup_mount().
Result<CgroupRef> cgroup_of(const PidFd &p);

// True if cgroup path `inner` is `outer` or lies below it ("/a" holds "/a" and "/a/b", not
// "/ab").
bool cgroup_contains(const std::string &outer, const std::string &inner);

// Whether the kernel signals a process group through a pidfd (PIDFD_SIGNAL_PROCESS_GROUP,
// Linux 6.9). Probed once.
bool have_pgroup_signal();

// One process a scope reached but did not signal, for the log.
struct Skipped {
    pid_t pid = 0;
    uid_t ruid = 0;
    std::array<char, proto::kCommLen> comm{};
};

// A scope kill: what to send, who may be signalled, and what came of it.
struct ScopeKill {
    int signal = 0;
    // The registrant's rule on one process, with its credentials read through its pidfd. It is
    // applied when the process is found and again immediately before each signal sent to it
    // (SIGSTOP, the kill's signal, SIGCONT): one that changed identity meanwhile (a setuid exec)
    // is refused from then on, recorded once in `skipped`, and signalled no more. What is left
    // is the window between one reading and its signal, as for a binding's child. Never called
    // for pid 1, kernel threads or orphand itself, which are never signalled.
    std::function<bool(const Creds &)> allowed;
    // The registrant is root or has CAP_KILL: its rule allows every process. Only then is a
    // process group signalled in one call (PIDFD_SIGNAL_PROCESS_GROUP), which reaches members
    // without a check of their own; for other registrants, members are signalled one by one.
    bool privileged = false;
    // How long the kill may search before it gives up (`incomplete`), its rounds bounded in
    // proportion; 0 for the default, 100 ms, which the event loop can afford.
    uint64_t budget_ns = 0;
    // Set (by another thread) to make the kill give up searching at its next check, as when the
    // budget runs out (`incomplete`). Not owned: null, or alive until signal_scope() returns.
    const std::atomic<bool> *abort = nullptr;

    // Results.
    uint32_t signalled = 0;       // processes signalled, the child included
    bool child_signalled = false; // the child itself was among them
    std::vector<PidFd> reached;   // every process signalled but the child: for escalation
    std::vector<Skipped> skipped; // refused by `allowed`
    uint32_t protected_count = 0; // pid 1, kernel threads and orphand, never signalled
    bool incomplete = false;      // gave up before the scope was known to be complete
};

// Signals every process `scope` reaches from `child` (a pidfd, possibly of a process that has
// exited): kScopePgroup, kScopeTree or kScopeCgroup (`cgroup` then names it; it is checked
// against its id first and nothing is signalled if it changed). kScopeProcess signals the child
// alone. Bounded in time (see scope.cpp); `incomplete` says when the bound was reached or the
// kill was aborted. Either way the members found so far are sent the kill's signal, and then
// every member a tree kill stopped to freeze the tree is sent SIGCONT (unless SIGKILL ended it,
// or the rule now refuses it): none is left stopped by orphand.
void signal_scope(uint32_t scope, const PidFd &child, const CgroupRef *cgroup, ScopeKill &kill);

} // namespace orphand
