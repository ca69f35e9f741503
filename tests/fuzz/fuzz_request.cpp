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
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.hpp"

namespace {

using namespace orphand;
using namespace orphand::fuzz;

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
    case 4:
        return open_reaped_pidfd();
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
    (void)send_take_fds(fd, data, len, fds);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    require_pid1("fuzz_request");
    start_server();
    tend_helpers();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3)
        return 0;
    tend_helpers();
    uint8_t peer_kind = data[0];
    unsigned plan = data[1];
    size_t chunk = data[2] % 64 + 1;
    data += 3;
    size -= 3;

    int client = connect_client(make_peer(peer_kind));
    std::string replies; // not checked: this target looks for crashes, leaks and UB
    for (size_t pos = 0; pos < size; pos += chunk) {
        size_t len = size - pos < chunk ? size - pos : chunk;
        // Fds ride on every fourth chunk, as the plan's bits say.
        send_chunk(client, data + pos, len, (pos / chunk) % 4 == 0 ? plan >> (pos / chunk % 8) : 0);
        if (settle(client, replies))
            break;
    }
    ::shutdown(client, SHUT_WR);
    settle(client, replies);
    ::close(client);
    // One more turn, in which the Server finds the connection closed.
    if (!g_server->dispatch(0))
        std::abort();
    return 0;
}
