// SPDX-License-Identifier: MIT
// orphanctl: talk to orphand in acknowledged mode (ping, register, unregister, list, status, run).
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "orphand/orphand.h"
#include "orphand/protocol.hpp"
#include "orphand_config.h"
#include "pidfd_sys.hpp"
#include "signals.hpp"
#include "unique_fd.hpp"

namespace {

using namespace orphand;

constexpr int kTimeoutMs = 10000;

const char *kUsage =
    "Usage: orphanctl [--socket PATH] COMMAND\n"
    "\n"
    "Commands:\n"
    "  ping                          check that orphand answers\n"
    "  register PARENT CHILD [--signal SIG] [--grace SECONDS|never] [--scope SCOPE]\n"
    "                                kill CHILD (and SCOPE's other processes) when PARENT dies\n"
    "  unregister PARENT CHILD       forget that binding\n"
    "  list                          show the live bindings\n"
    "  status                        show the daemon's state and kernel features\n"
    "  run [--scope SCOPE] [--] CMD [ARGS...]\n"
    "                                run CMD with orphand-forkwait.so preloaded\n"
    "\n"
    "SCOPE is process (the child alone, the default), pgroup (the child's process group),\n"
    "tree (the child and its descendants) or cgroup (every process in the child's cgroup).\n"
    "\n"
    "The socket is --socket, else $ORPHAND_SOCKET, else $XDG_RUNTIME_DIR/orphand.sock for a\n"
    "user whose daemon runs there, else /run/orphand/orphand.sock.\n";

[[noreturn]] void usage_error(const std::string &message) {
    std::fprintf(stderr, "orphanctl: %s\nTry 'orphanctl --help'.\n", message.c_str());
    std::exit(2);
}

[[noreturn]] void die(const std::string &message) {
    std::fprintf(stderr, "orphanctl: %s\n", message.c_str());
    std::exit(1);
}

// The rule every client follows (orphand(3)); a path too long for a socket is refused when
// connecting, with its name.
std::string socket_path(const std::string &option) {
    std::vector<char> buf(option.size() + 4096);
    for (;;) {
        int n = orphand_socket_path(option.c_str(), buf.data(), buf.size());
        if (n >= 0)
            return std::string(buf.data(), static_cast<size_t>(n));
        buf.resize(buf.size() * 2);
    }
}

// Ends orphanctl for a request that got no reply from the daemon at `path` (liborphand's
// ORPHAND_REASON_CLIENT, with the error `e`).
[[noreturn]] void die_unanswered(const std::string &path, int e) {
    switch (-e) {
    case ETIMEDOUT:
        die(fmt::format("no reply from {} within {} s", path, kTimeoutMs / 1000));
    case ECONNRESET:
    case EPIPE:
        die("the daemon closed the connection");
    case EPROTO:
        die("unexpected reply from the daemon");
    default:
        die(fmt::format("request to {}: {}", path, std::strerror(-e)));
    }
}

// An acknowledged-mode connection (liborphand's); ends orphanctl if there is none.
class Connection {
  public:
    explicit Connection(const std::string &path) : path_(path) {
        int e = orphand_connect(&conn_, path.c_str(), kTimeoutMs);
        if (e == 0)
            return;
        if (e == -ENAMETOOLONG)
            die(fmt::format("socket path \"{}\" is too long", path));
        if (e == -EPROTO)
            die("the daemon refused acknowledged mode");
        // Connected, but HELLO was not answered.
        if (e == -ETIMEDOUT || e == -ECONNRESET || e == -EPIPE)
            die_unanswered(path, e);
        die(fmt::format("cannot connect to {}: {} (is orphand running?)", path, std::strerror(-e)));
    }
    ~Connection() { orphand_close(conn_); }
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    orphand_conn *get() const { return conn_; }
    const std::string &path() const { return path_; }
    // The protocol version of this connection.
    uint32_t version() const { return orphand_protocol_version(conn_); }

