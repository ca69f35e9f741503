// SPDX-License-Identifier: MIT
// Start-up: from the connection that socket-activates orphand (systemd-socket-activate) to its
// first PING answered, against a minimal socket-activated echo server and orphand binding its own
// socket, interleaved.
#include "bench_util.hpp"

using namespace orphand::bench;

namespace {

enum Variant { kEcho, kActivated, kBound, kVariants };
const char *const kNames[] = {"minimal echo server, socket-activated", "orphand, socket-activated",
                              "orphand, binding its own socket"};

// The baseline: a server that answers one legacy PING on the socket it was passed, then waits.
[[noreturn]] void echo_server() {
    const char *fds = std::getenv("LISTEN_FDS");
    if (!fds || std::atoi(fds) < 1)
        die("echo server: no LISTEN_FDS");
    int c = ::accept4(3, nullptr, nullptr, SOCK_CLOEXEC);
    proto::Record r{};
    read_all(c, &r, sizeof(r));
    write_all(c, &r, sizeof(r));
    for (;;)
        ::pause();
}

std::string self_exe() {
    char buf[4096];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0)
        die("readlink: %s", std::strerror(errno));
    buf[n] = '\0';
    return buf;
}

// Starts the variant, untimed until its socket listens; then times connect + PING + echo.
double sample(Variant v, const std::string &daemon_bin, const std::string &activate) {
    std::string dir = make_temp_dir();
    std::string sock = dir + "/orphand.sock";
    std::vector<std::string> argv;
    if (v == kBound) {
        argv = {daemon_bin, "--socket", sock, "--log-target=stderr", "--log-level", "warning"};
    } else {
        argv = {activate, "-l", sock};
        if (v == kEcho)
            argv.insert(argv.end(), {self_exe(), "--echo-server"});
        else
            argv.insert(argv.end(), {daemon_bin, "--log-target=stderr", "--log-level", "warning"});
    }
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) < 0)
        die("pipe2: %s", std::strerror(errno));
    uint64_t t_spawn = now_ns();
    pid_t pid = ::fork();
    if (pid == 0) {
        // systemd-socket-activate says "Listening on ..." on stderr once the socket listens.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); // kept across exec: never outlive us
        ::dup2(ready[1], 2);
        int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::unsetenv("LISTEN_FDS");
        ::unsetenv("LISTEN_PID");
        ::unsetenv("NOTIFY_SOCKET");
        std::vector<char *> cargv;
        for (auto &a : argv)
            cargv.push_back(a.data());
        cargv.push_back(nullptr);
        ::execv(cargv[0], cargv.data());
        _exit(127);
    }
    ::close(ready[1]);
    Fd out(ready[0]), pidfd(pidfd_open(pid));
    double us = 0;
    uint64_t t0 = 0;
    int fd = -1;
    if (v == kBound) {
        // No activation: the clock runs from the exec until the first successful connect's PING.
        t0 = t_spawn;
        while ((fd = connect_unix(sock, true)) < 0) {
            if (readable(pidfd.get(), 0))
                die("orphand exited at start-up");
            sleep_ns(20'000);
        }
    } else {
        char buf[256];
        std::string text;
        while (text.find("Listening on") == std::string::npos) {
            ssize_t n = ::read(out.get(), buf, sizeof(buf));
            if (n <= 0)
                die("systemd-socket-activate did not start listening");
            text.append(buf, static_cast<size_t>(n));
        }
        t0 = now_ns(); // this connection activates the service
        fd = connect_unix(sock);
    }
    proto::Record ping{0x600d, 0xf00d, proto::kPing}, echo{};
    write_all(fd, &ping, sizeof(ping));
    read_all(fd, &echo, sizeof(echo));
    us = static_cast<double>(now_ns() - t0) / 1000.0;
    ::close(fd);
    if (std::memcmp(&ping, &echo, sizeof(ping)) != 0)
        die("%s: bad PING echo", kNames[v]);
    pidfd_kill(pidfd.get(), SIGTERM);
    if (!readable(pidfd.get(), 10000))
        pidfd_kill(pidfd.get(), SIGKILL);
    reap_pidfd(pidfd.get());
    ::unlink(sock.c_str());
    ::rmdir(dir.c_str());
    return us;
}

} // namespace

int main(int argc, char **argv) {
    Args args{argc, argv};
    if (args.flag("--echo-server"))
        echo_server();
    size_t samples = static_cast<size_t>(args.num("--samples", 50));
    std::string activate = args.get("--activate", "/usr/bin/systemd-socket-activate");
    std::string daemon_bin = daemon_path(args);
    ::signal(SIGPIPE, SIG_IGN);
    if (::access(activate.c_str(), X_OK) < 0) {
        std::printf("SKIP: %s not found\n", activate.c_str());
        return 77;
    }
    std::vector<double> t[kVariants];
    for (size_t i = 0; i < samples; ++i)
        for (int k = 0; k < kVariants; ++k) {
            int v = static_cast<int>((k + i) % kVariants);
            t[v].push_back(sample(static_cast<Variant>(v), daemon_bin, activate));
        }
    Summary s[kVariants];
    for (int v = 0; v < kVariants; ++v) {
        s[v] = summarize(t[v]);
        note("start-up, %s: n=%zu p50=%s us p90=%s us max=%s us", kNames[v], s[v].n,
             fmt_num(s[v].p50).c_str(), fmt_num(s[v].p90).c_str(), fmt_num(s[v].max).c_str());
    }
    row(fmt("7. Start-up: activating connection to first PING answered (us), n=%zu", samples),
        fmt("%s (p90 %s)", fmt_num(s[kActivated].p50).c_str(), fmt_num(s[kActivated].p90).c_str()),
        fmt("echo server %s (p90 %s); self-bound orphand %s", fmt_num(s[kEcho].p50).c_str(),
            fmt_num(s[kEcho].p90).c_str(), fmt_num(s[kBound].p50).c_str()),
        fmt("%.2fx", s[kActivated].p50 / s[kEcho].p50), "-", "-");
    return 0;
}
