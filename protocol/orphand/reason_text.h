/* SPDX-License-Identifier: MIT */
/* The text of each reason a reply carries: one table for the daemon, orphanctl (through
 * protocol.hpp's reason_text()) and liborphand's orphand_reason_text(). Not installed. */
#ifndef ORPHAND_REASON_TEXT_H
#define ORPHAND_REASON_TEXT_H

#include <stdint.h>

#include "orphand/orphand.h"

#ifdef __cplusplus
#define ORPHAND_CONSTEXPR_ constexpr
#else
#define ORPHAND_CONSTEXPR_
#endif

/* Human-readable text for a wire reason; never null. */
static inline ORPHAND_CONSTEXPR_ const char *orphand_reason_text_(uint32_t reason) {
    switch (reason) {
    case ORPHAND_REASON_OK:
        return "ok";
    case ORPHAND_REASON_PARENT_ALREADY_DEAD:
        return "parent already dead, child killed at once";
    case ORPHAND_REASON_ALREADY_BOUND:
        return "already bound";
    case ORPHAND_REASON_UNKNOWN_ACTION:
        return "unknown action";
    case ORPHAND_REASON_BAD_PID:
        return "invalid pid";
    case ORPHAND_REASON_SAME_PROCESS:
        return "parent and child are the same process";
    case ORPHAND_REASON_PROTECTED_TARGET:
        return "protected target (pid 1, orphand or a kernel thread)";
    case ORPHAND_REASON_NO_SUCH_PROCESS:
        return "no such process";
    case ORPHAND_REASON_NOT_PERMITTED:
        return "not permitted to signal that child";
    case ORPHAND_REASON_NOT_PIDFD:
        return "passed fd is not a pidfd";
    case ORPHAND_REASON_PIDFD_MISMATCH:
        return "passed pidfd does not match the pid in the request";
    case ORPHAND_REASON_TOO_MANY_FDS:
        return "too many fds passed";
    case ORPHAND_REASON_FOREIGN_PID_NAMESPACE:
        return "client in another pid namespace must pass pidfds";
    case ORPHAND_REASON_LIMIT_USER:
        return "too many bindings for this user";
    case ORPHAND_REASON_LIMIT_PARENT:
        return "too many bindings for this parent";
    case ORPHAND_REASON_LIMIT_CONNECTIONS:
        return "too many connections";
    case ORPHAND_REASON_OUT_OF_FDS:
        return "daemon out of file descriptors";
    case ORPHAND_REASON_BAD_POLICY:
        return "invalid signal, grace period or flags";
    case ORPHAND_REASON_NOT_BOUND:
        return "no such binding";
    case ORPHAND_REASON_INTERNAL:
        return "internal error";
    case ORPHAND_REASON_NOT_A_PROCESS:
        return "names a thread, not a process";
    case ORPHAND_REASON_SCOPE_REFUSED:
        return "cgroup scope refused: a root cgroup, or it holds the parent or orphand";
    case ORPHAND_REASON_SCOPE_UNSUPPORTED:
        return "scope not supported here (no cgroup version 2 file system is mounted)";
    default:
        return "unknown reason";
    }
}

#undef ORPHAND_CONSTEXPR_

#endif /* ORPHAND_REASON_TEXT_H */
