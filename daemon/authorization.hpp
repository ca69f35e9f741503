// SPDX-License-Identifier: MIT
// Authorization: who may bind which process, signal it, and see or remove whose bindings.
#pragma once

#include <sys/types.h>

#include "pidfd.hpp"
#include "registry.hpp"

namespace orphand {

// Pure functions of what the kernel reported about the client (a Registrant: its uid, and
// whether it is root or holds CAP_KILL in orphand's user namespace) and about the target
// process. They read nothing: callers look the facts up, the verdicts are decided here.

// A process a client asks to bind as a child, as far as its authorization depends on it.
struct BindTarget {
    pid_t pid = 0;              // in orphand's pid namespace
    bool kernel_thread = false; // PF_KTHREAD
    bool creds_known = false;   // false: its credentials could not be read (it is gone)
    Creds creds;
};

// kill(2)'s rule: an unprivileged sender's uid (SO_PEERCRED gives the client's effective uid)
// must be the target's real or saved uid. Checked at registration and again before each
// signal, since the target may change its uids in between.
bool may_signal(const Registrant &who, const Creds &target);

// Processes that no binding may name as its child: init (pid 1), kthreadd (pid 2), orphand
// itself (`self`) and kernel threads.
bool is_protected(pid_t pid, pid_t self, bool kernel_thread);

// The verdict on `who` binding `child` (to any parent): {-EPERM, kProtectedTarget} for a
// protected process, else {-ESRCH, kNoSuchProcess} if its credentials are unknown, else
// {-EPERM, kNotPermitted} unless may_signal, else {0, kOk}.
Verdict authorize_bind(const Registrant &who, const BindTarget &child, pid_t self);

// Whether `who` may see (LIST) or remove (UNREGISTER) a binding that `registrant_uid` made:
// its own, or any if privileged. Another user's binding is answered as none at all.
bool may_see(const Registrant &who, uid_t registrant_uid);

} // namespace orphand
