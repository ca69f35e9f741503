// SPDX-License-Identifier: MIT
// Signal names and grace periods, parsed and printed the same way by orphand and its clients.
#include "signals.hpp"

#include <signal.h>
#include <string.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "orphand/orphand.h"

namespace orphand {

std::string signal_name(int sig) {
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        return std::string("SIG") + abbrev;
    return "signal " + std::to_string(sig);
}

int parse_signal(const std::string &text) {
    if (text.empty())
        return -1;
    char *end;
    long n = std::strtol(text.c_str(), &end, 10);
    if (*end == '\0')
        return n >= 1 && n < NSIG ? static_cast<int>(n) : -1;
    std::string_view name = text;
    if (name.substr(0, 3) == "SIG")
        name.remove_prefix(3);
    for (int sig = 1; sig < NSIG; ++sig) {
        const char *abbrev = sigabbrev_np(sig);
        if (abbrev && name == abbrev)
            return sig;
    }
    return -1;
}

bool parse_grace(const std::string &text, uint32_t *grace_ms) {
    if (text == "never" || text == "infinity") {
        *grace_ms = ORPHAND_GRACE_NEVER;
        return true;
    }
    char *end;
    errno = 0;
    double seconds = std::strtod(text.c_str(), &end);
    if (errno || *end || text.empty() || !std::isfinite(seconds) || seconds < 0 ||
        seconds * 1000 >= ORPHAND_GRACE_NEVER)
        return false;
    *grace_ms = static_cast<uint32_t>(std::llround(seconds * 1000));
    return true;
}

} // namespace orphand
