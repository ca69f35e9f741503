// SPDX-License-Identifier: MIT
// The listening socket: the one systemd passed, or one bound at the socket path.
#pragma once

#include <string>
#include <vector>

#include "unique_fd.hpp"

namespace orphand {

// The listening socket (non-blocking, close-on-exec) and what came with it.
struct Listener {
    UniqueFd fd;
    bool socket_activated = false; // passed by systemd (sd_listen_fds)
    std::string bound_path;        // bound here: the path to unlink at exit; else empty
    // The datagram socket beside it (ORPHAND_DATAGRAM_SUFFIX), passed or bound likewise; empty
    // if systemd passed none, or its path would be too long. Set to pass credentials.
    UniqueFd datagram;
    std::string datagram_bound_path;
    // Fds systemd passed besides the socket: an older orphand's fd store entries.
    struct PassedFd {
        std::string name;
        UniqueFd fd;
    };
    std::vector<PassedFd> passed_fds;
};

// Takes the sockets systemd passed (named "orphand", "unknown" or unnamed: the stream socket and
// the datagram socket, told apart by type), or else binds both at `socket_path`
// (default_socket_path() if empty) and beside it, world-connectable, creating their directory.
// Refuses to replace anything but a socket, or a socket a running daemon listens on. Throws
// std::runtime_error (or std::system_error) on failure.
Listener acquire_listener(const std::string &socket_path);

// Removes an older orphand's fd store entries from systemd's fd store and closes them, with a
// warning: the bindings they held are not restored.
void drop_fd_store(std::vector<Listener::PassedFd> &passed_fds);

} // namespace orphand
