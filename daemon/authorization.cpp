// SPDX-License-Identifier: MIT
// Authorization: the rules on who may bind, signal and see what (no I/O).
#include "authorization.hpp"

#include <cerrno>

namespace orphand {

bool may_signal(const Registrant &who, const Creds &target) {
    return who.privileged || who.uid == target.ruid || who.uid == target.suid;
}

bool is_protected(pid_t pid, pid_t self, bool kernel_thread) {
    return pid == 1 || pid == 2 || pid == self || kernel_thread;
}

Verdict authorize_bind(const Registrant &who, const BindTarget &child, pid_t self) {
    if (is_protected(child.pid, self, child.kernel_thread))
        return {-EPERM, proto::kProtectedTarget};
    if (!child.creds_known)
        return {-ESRCH, proto::kNoSuchProcess};
    // A passed pidfd proves which process it is, not that the client may signal it.
    if (!may_signal(who, child.creds))
        return {-EPERM, proto::kNotPermitted};
    return {0, proto::kOk};
}

bool may_see(const Registrant &who, uid_t registrant_uid) {
    return who.privileged || who.uid == registrant_uid;
}

} // namespace orphand
