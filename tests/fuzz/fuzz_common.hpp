// SPDX-License-Identifier: MIT
// What the fuzz targets that drive a real Server share: its start, helper processes, fake peers.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "options.hpp"
#include "pidfd.hpp"
#include "send_fds.hpp"
#include "server.hpp"

namespace orphand::fuzz {

inline constexpr size_t kHelpers = 4;
// SCM_MAX_FD: the most fds the kernel takes in one message, so that a target may send too many.
inline constexpr size_t kMaxSendFds = kMaxSentFds;

// Processes the inputs name and send pidfds of, and that the Server may kill: children of this
// process, so that they are the only ones it can reach (pid 1 of a private pid namespace).
inline std::array<pid_t, kHelpers> g_helpers{};
inline Server *g_server = nullptr; // lives for the whole run

// Aborts unless this process is pid 1 of its pid namespace: the Server kills the processes
// that the inputs name, and there the only ones it can reach are this process's helpers.
inline void require_pid1(const char *target) {
    if (::getpid() != 1) {
        std::fprintf(stderr,
                     "%s signals real processes: run it as pid 1 of a private pid namespace "
                     "(unshare --pid --fork --mount-proc ...)\n",
                     target);
        std::abort();
    }
}

// Starts g_server on a socket in a fresh directory, with a short grace and small limits so that
// inputs reach escalations and refusals quickly. Aborts if it cannot.
inline void start_server() {
    log_setup(LogTarget::Stderr, LOG_CRIT);
    // The socket's directory: under run-fuzz.sh's work directory, which it removes.
    const char *parent = std::getenv("ORPHAND_FUZZ_DIR");
    std::string dir = std::string(parent ? parent : "/tmp") + "/orphand-fuzz-XXXXXX";
    if (!::mkdtemp(dir.data()))
        std::abort();
    Options options;
    options.socket_path = dir + "/orphand.sock";
    options.log_target = LogTarget::Stderr;
    options.policy.grace_ms = 50;
    options.limits.bindings_per_uid = 8;
    options.limits.bindings_per_parent = 8;
    options.max_connections = 16;
    g_server = new Server(options);
}

inline pid_t spawn_helper() {
    pid_t pid = ::fork();
    if (pid == 0) {
        // Only async-signal-safe calls from here: the parent may have threads (the FdCloser's).
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        // A helper takes every signal as any target would: not through libFuzzer's handlers
        // (a helper the Server signals would run its crash or interrupt handler instead of
        // dying), nor blocked as the Server blocked SIGTERM in this process.
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; ++sig)
            ::sigaction(sig, &dfl, nullptr);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        // No core dump when that is a SIGSEGV: a limit of 1 stops a piped core_pattern too.
        struct rlimit core = {1, 1};
        ::setrlimit(RLIMIT_CORE, &core);
        for (;;)
            ::pause();
    }
    return pid;
}

// Reaps helpers the Server killed and starts new ones, so that every input finds live targets.
inline void tend_helpers() {
    for (pid_t &pid : g_helpers)
        if (pid <= 0 || ::waitpid(pid, nullptr, WNOHANG) == pid)
            pid = spawn_helper();
}

// A pidfd of a process that has already exited and been reaped; -1 if none could be made.
inline int open_reaped_pidfd() {
    pid_t pid = ::fork();
    if (pid == 0)
        ::_exit(0);
    int fd = sys_pidfd_open(pid, 0);
    ::waitpid(pid, nullptr, 0);
    return fd;
}

// The peer identity the input's first byte chooses: bits 0-1 its uid, 2-3 its pid (this
// process, a helper, none, a process that does not exist), 4-5 which helper that is.
inline struct ucred make_peer(uint8_t peer_kind) {
    static const uid_t uids[] = {0, 65534, 1000, 4242};
    struct ucred peer {};
    peer.uid = uids[peer_kind & 3];
    peer.gid = peer.uid;
    switch (peer_kind >> 2 & 3) {
    case 0:
        peer.pid = ::getpid();
        break;
    case 1:
        peer.pid = g_helpers[peer_kind >> 4 & 3];
        break;
    case 2:
        peer.pid = 0; // invisible in our namespace
        break;
    default:
        peer.pid = 99999; // no such process
        break;
    }
    return peer;
}

// Hands one end of a new socketpair to g_server as a client connection from `peer` and returns
// the other, the client's, which the caller closes. Aborts if there is none.
inline int connect_client(const struct ucred &peer) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        std::abort();
    g_server->adopt_connection(UniqueFd(sv[0]), peer);
    return sv[1];
}

// One sendmsg of [data, data + len) on `sock`, without blocking, with `fds` (at most
// kMaxSendFds) in SCM_RIGHTS; then closes `fds`, sent or not. Returns what sendmsg returned.
inline ssize_t send_take_fds(int sock, const void *data, size_t len, const std::vector<int> &fds) {
    if (fds.size() > kMaxSendFds)
        std::abort(); // the target's bug: its plan sends more than one message can carry
    ssize_t n = send_with_fds(sock, data, len, fds.data(), fds.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    for (int f : fds)
        ::close(f);
    return n;
}

// Reads what the Server replied on `client` without blocking and appends it to `replies`; true
// once the Server has closed its end.
inline bool receive(int client, std::string &replies) {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(client, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        replies.append(buf, static_cast<size_t>(n));
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

// Turns the Server's loop, without waiting, while replies come (at most 64 turns), appending
// them to `replies`; true once the Server has closed its end.
inline bool settle(int client, std::string &replies) {
    bool closed = false;
    for (int turn = 0; turn < 64 && !closed; ++turn) {
        if (!g_server->dispatch(0))
            std::abort();
        size_t had = replies.size();
        closed = receive(client, replies);
        if (replies.size() == had)
            break;
    }
    return closed;
}

} // namespace orphand::fuzz