  private:
    std::string path_;
    orphand_conn *conn_ = nullptr;
};

// A scope by its name (proto::scope_name); anything else is a usage error.
uint32_t parse_scope(const std::string &text) {
    uint32_t scope = proto::scope_from_name(text.c_str());
    if (scope >= proto::kScopeCount)
        usage_error(fmt::format("invalid scope: \"{}\" (process, pgroup, tree or cgroup)", text));
    return scope;
}

uint32_t parse_pid(const char *what, const char *text) {
    char *end;
    errno = 0;
    long v = std::strtol(text, &end, 10);
    if (errno || *end || end == text || v <= 0 || v > INT32_MAX)
        usage_error(fmt::format("invalid {} pid: \"{}\"", what, text));
    return static_cast<uint32_t>(v);
}

// Prints the outcome of a request that returned `error` with `reason`: 0 if it was accepted, 1
// if the daemon refused it. Ends orphanctl if there was no reply.
int report(const Connection &c, int error, uint32_t reason, const std::string &what) {
    if (reason == ORPHAND_REASON_CLIENT)
        die_unanswered(c.path(), error);
    if (error < 0) {
        std::fprintf(stderr, "orphanctl: %s refused: %s (%s)\n", what.c_str(),
                     orphand_reason_text(reason), std::strerror(-error));
        return 1;
    }
    if (reason != proto::kOk)
        std::printf("%s: %s\n", what.c_str(), orphand_reason_text(reason));
    return 0;
}

std::string format_duration(uint64_t ms) {
    uint64_t s = ms / 1000;
    if (s < 60)
        return fmt::format("{}.{}s", s, ms % 1000 / 100);
    if (s < 3600)
        return fmt::format("{}m{:02}s", s / 60, s % 60);
    if (s < 86400)
        return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
    return fmt::format("{}d{:02}h", s / 86400, s / 3600 % 24);
}

std::string format_grace(uint32_t ms) {
    if (ms == proto::kGraceNever)
        return "never";
    return ms % 1000 == 0 ? fmt::format("{}s", ms / 1000) : fmt::format("{}ms", ms);
}

int cmd_register(const std::string &path, std::vector<std::string> args) {
    struct orphand_policy policy {};
    bool scoped = false;
    std::vector<std::string> pos;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string &a = args[i];
        auto value = [&](const char *name) -> std::string {
            auto eq = a.find('=');
            if (eq != std::string::npos)
                return a.substr(eq + 1);
            if (i + 1 >= args.size())
                usage_error(fmt::format("{} needs a value", name));
            return args[++i];
        };
        if (a == "--signal" || a.rfind("--signal=", 0) == 0) {
            std::string v = value("--signal");
            policy.signal = parse_signal(v);
            if (policy.signal < 0)
                usage_error(fmt::format("invalid signal: \"{}\"", v));
            policy.flags |= ORPHAND_FLAG_SIGNAL;
        } else if (a == "--grace" || a.rfind("--grace=", 0) == 0) {
            std::string v = value("--grace");
            if (!parse_grace(v, &policy.grace_ms))
                usage_error(fmt::format("invalid grace period: \"{}\"", v));
            policy.flags |= ORPHAND_FLAG_GRACE;
        } else if (a == "--scope" || a.rfind("--scope=", 0) == 0) {
            policy.scope = parse_scope(value("--scope"));
            scoped = true;
        } else {
            pos.push_back(a);
        }
    }
    if (pos.size() != 2)
        usage_error("register needs PARENT and CHILD");
    if (scoped)
        policy.flags |= ORPHAND_POLICY_SCOPE;
    uint32_t parent_pid = parse_pid("parent", pos[0].c_str());
    uint32_t child_pid = parse_pid("child", pos[1].c_str());
    // Pidfds, opened before anything is sent, make the daemon hold exactly the processes named
    // here, even if one of them exits (and its pid is reused) before the request is read.
    UniqueFd child(sys_pidfd_open(static_cast<pid_t>(child_pid), 0));
    if (!child)
        die(fmt::format("child {}: {}", child_pid, std::strerror(errno)));
    UniqueFd parent(sys_pidfd_open(static_cast<pid_t>(parent_pid), 0));
    Connection c(path);
    // A daemon of protocol version 1 has no scopes: it would refuse one as a bad policy.
    if (policy.scope != proto::kScopeProcess && c.version() < proto::kVersionScopes)
        die(fmt::format("the daemon on {} is too old for scope {} (protocol version {})", path,
                        proto::scope_name(policy.scope), c.version()));
    uint32_t reason = 0;
    // A parent that no longer exists is sent as a bare pid: the daemon kills the child at once.
    int e = parent ? orphand_bind_pidfd(c.get(), parent.get(), child.get(), &policy, &reason)
                   : orphand_bind(c.get(), static_cast<pid_t>(parent_pid),
                                  static_cast<pid_t>(child_pid), &policy, &reason);
    return report(c, e, reason, fmt::format("register {} {}", parent_pid, child_pid));
}

int cmd_unregister(const std::string &path, const std::vector<std::string> &args) {
    if (args.size() != 2)
        usage_error("unregister needs PARENT and CHILD");
    uint32_t parent = parse_pid("parent", args[0].c_str());
    uint32_t child = parse_pid("child", args[1].c_str());
    Connection c(path);
    uint32_t reason = 0;
    int e = orphand_unbind(c.get(), static_cast<pid_t>(parent), static_cast<pid_t>(child), &reason);
    return report(c, e, reason, fmt::format("unregister {} {}", parent, child));
}

