// SPDX-License-Identifier: MIT
// Signal names and policy values as users write them: "SIGTERM", "TERM", "15"; "5", "never".
#pragma once

#include <cstdint>
#include <string>

namespace orphand {

// "SIGTERM" for 15; "signal 42" for others.
std::string signal_name(int sig);
// Parses "TERM", "SIGTERM", "15"; -1 if invalid.
int parse_signal(const std::string &text);

// Parses a grace period in seconds ("5", "0.5", "never"); milliseconds or ORPHAND_GRACE_NEVER.
// Returns false if invalid.
bool parse_grace(const std::string &text, uint32_t *grace_ms);

} // namespace orphand
