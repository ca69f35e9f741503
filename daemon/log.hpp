// SPDX-License-Identifier: MIT
// Logging: structured journal entries, or text with <N> priority prefixes on stderr.
#pragma once

#include <syslog.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace orphand {

enum class LogTarget { Auto, Stderr, Journal };

// Chooses where log entries go. Auto means the journal when stderr is connected to it
// (JOURNAL_STREAM names stderr's device and inode), stderr otherwise; never decided by
// sd_journal_send's return value, which reports success when no journald listens.
void log_setup(LogTarget target, int max_priority = LOG_INFO);
bool log_to_journal();

// MESSAGE_IDs of orphand's events (see systemd/orphand.catalog).
namespace msgid {
inline constexpr const char *kKill = "2daf3cc9baae451eb6cfd21148714be8";
inline constexpr const char *kEscalate = "cdc2ec9f3e4f43148dde74532cbc4e79";
inline constexpr const char *kRefused = "0034ccce376642cfa527a85967d8a523";
inline constexpr const char *kParentAlreadyDead = "06dfb135339247e09d098e744577fb5e";
inline constexpr const char *kKillRefused = "67050742a07b4bd686bcb770f90ed2cb";
} // namespace msgid

// One structured field: NAME=value (NAME in journal field syntax, e.g. "ORPHAND_CHILD_PID").
struct LogField {
    std::string_view name;
    std::string value;
};

// Writes one entry. `message_id` may be null. Fields go to the journal only; the text is the
// same on both targets. Never waits for the journal (or a socket on stderr): an entry it does
// not take at once is dropped and counted, and the next entry it takes is preceded by a warning
// that gives the count (field ORPHAND_DROPPED). A terminal, pipe or file on stderr is written
// to with a blocking write.
void log_entry(int priority, const char *message_id, std::string_view text,
               std::initializer_list<LogField> fields = {});

// Entries dropped since start because the journal or stderr's socket did not take them.
uint64_t log_dropped_total();

template <typename... Args>
void log_fmt(int priority, fmt::format_string<Args...> format, Args &&...args) {
    log_entry(priority, nullptr, fmt::format(format, std::forward<Args>(args)...));
}

#define ORPHAND_LOG(prio, ...) ::orphand::log_fmt(prio, __VA_ARGS__)

// A token bucket for logging input that clients control: `burst` entries at once, then `rate`
// per second. allow() tells whether to log now; suppressed() counts what was dropped since the
// last allowed entry (and resets).
class LogLimiter {
  public:
    LogLimiter(unsigned burst, unsigned rate) : burst_(burst), rate_(rate), tokens_(burst) {}
    bool allow();
    uint64_t take_suppressed() { return std::exchange(suppressed_, 0); }

  private:
    unsigned burst_, rate_;
    double tokens_;
    uint64_t last_ns_ = 0;
    uint64_t suppressed_ = 0;
};

// Quotes a client-controlled string for a log line: "text" with escapes for control bytes.
std::string quoted(std::string_view text);

} // namespace orphand
