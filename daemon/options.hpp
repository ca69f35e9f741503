// SPDX-License-Identifier: MIT
// Command-line options of orphand.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "log.hpp"
#include "registry.hpp"
#include "signals.hpp"

namespace orphand {

struct Options {
    std::string socket_path; // empty: the default for our uid
    Policy policy;           // default first signal and grace period
    LogTarget log_target = LogTarget::Auto;
    int log_level = LOG_INFO;
    Limits limits{65536, 65536, 0};
    uint32_t max_connections = 4096;
    // Each connection may hold up to 6 of the daemon's fds (its socket, the peer's pidfd and
    // two batches of passed fds): 128 keeps one user within the fd reserve.
    uint32_t max_connections_per_uid = 128;
    // Where the binding log goes: --state-dir, --no-state, or $RUNTIME_DIRECTORY if set.
    enum class StateChoice { Default, Dir, None } state = StateChoice::Default;
    std::string state_dir;
    std::vector<std::string> obsolete; // options accepted but no longer meaningful
    bool help = false;
    bool version = false;
};

// A usage error: the message names the problem; main exits with status 2.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Parses argv; throws UsageError.
Options parse_options(int argc, char **argv);

// The --help text.
const char *usage_text();

// /run/orphand/orphand.sock as root, $XDG_RUNTIME_DIR/orphand.sock otherwise. Throws
// UsageError when neither applies.
std::string default_socket_path();

} // namespace orphand
