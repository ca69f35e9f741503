// SPDX-License-Identifier: MIT
// Logging to the journal (structured) or stderr (text with <N> prefixes).
#include "log.hpp"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "unique_fd.hpp"

namespace orphand {
namespace {

// journald's native protocol socket (systemd.io/JOURNAL_NATIVE_PROTOCOL).
constexpr char kJournalSocket[] = "/run/systemd/journal/socket";
constexpr uint64_t kReconnectNs = 1000000000u;

// Logging state, used from the event loop's thread only (as the rest of the daemon's logging).
bool g_journal = false;
bool g_prefix = true;
bool g_stderr_socket = false;
int g_max_priority = LOG_INFO;

// The connected journal socket, and when we last tried to connect it (0: never).
UniqueFd g_journal_fd;
uint64_t g_connect_ns = 0;

// Entries the target did not take: since the last "dropped" report, and since start.
uint64_t g_dropped = 0;
uint64_t g_dropped_total = 0;

// What a stream socket on stderr has not yet taken of a line it took part of: sent before
// anything else, so that lines never interleave.
std::string g_stderr_tail;

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

// Appends one field in the native protocol: NAME=value\n, or, for a value with a newline (which
// would end the field early), NAME\n, the value's size as 64-bit little endian, value, \n.
void append_field(std::string &out, std::string_view name, std::string_view value) {
    out += name;
    if (value.find('\n') == std::string_view::npos) {
        out += '=';
    } else {
        out += '\n';
        uint64_t size = value.size();
        for (int i = 0; i < 8; ++i)
            out += static_cast<char>((size >> (8 * i)) & 0xff);
    }
    out += value;
    out += '\n';
}

std::string journal_datagram(int priority, const char *message_id, std::string_view text,
                             std::initializer_list<LogField> fields) {
    std::string out;
    out.reserve(256 + text.size());
    append_field(out, "MESSAGE", text);
    append_field(out, "PRIORITY", std::to_string(priority));
    append_field(out, "SYSLOG_IDENTIFIER", "orphand");
    if (message_id)
        append_field(out, "MESSAGE_ID", message_id);
    for (const auto &f : fields)
        append_field(out, f.name, f.value);
    return out;
}

// Connects the journal socket, unless it is connected or the last attempt was less than a
// second ago (journald absent: one failed connect a second, not one per entry).
bool journal_connect() {
    if (g_journal_fd)
        return true;
    uint64_t now = now_ns();
    if (g_connect_ns != 0 && now - g_connect_ns < kReconnectNs)
        return false;
    g_connect_ns = now;
    UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        return false;
    // A larger send buffer rides out bursts that journald takes a moment to read, as
    // libsystemd's client does; the kernel caps it, and a small buffer still works.
    int sndbuf = 8 << 20;
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    static_assert(sizeof(kJournalSocket) <= sizeof(addr.sun_path));
    std::memcpy(addr.sun_path, kJournalSocket, sizeof(kJournalSocket));
    if (::connect(fd.get(), reinterpret_cast<const struct sockaddr *>(&addr), sizeof(addr)) < 0)
        return false;
    g_journal_fd = std::move(fd);
    return true;
}

// Sends one entry to the journal without waiting. False if the journal did not take it: its
// queue is full (EAGAIN), it is not there (ENOENT, ECONNREFUSED), or the entry is too large
// (EMSGSIZE; entries are small, so there is no memfd path).
bool journal_send(const std::string &datagram) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (!journal_connect())
            return false;
        if (::send(g_journal_fd.get(), datagram.data(), datagram.size(),
                   MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
            return true;
        int err = errno;
        if (err != ECONNREFUSED && err != ENOTCONN && err != ECONNRESET && err != EPIPE &&
            err != ENOENT)
            return false;
        // The socket we connected to is gone (journald restarted): connect to its successor,
        // now if the last attempt is a second old, else with a later entry.
        g_journal_fd.reset();
    }
    return false;
}

// Sends one line to stderr's socket without waiting. False if nothing of it was taken. A
// stream socket may take part of a line: the rest goes first with the next one.
bool stderr_send(std::string_view line) {
    while (!g_stderr_tail.empty()) {
        ssize_t n = ::send(STDERR_FILENO, g_stderr_tail.data(), g_stderr_tail.size(),
                           MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        g_stderr_tail.erase(0, static_cast<size_t>(n));
    }
    ssize_t n = ::send(STDERR_FILENO, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0)
        return false;
    if (static_cast<size_t>(n) < line.size())
        g_stderr_tail.assign(line.substr(static_cast<size_t>(n)));
    return true;
}

// Sends an entry to a target that must not block the event loop: the journal, or a socket on
// stderr. False if the target did not take it.
bool send_entry(int priority, const char *message_id, std::string_view text,
                std::initializer_list<LogField> fields) {
    if (g_journal)
        return journal_send(journal_datagram(priority, message_id, text, fields));
    std::string line =
        g_prefix ? fmt::format("<{}>{}\n", priority, text) : fmt::format("{}\n", text);
    return stderr_send(line);
}

} // namespace

void log_setup(LogTarget target, int max_priority) {
    g_max_priority = max_priority;
    g_journal = target == LogTarget::Journal || (target == LogTarget::Auto && stderr_is_journal());
    // A terminal gets plain text; a pipe or file gets the <N> prefixes that systemd and
    // syslog-style collectors parse.
    g_prefix = !::isatty(STDERR_FILENO);
    struct stat st {};
    g_stderr_socket = ::fstat(STDERR_FILENO, &st) == 0 && S_ISSOCK(st.st_mode);
    g_journal_fd.reset();
    g_connect_ns = 0;
    g_stderr_tail.clear();
}

bool log_to_journal() {
    return g_journal;
}

uint64_t log_dropped_total() {
    return g_dropped_total;
}

void log_entry(int priority, const char *message_id, std::string_view text,
               std::initializer_list<LogField> fields) {
    if (priority > g_max_priority)
        return;
    // Entries quote what clients control (process names among it): on every target, one entry
    // is one line. The structured fields keep the raw bytes; the journal stores them safely.
    std::string line_text = one_line(text);
    text = line_text;
    if (!g_journal && !g_stderr_socket) {
        // A terminal, pipe or file: an operator running orphand in the foreground, who would
        // rather wait than lose lines, and no shared collector that can stall. So this write
        // may block. One write per entry, so lines from a crash-looping daemon never interleave.
        std::string line =
            g_prefix ? fmt::format("<{}>{}\n", priority, text) : fmt::format("{}\n", text);
        (void)!::write(STDERR_FILENO, line.data(), line.size());
        return;
    }
    // The journal or a socket on stderr (journald's stream, a collector): a slow or stopped
    // reader must never stall the event loop and delay kills, so entries it does not take now
    // are dropped and counted, and the count is reported once it takes entries again.
    if (g_dropped > 0) {
        std::string report =
            g_dropped == 1
                ? fmt::format("1 log entry was dropped: the {} was not accepting it",
                              g_journal ? "journal" : "stderr socket")
                : fmt::format("{} log entries were dropped: the {} was not accepting them",
                              g_dropped, g_journal ? "journal" : "stderr socket");
        // Sent whatever the log level: the dropped entries passed it.
        if (!send_entry(LOG_WARNING, nullptr, report,
                        {{"ORPHAND_DROPPED", std::to_string(g_dropped)}})) {
            // Still not taking entries; this one is not sent before the report either.
            ++g_dropped;
            ++g_dropped_total;
            return;
        }
        g_dropped = 0;
    }
    if (!send_entry(priority, message_id, text, fields)) {
        ++g_dropped;
        ++g_dropped_total;
        // An error that ends orphand (logged once, at exit) is not left to a report that would
        // never come: a terminal, pipe or file on stderr gets it.
        if (priority <= LOG_ERR && g_journal && !g_stderr_socket) {
            std::string line = fmt::format("<{}>{}\n", priority, text);
            (void)!::write(STDERR_FILENO, line.data(), line.size());
        }
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
