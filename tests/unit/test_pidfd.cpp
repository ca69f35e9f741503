// SPDX-License-Identifier: MIT
// Unit tests of what the daemon reads about a process: the kernel-thread rule, its pidfs inode.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include "pidfd.hpp"

using namespace orphand;

// Crafted /proc/PID/stat lines: the rule must not depend on which processes this machine (or
// this pid namespace, where no kernel thread is visible) has.
TEST_CASE("kernel threads are told by PF_KTHREAD in /proc/PID/stat's flags") {
    // kthreadd and a kworker (flags 0x208040 and 0x4208060): PF_KTHREAD is set.
    CHECK(stat_is_kernel_thread("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0"));
    CHECK(stat_is_kernel_thread(
        "7 (kworker/0:0H-events_highpri) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 0 -20 1 0"));
    // A user process (flags 0x400000, PF_RANDOMIZE): not set.
    CHECK_FALSE(
        stat_is_kernel_thread("1234 (sleep) S 1 1234 1234 34816 1234 4194304 97 0 0 0 0 0 0"));
    // PF_KTHREAD alone, and every flag but PF_KTHREAD.
    CHECK(stat_is_kernel_thread("9 (k) S 2 0 0 0 -1 2097152 0"));
    CHECK_FALSE(stat_is_kernel_thread("9 (u) S 1 9 9 0 -1 4292870143 0"));
}

TEST_CASE("the command name may hold spaces and ')': fields count from the last ')'") {
    // A user process named "a) b" whose tpgid (field 8) happens to look like PF_KTHREAD: read
    // from the first ')', the flags would be that tpgid.
    CHECK_FALSE(
        stat_is_kernel_thread("4321 (a) b) S 1 4321 4321 34816 2097152 4194304 97 0 0 0 0"));
    // A name full of ") " on a kernel thread's line, and on a user process's line.
    CHECK(stat_is_kernel_thread("8 () ) ) x) S 2 0 0 0 -1 2129984 0 0 0 0 0 0"));
    CHECK_FALSE(stat_is_kernel_thread("8 () ) ) x) S 1 8 8 0 -1 4194304 0 0 0 0 0 0"));
    CHECK_FALSE(stat_is_kernel_thread("8 (2097152) S 1 8 8 0 -1 4194304 0 0 0 0 0 0"));
}

TEST_CASE("a stat line cut short or without a command name is not a kernel thread") {
    CHECK_FALSE(stat_is_kernel_thread(""));
    CHECK_FALSE(stat_is_kernel_thread("2 kthreadd S 0 0 0 0 -1 2129984 0"));
    CHECK_FALSE(stat_is_kernel_thread("2 (kthreadd) S 0 0 0 0 -1"));
    CHECK_FALSE(stat_is_kernel_thread("2 (kthreadd) S 0 0 0 0 -1 "));
    CHECK_FALSE(stat_is_kernel_thread("2 (kthreadd) S 0 0 0 0"));
}

TEST_CASE("this test process is no kernel thread, by pid and by its own stat line") {
    CHECK_FALSE(is_kernel_thread(::getpid()));
    UniqueFd fd(::open("/proc/self/stat", O_RDONLY | O_CLOEXEC));
    REQUIRE(fd);
    char buf[2048];
    ssize_t n = ::read(fd.get(), buf, sizeof(buf) - 1);
    REQUIRE(n > 0);
    buf[n] = '\0';
    CHECK_FALSE(stat_is_kernel_thread(buf));
}

TEST_CASE("a process handle's pidfs inode names the process, not the pidfd") {
    auto a = PidFd::open(::getpid());
    auto b = PidFd::open(::getpid());
    REQUIRE(a);
    REQUIRE(b);
    CHECK(PidFd().inode() == 0);
    if (!kernel_features().pidfs) {
        // Before pidfs (Linux 6.9) pidfds share one anonymous inode: none is reported.
        CHECK(a->inode() == 0);
        return;
    }
    CHECK(a->inode() != 0);
    CHECK(a->inode() == b->inode());
    // pid 1 of this namespace is another process.
    if (auto init = PidFd::open(1))
        CHECK(init->inode() != a->inode());
}
