// SPDX-License-Identifier: MIT
// libFuzzer target: the daemon's whole request path, a real Server fed by fake peers.
//
// Each input is one client connection: a socketpair whose far end the Server adopts with a
// peer identity chosen by the input, then the input's bytes written in chunks, some carrying
// fds (pidfds, files, sockets) in SCM_RIGHTS, with the Server's loop turned after each. The
// Server may really kill: the target must run as pid 1 of a private pid namespace (run-fuzz.sh
// uses unshare), where the only processes it can reach are its own helpers.
//
// Input layout: [peer] [fd plan] [chunk length] stream...
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "options.hpp"
#include "pidfd.hpp"
#include "server.hpp"

namespace {

using namespace orphand;

constexpr size_t kHelpers = 4;
std::array<pid_t, kHelpers> g_helpers{};
Server *g_server = nullptr; // lives for the whole run

pid_t spawn_helper() {
    pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;)
            ::pause();
    }
    return pid;
}

// Reaps helpers the Server killed and starts new ones, so that every input finds live targets.
void tend_helpers() {
    for (pid_t &pid : g_helpers)
        if (pid <= 0 || ::waitpid(pid, nullptr, WNOHANG) == pid)
            pid = spawn_helper();
}

// An fd for SCM_RIGHTS of the kind `kind` selects; -1 for none.
int make_fd(unsigned kind) {
    switch (kind % 6) {
    case 0:
        return sys_pidfd_open(g_helpers[kind / 6 % kHelpers], 0);
    case 1:
        return sys_pidfd_open(::getpid(), 0);
    case 2:
        return ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    case 3:
        return ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    case 4: {
        // A pidfd of a process that is already reaped.
        pid_t pid = ::fork();
        if (pid == 0)
            ::_exit(0);
        int fd = sys_pidfd_open(pid, 0);
        ::waitpid(pid, nullptr, 0);
        return fd;
    }
    default:
        return -1;
    }
}

void send_chunk(int fd, const uint8_t *data, size_t len, unsigned plan) {
    std::vector<int> fds;
    unsigned count = plan % 4; // 0..3 fds: three is one too many
    for (unsigned i = 0; i < count; ++i)
        if (int f = make_fd(plan / 4 + i); f >= 0)
            fds.push_back(f);
    struct iovec iov = {const_cast<uint8_t *>(data), len};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)]{};
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
    }
    (void)::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    for (int f : fds)
        ::close(f);
}

// Turns the loop and discards replies until nothing more happens; true once the Server has
// closed its end.
bool settle(int client) {
    bool eof = false;
    for (int turn = 0; turn < 64; ++turn) {
        if (!g_server->dispatch(0))
            std::abort();
        char buf[4096];
        ssize_t n;
        bool got = false;
        while ((n = ::recv(client, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
            got = true;
        if (n == 0)
            eof = true;
        if (!got)
            break;
    }
    return eof;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    if (::getpid() != 1) {
        std::fprintf(stderr, "fuzz_request signals real processes: run it as pid 1 of a private "
                             "pid namespace (unshare --pid --fork --mount-proc ...)\n");
        std::abort();
    }
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
    tend_helpers();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3)
        return 0;
    uint8_t peer_kind = data[0];
    unsigned plan = data[1];
    size_t chunk = data[2] % 64 + 1;
    data += 3;
    size -= 3;

    tend_helpers();
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

    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        std::abort();
    g_server->adopt_connection(UniqueFd(sv[0]), peer);
    for (size_t pos = 0; pos < size; pos += chunk) {
        size_t len = size - pos < chunk ? size - pos : chunk;
        // Fds ride on every fourth chunk, as the plan's bits say.
        send_chunk(sv[1], data + pos, len, (pos / chunk) % 4 == 0 ? plan >> (pos / chunk % 8) : 0);
        if (settle(sv[1]))
            break;
    }
    ::shutdown(sv[1], SHUT_WR);
    settle(sv[1]);
    ::close(sv[1]);
    settle(-1);
    return 0;
}
