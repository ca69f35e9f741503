// SPDX-License-Identifier: MIT
// The listening socket: taken from systemd (sd_listen_fds) or bound; the fd store's leftovers.
#include "listener.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <stdexcept>
#include <system_error>

#include <systemd/sd-daemon.h>

#include "log.hpp"
#include "options.hpp"
#include "orphand/orphand.h"
#include "pidfd.hpp"

namespace orphand {
namespace {

[[noreturn]] void fail(int err, const std::string &what) {
    throw std::system_error(err, std::generic_category(), what);
}

// Creates `dir` and its missing parents with mode 0755, refusing symlinks on the way.
void make_dirs(const std::string &dir) {
    if (dir.empty() || dir == "/")
        return;
    struct stat st {};
    if (::lstat(dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            throw std::runtime_error(fmt::format("{} exists and is not a directory (symlinks are "
                                                 "not followed)",
                                                 quoted(dir)));
        return;
    }
    make_dirs(dir.substr(0, dir.rfind('/')));
    if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST)
        fail(errno, fmt::format("mkdir {}", quoted(dir)));
}

// Sockets are world-connectable: the daemon decides per request who may bind whom (orphand(8)).
// Binds a new socket of `type` at `path`, replacing a stale socket there; `prepare` sets its
// options before it is reachable.
template <typename Prepare> UniqueFd bind_at(const std::string &path, int type, Prepare prepare) {
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error(
                fmt::format("{} exists and is not a socket; not removing it", quoted(path)));
        // A socket someone still receives on belongs to a running daemon.
        UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0)
            throw std::runtime_error(
                fmt::format("another daemon is listening on {}", quoted(path)));
        ::unlink(path.c_str());
    }
    UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        fail(errno, "socket");
    prepare(fd.get());
    mode_t old = ::umask(0111);
    int r = ::bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr));
    int err = errno;
    ::umask(old);
    if (r < 0)
        fail(err, fmt::format("bind {}", quoted(path)));
    return fd;
}

// Every datagram carries its sender's credentials and, where the kernel has SO_PASSPIDFD
// (Linux 6.5), a pidfd for it.
void pass_credentials(int fd) {
    int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
        fail(errno, "setsockopt SO_PASSCRED");
    if (kernel_features().peer_pidfd)
        (void)::setsockopt(fd, SOL_SOCKET, kSoPassPidfd, &one, sizeof(one));
}

} // namespace

Listener acquire_listener(const std::string &socket_path) {
    Listener l;
    char **names = nullptr;
    int n = sd_listen_fds_with_names(1, &names);
    if (n > 0) {
        for (int i = 0; i < n; ++i) {
            int fd = SD_LISTEN_FDS_START + i;
            const char *name = names && names[i] ? names[i] : "";
            bool ours = std::strcmp(name, "orphand") == 0 || std::strcmp(name, "unknown") == 0 ||
                        std::strcmp(name, "") == 0;
            ::fcntl(fd, F_SETFD, FD_CLOEXEC);
            if (ours && !l.fd && sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) > 0) {
                l.fd.reset(fd);
                ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
                // The unit passes credentials for the datagram socket's sake (PassCredentials=
                // applies to all its sockets); connections, which inherit it at accept, need
                // none: SO_PEERCRED names their peer.
                int zero = 0;
                (void)::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &zero, sizeof(zero));
            } else if (ours && !l.datagram &&
                       sd_is_socket_unix(fd, SOCK_DGRAM, -1, nullptr, 0) > 0) {
                l.datagram.reset(fd);
                ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
                pass_credentials(fd);
            } else {
                // Entries of systemd's fd store, left by an older orphand.
                l.passed_fds.push_back({name, UniqueFd(fd)});
            }
        }
    }
    if (names) {
        for (int i = 0; i < n; ++i)
            std::free(names[i]);
        std::free(names);
    }
    if (l.fd) {
        l.socket_activated = true;
        return l;
    }
    // Not activated: a datagram socket passed alone is not used.
    l.datagram.reset();
    std::string path = socket_path.empty() ? default_socket_path() : socket_path;
    if (path.size() >= sizeof(sockaddr_un::sun_path))
        throw std::runtime_error(fmt::format("socket path {} is too long ({} bytes, at most {})",
                                             quoted(path), path.size(),
                                             sizeof(sockaddr_un::sun_path) - 1));
    make_dirs(path.substr(0, path.rfind('/')));
    l.fd = bind_at(path, SOCK_STREAM, [](int) {});
    l.bound_path = path;
    if (::listen(l.fd.get(), SOMAXCONN) < 0)
        fail(errno, "listen");
    std::string dgram = path + ORPHAND_DATAGRAM_SUFFIX;
    if (dgram.size() < sizeof(sockaddr_un::sun_path)) {
        l.datagram = bind_at(dgram, SOCK_DGRAM, pass_credentials);
        l.datagram_bound_path = dgram;
    } else {
        log_fmt(LOG_NOTICE,
                "no datagram socket: {} would be too long; clients register over the "
                "stream socket",
                quoted(dgram));
    }
    return l;
}

void drop_fd_store(std::vector<Listener::PassedFd> &passed_fds) {
    if (passed_fds.empty())
        return;
    // orphand 0.x kept bindings in systemd's fd store. They are not restored (the binding log
    // replaced it): the entries are removed, so that systemd passes them no more.
    std::set<std::string> names;
    for (auto &e : passed_fds)
        names.insert(std::move(e.name));
    for (const auto &name : names)
        sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", name.c_str());
    log_fmt(LOG_WARNING,
            "dropped {} fds ({} entries) of systemd's fd store left by an older orphand: the "
            "bindings they held are not enforced",
            passed_fds.size(), names.size());
    passed_fds.clear();
}

} // namespace orphand