int cmd_list(const Connection &c) {
    // Version 2 records carry the scope; from a version 1 daemon every scope is process.
    struct orphand_binding_info2 *infos = nullptr;
    size_t count = 0;
    uint32_t reason = 0;
    int e = orphand_list2(c.get(), &infos, &count, &reason);
    if (report(c, e, reason, "list") != 0)
        return 1;
    if (count == 0) {
        std::printf("no bindings\n");
        return 0;
    }
    std::printf("%-24s %-24s %-12s %-9s %-6s %-7s %s\n", "PARENT", "CHILD", "REGISTRANT", "SIGNAL",
                "GRACE", "SCOPE", "AGE");
    for (size_t n = 0; n < count; ++n) {
        const orphand_binding_info2 &i2 = infos[n];
        const orphand_binding_info &i = i2.info;
        auto comm = [](const char *s) { return std::string(s, strnlen(s, proto::kCommLen)); };
        std::string parent = fmt::format("{}[{}]", comm(i.parent_comm), i.parent_pid);
        std::string child = fmt::format("{}[{}]", comm(i.child_comm), i.child_pid);
        std::string who = fmt::format("{}/{}", i.registrant_uid, i.registrant_pid);
        std::printf("%-24s %-24s %-12s %-9s %-6s %-7s %s\n", parent.c_str(), child.c_str(),
                    who.c_str(), signal_name(i.signal).c_str(), format_grace(i.grace_ms).c_str(),
                    proto::scope_name(i2.scope), format_duration(i.age_ms).c_str());
    }
    std::printf("%zu binding%s\n", count, count == 1 ? "" : "s");
    orphand_list2_free(infos);
    return 0;
}

int cmd_status(const Connection &c) {
    orphand_status_info s{};
    uint32_t reason = 0;
    int e = orphand_status(c.get(), &s, &reason);
    if (report(c, e, reason, "status") != 0)
        return 1;
    const std::string &path = c.path();
    auto yes = [&](uint32_t bit) { return (s.features & bit) != 0; };
    std::printf("orphand %s (pid %u) on %s, up %s\n",
                std::string(s.version, strnlen(s.version, 16)).c_str(), s.daemon_pid, path.c_str(),
                format_duration(s.uptime_ms).c_str());
    if (s.scope == proto::kStatusOwn)
        std::printf("yours: %u bindings; %llu killed since start; %u connections (other users' "
                    "figures are shown to root and CAP_KILL only)\n",
                    s.bindings, static_cast<unsigned long long>(s.kills), s.connections);
    else
        std::printf("watching %u parents, %u children; %u bindings; %llu killed since start; "
                    "%u connections\n",
                    s.parents, s.children, s.bindings, static_cast<unsigned long long>(s.kills),
                    s.connections);
    std::printf("default policy: %s, then SIGKILL after %s\n",
                signal_name(static_cast<int>(s.default_signal)).c_str(),
                format_grace(s.default_grace_ms).c_str());
    std::printf("kernel features:\n");
    std::printf("  SO_PEERPIDFD     %s\n",
                yes(proto::kFeaturePeerPidfd)
                    ? "yes: a client's own children are bound to it without a pid race"
                    : "no (Linux < 6.5): the client is identified by pid; racy if it exits "
                      "before orphand reads its request");
    std::printf("  PIDFD_GET_INFO   %s\n",
                yes(proto::kFeaturePidfdInfo)
                    ? "yes: credentials and pids read through the pidfd"
                    : "no (Linux < 6.13): read from /proc, checked against the pidfd");
    std::printf("  exit status      %s\n",
                yes(proto::kFeatureExitInfo)
                    ? "yes: a parent's exit status is logged even once it is reaped"
                    : "zombies only (Linux < 6.15): logged only while the parent is unreaped");
    std::printf("  pidfs            %s\n", yes(proto::kFeaturePidfsInode) ? "yes" : "no");
    std::printf("  restart safety   %s\n",
                yes(proto::kFeatureDurable)
                    ? "yes: bindings survive a restart or a crash (binding log)"
                    : "no: bindings are lost if orphand restarts (no --state-dir)");
    std::printf("  journal          %s\n", yes(proto::kFeatureJournal) ? "yes" : "no (stderr)");
    std::printf("  pgroup signal    %s\n",
                yes(proto::kFeaturePgroupSignal)
                    ? "yes: scope pgroup signals a whole process group at once"
                    : "no (Linux < 6.9): scope pgroup signals the group's members one by one");
    std::printf("  cgroup scope     %s\n", yes(proto::kFeatureCgroup)
                                               ? "yes: cgroup v2"
                                               : "no: scope cgroup is refused (no cgroup v2)");
    return 0;
}

