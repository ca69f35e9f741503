// SPDX-License-Identifier: MIT
// Logging to the journal (structured) or stderr (text with <N> prefixes).
#include "log.hpp"

#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include <systemd/sd-journal.h>

namespace orphand {
namespace {

bool g_journal = false;
bool g_prefix = true;
int g_max_priority = LOG_INFO;

bool stderr_is_journal() {
    const char *stream = std::getenv("JOURNAL_STREAM");
    if (!stream)
        return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2)
        return false;
    struct stat st {};
    return ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

uint64_t now_ns() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// The text of an entry as one line: control bytes are escaped as \xNN (a newline in a process
// name could otherwise forge a second entry, with a priority of its choosing). Backslashes are
// left alone, so that text already escaped by quoted() reads the same.
std::string one_line(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (unsigned char c : text) {
        if (c < 0x20 || c == 0x7f)
            out += fmt::format("\\x{:02x}", c);
        else
            out += static_cast<char>(c);
    }
    return out;
}

} // namespace

void log_setup(LogTarget target, int max_priority) {
    g_max_priority = max_priority;
    g_journal = target == LogTarget::Journal || (target == LogTarget::Auto && stderr_is_journal());
    // A terminal gets plain text; a pipe or file gets the <N> prefixes that systemd and
    // syslog-style collectors parse.
    g_prefix = !::isatty(STDERR_FILENO);
}

bool log_to_journal() {
    return g_journal;
}

void log_entry(int priority, const char *message_id, std::string_view text,
               std::initializer_list<LogField> fields) {
    if (priority > g_max_priority)
        return;
    // Entries quote what clients control (process names among it): on every target, one entry
    // is one line. The structured fields keep the raw bytes; the journal stores them safely.
    std::string line_text = one_line(text);
    text = line_text;
    if (!g_journal) {
        std::string line =
            g_prefix ? fmt::format("<{}>{}\n", priority, text) : fmt::format("{}\n", text);
        // One write per entry, so lines from a crash-looping daemon never interleave.
        (void)!::write(STDERR_FILENO, line.data(), line.size());
        return;
    }
    std::vector<std::string> storage;
    storage.reserve(fields.size() + 4);
    storage.push_back(fmt::format("MESSAGE={}", text));
    storage.push_back(fmt::format("PRIORITY={}", priority));
    storage.push_back("SYSLOG_IDENTIFIER=orphand");
    if (message_id)
        storage.push_back(fmt::format("MESSAGE_ID={}", message_id));
    for (const auto &f : fields)
        storage.push_back(fmt::format("{}={}", f.name, f.value));
    std::vector<struct iovec> iov;
    iov.reserve(storage.size());
    for (auto &s : storage)
        iov.push_back({s.data(), s.size()});
    int r = sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
    if (r < 0) {
        std::string line = fmt::format("<{}>{}\n", priority, text);
        (void)!::write(STDERR_FILENO, line.data(), line.size());
    }
}

bool LogLimiter::allow() {
    uint64_t now = now_ns();
    if (last_ns_ != 0) {
        tokens_ += static_cast<double>(now - last_ns_) * rate_ / 1e9;
        if (tokens_ > burst_)
            tokens_ = burst_;
    }
    last_ns_ = now;
    if (tokens_ >= 1.0) {
        tokens_ -= 1.0;
        return true;
    }
    ++suppressed_;
    return false;
}

std::string quoted(std::string_view text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
            out += fmt::format("\\x{:02x}", c);
        } else {
            out += static_cast<char>(c);
        }
    }
    out += '"';
    return out;
}

} // namespace orphand
