// SPDX-License-Identifier: MIT
// libFuzzer target: sends with and without fds, queued together before the Server reads any,
// checked to reach it each with the message it was sent with.
//
// Each input is one client connection (a socketpair the Server adopts, from a peer the input
// picks) and a series of sends, all written before the Server's loop turns: the Server finds
// them joined in its socket's queue, as it finds those of a client that writes faster than it
// reads. The
// sends cut a stream of legacy records and v1 requests anywhere, within messages or across
// them, and carry no fd, one to three, or twenty: pidfds of helpers, of this process, of one of
// its threads and of a reaped process, /dev/null, sockets and pipes. Then the loop turns until
// the Server has read everything and closed the connection, and the target checks (abort()):
// - the replies are the ones the requests call for, in order, each v1 reply with its seq;
// - a v1 REGISTER is refused for its fds (NOT_PIDFD, PIDFD_MISMATCH, TOO_MANY_FDS) only if a
//   send with fds starts within it, and never for fds that are just the pidfds of the child and
//   parent it names, sent with its first byte;
// - once the connection is closed and the FdCloser idle, this process holds the fds it held
//   before, apart from those the loop watches (the pidfds of the processes the registry keeps).
// The Server may really kill: run it as pid 1 of a private pid namespace.
//
// Input layout: [peer] then operations, each [op] [arguments] (see Builder::step).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fuzz_common.hpp"

namespace {

using namespace orphand;
using namespace orphand::fuzz;

constexpr size_t kMaxSends = 64; // well within a socket's send buffer: none is refused
constexpr size_t kManyFds = 20;
static_assert(kManyFds <= kMaxSendFds);
constexpr uint64_t kSettleNs = 10'000'000'000; // far beyond any correct run

UniqueFd g_reaped; // pidfd of a process already reaped
UniqueFd g_thread; // pidfd of g_thread_tid alone; empty before Linux 6.9
std::atomic<pid_t> g_thread_tid{0};
std::vector<int> g_epolls; // the Server's loop: the fds it watches are its to keep

[[noreturn]] void fail(const char *what) {
    std::fprintf(stderr, "fuzz_stream: %s\n", what);
    std::abort();
}

uint64_t now_ns() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

// What a send's fd is.
enum FdKind : uint8_t {
    kHelperPidfd = 0, // + helper index
    kSelfPidfd = kHelpers,
    kThreadPidfd,
    kReapedPidfd,
    kDevNull,
    kSocket,
    kPipe,
    kFdKinds
};

// The pid a pick names in a request: mostly helpers, some that the Server must refuse.
uint32_t pick_pid(uint8_t pick) {
    switch (pick % 8) {
    case 4:
        return static_cast<uint32_t>(::getpid());
    case 5:
        return static_cast<uint32_t>(g_thread_tid.load());
    case 6:
        return 0;
    case 7:
        return 99999; // no such process
    default:
        return static_cast<uint32_t>(g_helpers[pick % kHelpers]);
    }
}

// The pidfd kind for the process `pid` names.
uint8_t pidfd_kind(uint32_t pid) {
    for (size_t i = 0; i < kHelpers; ++i)
        if (static_cast<uint32_t>(g_helpers[i]) == pid)
            return static_cast<uint8_t>(kHelperPidfd + i);
    if (pid == static_cast<uint32_t>(::getpid()))
        return kSelfPidfd;
    if (pid == static_cast<uint32_t>(g_thread_tid.load()))
        return kThreadPidfd;
    return kReapedPidfd;
}

// The helper whose pidfd `kind` is, as a pid; 0 for any other fd.
uint32_t helper_of(uint8_t kind) {
    return kind < kHelpers ? static_cast<uint32_t>(g_helpers[kind]) : 0;
}

bool is_helper(uint32_t pid) {
    return pid != 0 && pidfd_kind(pid) < kHelpers;
}

// An fd of kind `kind`, close-on-exec; -1 if none could be made.
int make_fd(uint8_t kind) {
    switch (kind) {
    case kSelfPidfd:
        return sys_pidfd_open(::getpid(), 0);
    case kThreadPidfd:
        return g_thread ? ::fcntl(g_thread.get(), F_DUPFD_CLOEXEC, 0) : -1;
    case kReapedPidfd:
        return ::fcntl(g_reaped.get(), F_DUPFD_CLOEXEC, 0);
    case kDevNull:
        return ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    case kSocket:
        return ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    case kPipe: {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) < 0)
            return -1;
        ::close(p[1]);
        return p[0];
    }
    default:
        return sys_pidfd_open(g_helpers[kind % kHelpers], 0);
    }
}

