// SPDX-License-Identifier: MIT
// fork(2) for unit tests: a child process that dies of its signals as any process would.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <initializer_list>

namespace orphand::test {

// fork(2), with the child given back the default action of every signal doctest catches. A
// child otherwise keeps doctest's handlers, and its intended death by SIGTERM is reported as
// "test case CRASHED" in a passing test's log. Returns what fork(2) returns; in the child, only
// async-signal-safe calls are made here.
inline pid_t fork_child() {
    pid_t pid = ::fork();
    if (pid == 0) {
        for (int sig : {SIGINT, SIGILL, SIGFPE, SIGSEGV, SIGTERM, SIGABRT})
            ::signal(sig, SIG_DFL);
    }
    return pid;
}

} // namespace orphand::test
