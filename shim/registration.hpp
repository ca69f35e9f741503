// SPDX-License-Identifier: MIT
// Binding a freshly created child to the calling process: one REGISTER record to orphand.
#pragma once

#include <sys/types.h>

namespace orphand::shim {

// Tells orphand to kill `child` when the calling process dies, passing the child's pidfd so that
// the daemon cannot mistake a recycled pid for it. Synchronous: once this returns, the binding
// is either guaranteed (the record was sent; the daemon acts on it even if we die right after)
// or it failed open (no daemon, socket full, fd limit hit). `child` must be a child of the
// calling process; anything else (<= 0, already reaped, not ours) is ignored.
//
// Async-signal-safe and cancellation-safe: raw syscalls only, no allocation, no locks. errno is
// preserved. With ORPHAND_DEBUG=1 a failure writes one line to stderr.
void register_child(pid_t child);

// Same, but the caller already holds a pidfd for `child` (borrowed, not closed).
void register_child_pidfd(pid_t child, int pidfd);

// pidfd_open(child) that confirms the pidfd refers to a live-or-zombie child of ours (and not a
// process that recycled the pid after the child was reaped). Returns the pidfd (owned by the
// caller, close-on-exec) or -1. errno is preserved.
int open_child_pidfd(pid_t child);

} // namespace orphand::shim