struct Send {
    size_t offset = 0; // of its first byte in the stream
    size_t length = 0;
    std::vector<uint8_t> fds; // FdKinds, in order; once sent, only those that were made
};

struct Plan {
    std::string stream; // every byte sent, in order
    std::vector<Send> sends;
};

class Builder {
  public:
    Builder(const uint8_t *data, size_t size) : data_(data), size_(size) {}

    Plan build(bool hello_first) {
        if (hello_first) {
            append_record(proto::kHelloMagic, proto::kVersion, proto::kHello);
            cut(plan_.stream.size());
        }
        while (size_ > 0 && plan_.sends.size() < kMaxSends)
            step();
        if (plan_.stream.size() > sent_)
            cut(plan_.stream.size());
        return std::move(plan_);
    }

  private:
    uint8_t next() {
        if (size_ == 0)
            return 0;
        --size_;
        return *data_++;
    }

    void append(const void *bytes, size_t len) {
        plan_.stream.append(static_cast<const char *>(bytes), len);
    }

    void append_record(uint32_t parent, uint32_t child, uint32_t action) {
        proto::Record r{parent, child, action};
        append(&r, sizeof(r));
    }

    void append_request(uint32_t parent, uint32_t child, uint32_t action, uint32_t flags = 0,
                        int32_t signal = 0, uint32_t grace_ms = 0, uint32_t reserved = 0) {
        proto::Request q{parent, child, action, ++seq_, flags, signal, grace_ms, reserved};
        append(&q, sizeof(q));
    }

    // Ends the current send after `end` bytes of the stream; the rest starts the next one.
    void cut(size_t end) {
        if (end <= sent_)
            return;
        plan_.sends.push_back({sent_, end - sent_, std::move(fds_)});
        fds_.clear();
        sent_ = end;
        opened_ = false;
    }

