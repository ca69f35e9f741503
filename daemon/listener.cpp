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

} // namespace

Listener acquire_listener(const std::string &socket_path) {
    Listener l;
    char **names = nullptr;
    int n = sd_listen_fds_with_names(1, &names);
    if (n > 0) {
        for (int i = 0; i < n; ++i) {
            int fd = SD_LISTEN_FDS_START + i;
            const char *name = names && names[i] ? names[i] : "";
            if (!l.fd && sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) > 0 &&
                (std::strcmp(name, "orphand") == 0 || std::strcmp(name, "unknown") == 0 ||
                 std::strcmp(name, "") == 0)) {
                l.fd.reset(fd);
                ::fcntl(fd, F_SETFD, FD_CLOEXEC);
                ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
            } else {
                // Entries of systemd's fd store, left by an older orphand.
                ::fcntl(fd, F_SETFD, FD_CLOEXEC);
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
    } else {
        std::string path = socket_path.empty() ? default_socket_path() : socket_path;
        struct sockaddr_un addr {};
        addr.sun_family = AF_UNIX;
        if (path.size() >= sizeof(addr.sun_path))
            throw std::runtime_error(fmt::format("socket path {} is too long ({} bytes, at most "
                                                 "{})",
                                                 quoted(path), path.size(),
                                                 sizeof(addr.sun_path) - 1));
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        make_dirs(path.substr(0, path.rfind('/')));
        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode))
                throw std::runtime_error(
                    fmt::format("{} exists and is not a socket; not removing it", quoted(path)));
            // A socket someone still listens on belongs to a running daemon.
            UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
            if (probe &&
                ::connect(probe.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0)
                throw std::runtime_error(
                    fmt::format("another daemon is listening on {}", quoted(path)));
            ::unlink(path.c_str());
        }
        l.fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!l.fd)
            fail(errno, "socket");
        // World-connectable: the daemon decides per request who may bind whom (orphand(8)).
        mode_t old = ::umask(0111);
        int r = ::bind(l.fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr));
        int err = errno;
        ::umask(old);
        if (r < 0)
            fail(err, fmt::format("bind {}", quoted(path)));
        l.bound_path = path;
        if (::listen(l.fd.get(), SOMAXCONN) < 0)
            fail(errno, "listen");
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
