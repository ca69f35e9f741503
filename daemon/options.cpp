// SPDX-License-Identifier: MIT
// Command-line parsing for orphand.
#include "options.hpp"

#include <getopt.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "orphand/orphand.h"
#include "pidfd.hpp"

namespace orphand {
namespace {

uint32_t parse_count(const char *option, const char *text) {
    char *end;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (errno || *end || end == text || text[0] == '-' || v > UINT32_MAX)
        throw UsageError(fmt::format("invalid value for {}: {}", option, quoted(text)));
    return static_cast<uint32_t>(v);
}

} // namespace

const char *usage_text() {
    return "Usage: orphand [OPTIONS]\n"
           "Kill registered children when their registered parent process dies.\n"
           "\n"
           "  --socket PATH               listen on PATH (default: /run/orphand/orphand.sock as\n"
           "                              root, $XDG_RUNTIME_DIR/orphand.sock otherwise);\n"
           "                              ignored when systemd passes a socket\n"
           "  --signal SIG                first signal sent to children (default: SIGTERM)\n"
           "  --grace SECONDS|never       wait this long before SIGKILL (default: 5)\n"
           "  --log-target auto|stderr|journal\n"
           "                              where log entries go (default: auto)\n"
           "  --log-level LEVEL           debug, info, notice, warning or err (default: info)\n"
           "  --max-bindings-per-uid N    bindings one unprivileged uid may hold (default: 65536)\n"
           "  --max-bindings-per-parent N bindings one parent may have (default: 65536)\n"
           "  --max-connections N         connections at once (default: 4096)\n"
           "  --max-connections-per-uid N connections of one unprivileged uid (default: 128)\n"
           "                              (for every limit, 0 means unlimited)\n"
           "  --state-dir DIR             keep the binding log in DIR, so that bindings survive\n"
           "                              a restart or a crash (default: $RUNTIME_DIRECTORY,\n"
           "                              which systemd sets; none without it)\n"
           "  --no-state                  keep no binding log\n"
           "  -h, --help                  show this help\n"
           "  --version                   show the version\n";
}

// Where clients look (orphand/socket_path.h): the names come from the same header.
std::string default_socket_path() {
    if (::geteuid() == 0)
        return ORPHAND_SYSTEM_SOCKET;
    const char *runtime = std::getenv("XDG_RUNTIME_DIR");
    if (!runtime || runtime[0] != '/')
        throw UsageError("XDG_RUNTIME_DIR is not set (or not absolute): use --socket PATH");
    return std::string(runtime) + "/" ORPHAND_USER_SOCKET_NAME;
}

Options parse_options(int argc, char **argv) {
    enum {
        kSocket = 256,
        kSignal,
        kGrace,
        kLogTarget,
        kLogLevel,
        kMaxPerUid,
        kMaxPerParent,
        kMaxConn,
        kMaxConnPerUid,
        kStateDir,
        kNoState,
        kFdStore,
        kVersion,
    };
    static const struct option long_options[] = {
        {"socket", required_argument, nullptr, kSocket},
        {"signal", required_argument, nullptr, kSignal},
        {"grace", required_argument, nullptr, kGrace},
        {"log-target", required_argument, nullptr, kLogTarget},
        {"log-level", required_argument, nullptr, kLogLevel},
        {"max-bindings-per-uid", required_argument, nullptr, kMaxPerUid},
        {"max-bindings-per-parent", required_argument, nullptr, kMaxPerParent},
        {"max-connections", required_argument, nullptr, kMaxConn},
        {"max-connections-per-uid", required_argument, nullptr, kMaxConnPerUid},
        {"state-dir", required_argument, nullptr, kStateDir},
        {"no-state", no_argument, nullptr, kNoState},
        // Options of orphand 0.x's fd store, accepted so that an older unit still starts.
        {"fd-store", required_argument, nullptr, kFdStore},
        {"fd-store-delay", required_argument, nullptr, kFdStore},
        {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, kVersion},
        {nullptr, 0, nullptr, 0},
    };
    Options o;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":h", long_options, nullptr)) != -1) {
        std::string arg = optarg ? optarg : "";
        switch (c) {
        case kSocket:
            if (arg.empty() || arg[0] != '/')
                throw UsageError(
                    fmt::format("--socket needs an absolute path, got {}", quoted(arg)));
            o.socket_path = arg;
            break;
        case kSignal:
            o.policy.signal = parse_signal(arg);
            if (o.policy.signal < 0)
                throw UsageError(fmt::format("invalid signal: {}", quoted(arg)));
            break;
        case kGrace:
            if (!parse_grace(arg, &o.policy.grace_ms))
                throw UsageError(
                    fmt::format("invalid grace period (seconds or \"never\"): {}", quoted(arg)));
            break;
        case kLogTarget:
            if (arg == "auto")
                o.log_target = LogTarget::Auto;
            else if (arg == "stderr")
                o.log_target = LogTarget::Stderr;
            else if (arg == "journal")
                o.log_target = LogTarget::Journal;
            else
                throw UsageError(
                    fmt::format("invalid log target (auto, stderr, journal): {}", quoted(arg)));
            break;
        case kLogLevel:
            if (arg == "debug")
                o.log_level = LOG_DEBUG;
            else if (arg == "info")
                o.log_level = LOG_INFO;
            else if (arg == "notice")
                o.log_level = LOG_NOTICE;
            else if (arg == "warning")
                o.log_level = LOG_WARNING;
            else if (arg == "err")
                o.log_level = LOG_ERR;
            else
                throw UsageError(fmt::format("invalid log level: {}", quoted(arg)));
            break;
        case kMaxPerUid:
            o.limits.bindings_per_uid = parse_count("--max-bindings-per-uid", optarg);
            break;
        case kMaxPerParent:
            o.limits.bindings_per_parent = parse_count("--max-bindings-per-parent", optarg);
            break;
        case kMaxConn:
            o.max_connections = parse_count("--max-connections", optarg);
            break;
        case kMaxConnPerUid:
            o.max_connections_per_uid = parse_count("--max-connections-per-uid", optarg);
            break;
        case kStateDir:
            if (arg.empty() || arg[0] != '/')
                throw UsageError(
                    fmt::format("--state-dir needs an absolute path, got {}", quoted(arg)));
            o.state_dir = arg;
            o.state = Options::StateChoice::Dir;
            break;
        case kNoState:
            o.state = Options::StateChoice::None;
            break;
        case kFdStore:
            o.obsolete.emplace_back("--fd-store");
            break;
        case 'h':
            o.help = true;
            break;
        case kVersion:
            o.version = true;
            break;
        case ':':
            throw UsageError(fmt::format("option {} needs a value", quoted(argv[optind - 1])));
        default:
            throw UsageError(fmt::format("unknown option {}", quoted(argv[optind - 1])));
        }
    }
    if (optind < argc)
        throw UsageError(fmt::format("unexpected argument {}", quoted(argv[optind])));
    return o;
}

} // namespace orphand