    // One operation: [op] [message arguments] [fd arguments] [cut argument]. op bits 0-2 say
    // which message it appends, 3-4 where the send ends, 5-7 which fds the send carries if
    // this operation is the first to add to it.
    void step() {
        uint8_t op = next();
        uint32_t parent = static_cast<uint32_t>(g_helpers[0]);
        uint32_t child = static_cast<uint32_t>(g_helpers[1]);
        switch (op & 7) {
        case 0: { // a legacy record
            static const uint32_t actions[] = {proto::kRegister, proto::kUnregister, proto::kPing,
                                               proto::kRegister, 9};
            uint32_t action = actions[next() % 5];
            parent = pick_pid(next());
            child = pick_pid(next());
            append_record(parent, child, action);
            break;
        }
        case 1: // HELLO: from now on, v1 requests
            append_record(proto::kHelloMagic, proto::kVersion, proto::kHello);
            break;
        case 2:
        case 3: { // a v1 REGISTER, with a policy that may be invalid
            parent = pick_pid(next());
            child = pick_pid(next());
            uint8_t p = next();
            uint32_t flags = p & (proto::kFlagSignal | proto::kFlagGrace);
            static const int32_t signals[] = {SIGTERM, SIGKILL, SIGUSR1, 0};
            uint32_t grace = (p >> 4) == 15 ? proto::kGraceNever : (p >> 4) * 10u;
            append_request(parent, child, proto::kRegister, flags, signals[p >> 2 & 3], grace);
            break;
        }
        case 4: { // another v1 request
            static const uint32_t actions[] = {proto::kPing,   proto::kUnregister, proto::kList,
                                               proto::kStatus, proto::kHello,      42};
            uint8_t a = next();
            parent = pick_pid(next());
            child = pick_pid(next());
            append_request(parent, child, actions[a % 6], 0, 0, 0, a >> 7);
            break;
        }
        case 5: { // raw bytes: anything at all, framing out of step
            size_t len = next() % 40 + 1;
            for (size_t i = 0; i < len; ++i) {
                uint8_t b = next();
                append(&b, 1);
            }
            break;
        }
        case 6:
            append_record(1, 2, proto::kPing);
            break;
        default: // nothing: the fds, if any, ride on bytes held back from the last message
            break;
        }

        std::vector<uint8_t> fds;
        switch (op >> 5) {
        case 3: // the pidfd of the child it names
            fds = {pidfd_kind(child)};
            break;
        case 4: // the pidfds of the child and the parent
            fds = {pidfd_kind(child), pidfd_kind(parent)};
            break;
        case 5:
            fds = {static_cast<uint8_t>(next() % kFdKinds)};
            break;
        case 6: {
            size_t count = 2 + (next() & 1); // three is one too many
            for (size_t i = 0; i < count; ++i)
                fds.push_back(static_cast<uint8_t>(next() % kFdKinds));
            break;
        }
        case 7: {
            uint8_t k = next();
            for (size_t i = 0; i < kManyFds; ++i)
                fds.push_back(static_cast<uint8_t>((k + i * 3) % kFdKinds));
            break;
        }
        default:
            break;
        }
        if (!opened_) {
            opened_ = true;
            fds_ = std::move(fds);
        }

        switch (op >> 3 & 3) {
        case 1: { // hold back the last few bytes: the next send starts within a message
            size_t unsent = plan_.stream.size() - sent_;
            size_t hold = next() % 32 + 1;
            if (unsent >= 2)
                cut(plan_.stream.size() - (hold < unsent ? hold : unsent - 1));
            break;
        }
        case 2: // join the next operation's message to this send
            break;
        default:
            cut(plan_.stream.size());
            break;
        }
    }

    const uint8_t *data_;
    size_t size_;
    Plan plan_;
    size_t sent_ = 0;          // stream bytes in plan_.sends
    bool opened_ = false;      // an operation has added to the current send (and chosen fds_)
    std::vector<uint8_t> fds_; // for the current send
    uint32_t seq_ = 0;
};

// Writes every send of `plan` to `fd`, without reading. A send the socket does not take whole
// ends the plan where it stopped.
void send_all(int fd, Plan &plan) {
    for (size_t i = 0; i < plan.sends.size(); ++i) {
        Send &s = plan.sends[i];
        std::vector<int> fds;
        std::vector<uint8_t> made;
        for (uint8_t kind : s.fds)
            if (int f = make_fd(kind); f >= 0) {
                fds.push_back(f);
                made.push_back(kind);
            }
        s.fds = made;
        ssize_t n = send_take_fds(fd, plan.stream.data() + s.offset, s.length, fds);
        if (n == static_cast<ssize_t>(s.length))
            continue;
        // A partial send still carried its fds, with its first byte.
        size_t taken = n > 0 ? static_cast<size_t>(n) : 0;
        s.length = taken;
        plan.sends.resize(taken > 0 ? i + 1 : i);
        plan.stream.resize(s.offset + taken);
        return;
    }
}

// A complete message of the stream, as the Server frames it.
struct Message {
    size_t start;
    size_t size;
};

bool is_hello(const proto::Record &r) {
    return r.action == proto::kHello && r.parent == proto::kHelloMagic && r.child >= 1;
}

std::vector<Message> frame(const std::string &stream) {
    std::vector<Message> messages;
    size_t size = sizeof(proto::Record);
    for (size_t pos = 0; stream.size() - pos >= size; pos += messages.back().size) {
        messages.push_back({pos, size});
        if (size == sizeof(proto::Record) &&
            is_hello(proto::load<proto::Record>(
                reinterpret_cast<const unsigned char *>(stream.data()) + pos)))
            size = sizeof(proto::Request);
    }
    return messages;
}