// The shim to preload: $ORPHAND_SHIM, else the installed one, else the one built beside this
// orphanctl (build/ctl/orphanctl -> build/shim/orphand-forkwait.so).
std::string shim_path() {
    if (const char *env = std::getenv("ORPHAND_SHIM"); env && *env)
        return env;
    if (::access(ORPHAND_SHIM_PATH, R_OK) == 0)
        return ORPHAND_SHIM_PATH;
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        std::string dir(self, static_cast<size_t>(n));
        dir.erase(dir.rfind('/'));
        std::string built = dir + "/../shim/orphand-forkwait.so";
        if (::access(built.c_str(), R_OK) == 0)
            return built;
    }
    return ORPHAND_SHIM_PATH;
}

int cmd_run(std::vector<std::string> args, const std::string &socket_option) {
    // Options end at "--" or at the command.
    const char *scope = nullptr;
    size_t i = 0;
    for (; i < args.size(); ++i) {
        const std::string &a = args[i];
        if (a == "--") {
            ++i;
            break;
        }
        if (a == "--scope" || a.rfind("--scope=", 0) == 0) {
            std::string v;
            if (a.size() > 7)
                v = a.substr(8);
            else if (i + 1 < args.size())
                v = args[++i];
            else
                usage_error("--scope needs a value");
            scope = proto::scope_name(parse_scope(v));
        } else if (!a.empty() && a[0] == '-') {
            usage_error(fmt::format("unknown run option \"{}\"", a));
        } else {
            break;
        }
    }
    args.erase(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(i));
    if (args.empty())
        usage_error("run needs a command");
    std::string shim = shim_path();
    if (::access(shim.c_str(), R_OK) != 0)
        die(fmt::format("cannot read the shim {}: {}", shim, std::strerror(errno)));
    std::string preload = shim;
    if (const char *old = std::getenv("LD_PRELOAD"); old && *old)
        preload += std::string(":") + old;
    ::setenv("LD_PRELOAD", preload.c_str(), 1);
    // The shim finds the daemon through ORPHAND_SOCKET; --socket sets it for the command, as
    // --scope sets the shim's ORPHAND_SCOPE.
    if (!socket_option.empty())
        ::setenv("ORPHAND_SOCKET", socket_option.c_str(), 1);
    if (scope)
        ::setenv("ORPHAND_SCOPE", scope, 1);
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "orphanctl: cannot run %s: %s\n", argv[0], std::strerror(errno));
    return errno == ENOENT ? 127 : 126;
}

} // namespace

int main(int argc, char **argv) {
    std::string socket_option;
    int i = 1;
    for (; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            return 0;
        }
        if (a == "--version") {
            std::printf("orphanctl %s\n", ORPHAND_VERSION);
            return 0;
        }
        if (a == "--socket") {
            if (i + 1 >= argc)
                usage_error("--socket needs a path");
            socket_option = argv[++i];
        } else if (a.rfind("--socket=", 0) == 0) {
            socket_option = a.substr(9);
        } else if (!a.empty() && a[0] == '-') {
            usage_error(fmt::format("unknown option \"{}\"", a));
        } else {
            break;
        }
    }
    if (i >= argc)
        usage_error("no command given");
    std::string command = argv[i];
    std::vector<std::string> args(argv + i + 1, argv + argc);
    if (command == "run")
        return cmd_run(args, socket_option);
    std::string path = socket_path(socket_option);
    if (command == "ping") {
        if (!args.empty())
            usage_error("ping takes no arguments");
        Connection c(path);
        uint32_t reason = 0;
        int e = orphand_ping(c.get(), &reason);
        if (report(c, e, reason, "ping") != 0)
            return 1;
        std::printf("orphand is alive on %s\n", path.c_str());
        return 0;
    }
    // Arguments are checked before connecting: a usage error is one whether or not a daemon
    // is running.
    if (command == "register")
        return cmd_register(path, args);
    if (command == "unregister")
        return cmd_unregister(path, args);
    if (command == "list" || command == "status") {
        if (!args.empty())
            usage_error(fmt::format("{} takes no arguments", command));
        Connection c(path);
        return command == "list" ? cmd_list(c) : cmd_status(c);
    }
    usage_error(fmt::format("unknown command \"{}\"", command));
}