void dump(const Plan &plan, const Message &m, const proto::Request &q, const proto::Reply &r) {
    std::fprintf(stderr,
                 "fuzz_stream: REGISTER at byte %zu (parent %u, child %u, seq %u): error %d, "
                 "reason %u (%s)\nsends (offset+length: fd kinds, helpers %d %d %d %d):\n",
                 m.start, q.parent, q.child, q.seq, r.error, r.reason, proto::reason_text(r.reason),
                 g_helpers[0], g_helpers[1], g_helpers[2], g_helpers[3]);
    for (const Send &s : plan.sends) {
        std::fprintf(stderr, "  %zu+%zu:", s.offset, s.length);
        for (uint8_t k : s.fds)
            std::fprintf(stderr, " %u", k);
        std::fprintf(stderr, "\n");
    }
}

// Which fds the Server may attribute to the REGISTER `m`: those of the sends that start within
// it (the protocol: fds come with a message's first byte; the Server also takes them with a
// later byte of a message that had none, and refuses a message they come with twice).
void check_register(const Plan &plan, const Message &m, const proto::Request &q,
                    const proto::Reply &r) {
    if (r.reason == proto::kBadPolicy)
        return; // refused before its fds were looked at
    const Send *first = nullptr;
    size_t with_fds = 0;
    for (const Send &s : plan.sends) {
        if (s.fds.empty() || s.offset < m.start || s.offset >= m.start + m.size)
            continue;
        ++with_fds;
        if (s.offset == m.start)
            first = &s;
    }
    bool fd_refusal = r.reason == proto::kNotPidfd || r.reason == proto::kPidfdMismatch ||
                      r.reason == proto::kTooManyFds;
    if (with_fds == 0 && fd_refusal) {
        dump(plan, m, q, r);
        fail("REGISTER refused for fds that were not sent with it");
    }
    if (!first)
        return;
    if ((with_fds > 1 || first->fds.size() > proto::kMaxFds) && r.reason != proto::kTooManyFds) {
        dump(plan, m, q, r);
        fail("REGISTER sent with too many fds not refused as such");
    }
    // Just the child's pidfd, or the child's and the parent's: helpers, live processes.
    bool own = with_fds == 1 && first->fds.size() <= proto::kMaxFds && is_helper(q.child) &&
               is_helper(q.parent) && q.child != q.parent && helper_of(first->fds[0]) == q.child &&
               (first->fds.size() == 1 || helper_of(first->fds[1]) == q.parent);
    if (own && (fd_refusal || r.reason == proto::kNotAProcess)) {
        dump(plan, m, q, r);
        fail("REGISTER refused for the pidfds of the processes it names");
    }
}

// Checks that `replies` are those the messages call for, in order.
void check_replies(const Plan &plan, const std::string &replies) {
    const auto *stream = reinterpret_cast<const unsigned char *>(plan.stream.data());
    size_t pos = 0;
    auto take = [&](size_t len) {
        if (replies.size() - pos < len)
            fail("a reply is missing");
        const auto *p = reinterpret_cast<const unsigned char *>(replies.data()) + pos;
        pos += len;
        return p;
    };
    for (const Message &m : frame(plan.stream)) {
        if (m.size == sizeof(proto::Record)) {
            auto rec = proto::load<proto::Record>(stream + m.start);
            if (rec.action == proto::kPing) {
                if (std::memcmp(take(sizeof(rec)), stream + m.start, sizeof(rec)) != 0)
                    fail("a legacy PING was not echoed");
            } else if (is_hello(rec)) {
                auto r = proto::load<proto::Reply>(take(sizeof(proto::Reply)));
                if (r.action != proto::kHello || r.error != 0 || r.count != proto::kVersion)
                    fail("HELLO not acknowledged");
            }
            continue;
        }
        auto q = proto::load<proto::Request>(stream + m.start);
        auto r = proto::load<proto::Reply>(take(sizeof(proto::Reply)));
        if (r.seq != q.seq || r.action != q.action)
            fail("a reply does not answer the request in turn (seq or action)");
        if (r.error == 0 && q.action == proto::kList)
            take(size_t{r.count} * sizeof(proto::BindingInfo2));
        if (r.error == 0 && q.action == proto::kStatus)
            take(size_t{r.count} * sizeof(proto::StatusInfo));
        if (q.action == proto::kRegister)
            check_register(plan, m, q, r);
    }
    if (pos != replies.size())
        fail("replies that no request called for");
}

std::string read_text(const std::string &path) {
    std::string text;
    UniqueFd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    char buf[4096];
    ssize_t n;
    while (f && (n = ::read(f.get(), buf, sizeof(buf))) > 0)
        text.append(buf, static_cast<size_t>(n));
    return text;
}

// What the kernel says of one of this process's fds (/proc/self/fdinfo).
std::string fdinfo(int fd) {
    return read_text("/proc/self/fdinfo/" + std::to_string(fd));
}

// Fds this process holds that are neither watched by the Server's loop nor a child's pidfd
// that its registry holds unwatched.
long unwatched_fds() {
    long count = 0;
    DIR *dir = ::opendir("/proc/self/fd");
    if (!dir)
        fail("cannot list /proc/self/fd");
    while (struct dirent *e = ::readdir(dir))
        if (e->d_name[0] != '.')
            ++count;
    ::closedir(dir);
    --count; // the directory's own
    // The pidfds of processes that are only children, which nothing watches (Registry::sweep_all).
    count -= static_cast<long>(g_server->registry().unwatched());
    for (int ep : g_epolls) {
        std::string info = fdinfo(ep);
        for (size_t at = 0; (at = info.find("tfd:", at)) != std::string::npos; at += 4)
            --count;
    }
    return count;
}

// For a failure's report: the process a pidfd names, its state, and its bindings.
void describe_pidfd(int fd) {
    std::string info = fdinfo(fd);
    size_t at = info.find("Pid:");
    if (at == std::string::npos)
        return;
    std::string line = info.substr(at, info.find('\n', at) - at);
    std::fprintf(stderr, " (%s)", line.c_str());
    pid_t pid = static_cast<pid_t>(std::atoi(line.c_str() + 4));
    std::string status = read_text("/proc/" + std::to_string(pid) + "/status");
    if (size_t st = status.find("State:"); st != std::string::npos)
        std::fprintf(stderr, " %s", status.substr(st, status.find('\n', st) - st).c_str());
    g_server->registry().for_each([&](const Binding &b) {
        if (b.parent->pid() == pid || b.child->pid() == pid)
            std::fprintf(stderr, " [bound %d -> %d]", b.parent->pid(), b.child->pid());
    });
}

// Every fd this process holds, with what it is, for a failure's report.
void list_fds() {
    DIR *dir = ::opendir("/proc/self/fd");
    if (!dir)
        return;
    while (struct dirent *e = ::readdir(dir)) {
        char path[300], link[128]{};
        std::snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        if (e->d_name[0] != '.' && ::readlink(path, link, sizeof(link) - 1) > 0) {
            std::fprintf(stderr, "  fd %s: %s", e->d_name, link);
            if (std::strcmp(link, "anon_inode:[pidfd]") == 0)
                describe_pidfd(std::atoi(e->d_name));
            std::fprintf(stderr, "\n");
        }
    }
    ::closedir(dir);
    for (int ep : g_epolls)
        std::fprintf(stderr, "  epoll %d watches:\n%s", ep, fdinfo(ep).c_str());
}

void find_epolls() {
    DIR *dir = ::opendir("/proc/self/fd");
    if (!dir)
        fail("cannot list /proc/self/fd");
    while (struct dirent *e = ::readdir(dir)) {
        char path[300], link[64]{};
        std::snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        if (::readlink(path, link, sizeof(link) - 1) > 0 &&
            std::strcmp(link, "anon_inode:[eventpoll]") == 0)
            g_epolls.push_back(std::atoi(e->d_name));
    }
    ::closedir(dir);
    if (g_epolls.empty())
        fail("the Server's epoll fd is not to be found");
}

// Forgets the bindings the input made, so that the next one starts from the same registry (its
// limits would soon refuse everything) and depends less on the inputs before it.
void forget_bindings() {
    std::vector<std::pair<pid_t, pid_t>> pairs;
    g_server->registry().for_each(
        [&](const Binding &b) { pairs.emplace_back(b.parent->pid(), b.child->pid()); });
    for (auto [parent, child] : pairs)
        (void)g_server->registry().remove(parent, child, Registrant{0, ::getpid(), true});
}

// The thread whose pidfd the Server must refuse: it names a thread, not a process.
void start_thread() {
    std::thread([] {
        g_thread_tid = static_cast<pid_t>(::syscall(SYS_gettid));
        for (;;)
            ::pause();
    }).detach();
    while (g_thread_tid.load() == 0)
        std::this_thread::yield();
    g_thread.reset(sys_pidfd_open(g_thread_tid.load(), kPidfdThread));
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    require_pid1("fuzz_stream");
    start_server();
    find_epolls();
    // Made after the Server, so that they share its blocked signals as its workers do.
    start_thread();
    g_reaped.reset(open_reaped_pidfd());
    if (!g_reaped)
        fail("no pidfd for a reaped process");
    tend_helpers();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    // [peer]: bits 0-1 its uid, 2-3 its pid, 4-5 which helper that is, 6 shut the connection
    // for writing as soon as all is sent (else once the Server is idle), 7 begin with a HELLO.
    uint8_t peer_kind = data[0];
    tend_helpers();
    Plan plan = Builder(data + 1, size - 1).build(peer_kind & 0x80);

    long held = unwatched_fds();
    int client = connect_client(make_peer(peer_kind));
    send_all(client, plan);

    std::string replies;
    bool closed = false;
    if (!(peer_kind & 0x40))
        closed = settle(client, replies);
    ::shutdown(client, SHUT_WR);
    // The Server reads to the end of the stream and then closes its end.
    uint64_t deadline = now_ns() + kSettleNs;
    bool idle = false;
    while (!closed) {
        if (now_ns() > deadline)
            fail("the Server never closed a connection whose client had shut it");
        if (!g_server->dispatch(idle ? 1 : 0))
            std::abort();
        size_t had = replies.size();
        closed = receive(client, replies);
        idle = replies.size() == had;
    }
    ::close(client);
    check_replies(plan, replies);

    // Until the Server holds no fd of this input's but its watched ones: a scope kill holds a
    // duplicate of its child's pidfd until the scope worker is done with it and the loop has
    // noted it; kills keep their dead parents' pidfds until they are described, which waits
    // while their children die (Registry::describe_due_ns), so they are described here; fds it
    // took are closed on the FdCloser's workers. A turn may kill again: checked after each.
    deadline = now_ns() + kSettleNs;
    for (;;) {
        // Counted first: a kill the worker finishes after the count waits in its done list,
        // which scopes_done() would not have taken.
        bool scopes = g_server->pending_scopes() > 0;
        g_server->registry().scopes_done();
        g_server->registry().describe(SIZE_MAX);
        if (!scopes && g_server->pending_closes() == 0)
            break;
        if (now_ns() > deadline)
            fail("a scope kill never ends, or fds left with the FdCloser are never closed");
        if (!g_server->dispatch(1))
            std::abort();
    }
    if (long now = unwatched_fds(); now != held) {
        std::fprintf(stderr, "fuzz_stream: %ld fds held (unwatched) before the input, %ld after\n",
                     held, now);
        list_fds();
        fail("fds leaked, or closed that were not the Server's");
    }
    forget_bindings();
    return 0;
}
