// SPDX-License-Identifier: MIT
// The Server: orphand assembled from its parts (registry, listener, connections, requests,
// notifier, binding log) and the event loop that drives them.
#include "server.hpp"

#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <system_error>

#include "orphand_config.h"

namespace orphand {
namespace {

constexpr size_t kTrimAfter = 512;      // objects gone since the peak worth trimming the heap for
constexpr size_t kDescribePerTurn = 16; // kill descriptions (a /proc read, a log entry) per turn

[[noreturn]] void fail(int err, const std::string &what) {
    throw std::system_error(err, std::generic_category(), what);
}

} // namespace

Server::Server(const Options &options) : options_(options), start_ns_(monotonic_ns()) {
    // Raise the soft fd limit to the hard one: every watched process costs one fd.
    struct rlimit rl {};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        // Keep fds in reserve for connections, passed fds and /proc reads, so that a client
        // can still be told "out of fds" when watched processes have taken the rest; and for
        // orphand's own (standard streams, epoll sets, timers, signalfd, listener, log).
        constexpr rlim_t kOwnFds = 16;
        rlim_t reserve = std::min<rlim_t>(1024, rl.rlim_cur / 4) + kOwnFds;
        options_.limits.max_processes = static_cast<uint32_t>(
            std::min<rlim_t>(rl.rlim_cur > reserve ? rl.rlim_cur - reserve : 1,
                             std::numeric_limits<uint32_t>::max()));
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    ::sigprocmask(SIG_BLOCK, &mask, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    signal_fd_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd_)
        fail(errno, "signalfd");
    if (auto r = loop_.add(signal_fd_.get(), EPOLLIN, &signal_source_); !r)
        fail(-r.code(), r.error().what);

    UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!timer)
        fail(errno, "timerfd_create");
    if (auto r = loop_.add(timer.get(), EPOLLIN, &timer_source_); !r)
        fail(-r.code(), r.error().what);
    registry_ =
        std::make_unique<Registry>(loop_, std::move(timer), &timer_source_, options_.limits);
    registry_->set_kill_observer(&kill_log_);

    notifier_ = std::make_unique<Notifier>(loop_, *registry_, &watchdog_source_, &status_source_);

    closer_ = std::make_unique<FdCloser>(loop_, &closer_source_);
    scopes_ = std::make_unique<ScopeWorker>(loop_, &scopes_source_);
    registry_->set_scope_worker(scopes_.get());
    Listener listener = acquire_listener(options_.socket_path);
    listener_ = std::move(listener.fd);
    socket_activated_ = listener.socket_activated;
    bound_path_ = std::move(listener.bound_path);
    if (auto r = loop_.add(listener_.get(), EPOLLIN, &listener_source_); !r)
        fail(-r.code(), r.error().what);
    for (const auto &o : options_.obsolete)
        log_fmt(LOG_WARNING, "ignoring {}: bindings are kept in the binding log (--state-dir)", o);
    drop_fd_store(listener.passed_fds);
    std::string state_dir = options_.state_dir;
    if (options_.state == Options::StateChoice::Default) {
        // systemd sets it for RuntimeDirectory=, several directories separated by ':'.
        const char *runtime = std::getenv("RUNTIME_DIRECTORY");
        std::string_view dirs = runtime ? runtime : "";
        state_dir = std::string(dirs.substr(0, dirs.find(':')));
    }
    if (!state_dir.empty() && options_.state != Options::StateChoice::None)
        binding_log_ = BindingLog::start(state_dir, *registry_);
    requests_ = std::make_unique<Requests>(*registry_, options_, input_limiter_, start_ns_,
                                           binding_log_ != nullptr);
    connections_ = std::make_unique<Connections>(loop_, *closer_, listener_, listener_source_,
                                                 options_, input_limiter_, *requests_);
    requests_->set_connections(connections_.get());
    if (listener.datagram) {
        int fd = listener.datagram.get();
        datagram_bound_path_ = std::move(listener.datagram_bound_path);
        datagrams_ = std::make_unique<Datagrams>(loop_, *closer_, std::move(listener.datagram),
                                                 datagram_source_, *requests_);
        if (auto r = loop_.add(fd, EPOLLIN, &datagram_source_); !r)
            fail(-r.code(), r.error().what);
    }
    // The restore's kills are all out: describe them now, before any client is served.
    registry_->describe(SIZE_MAX);
}

Server::~Server() {
    // Bindings torn down at exit stay in the binding log: the next start restores them.
    registry_->set_store(nullptr);
    connections_.reset();
    // Closing a socket releases what is still queued in it, fds its clients chose among them
    // (a lingering TCP socket's close can take as long as its sender wants): on the FdCloser,
    // whose workers the process's exit does not wait for.
    if (datagrams_)
        closer_->take(datagrams_->release_socket(), static_cast<uid_t>(-1));
    datagrams_.reset();
    closer_->take(std::move(listener_), static_cast<uid_t>(-1));
    if (!bound_path_.empty())
        ::unlink(bound_path_.c_str());
    if (!datagram_bound_path_.empty())
        ::unlink(datagram_bound_path_.c_str());
}

int Server::run() {
    const auto &k = kernel_features();
    log_fmt(LOG_INFO,
            "orphand {} listening on {} ({}; {}); SO_PEERPIDFD {}, PIDFD_GET_INFO {}, exit "
            "status {}; default policy {}, {}",
            ORPHAND_VERSION,
            socket_activated_ ? std::string("the sockets systemd passed") : quoted(bound_path_),
            socket_activated_ ? "socket-activated" : "bound",
            datagrams_ ? "with a datagram socket" : "no datagram socket",
            k.peer_pidfd ? "yes" : "no", k.pidfd_info ? "yes" : "no", k.exit_info ? "yes" : "no",
            signal_name(options_.policy.signal),
            options_.policy.grace_ms == proto::kGraceNever
                ? std::string("no SIGKILL escalation")
                : fmt::format("then SIGKILL after {} ms", options_.policy.grace_ms));
    if (!binding_log_)
        log_fmt(LOG_INFO, "no binding log: bindings will not survive a restart or a crash of "
                          "orphand (see --state-dir)");
    notifier_->ready();

    while (!stop_) {
        // Blocks when nothing is pending; polls while new parents wait to be named or STATUS=
        // is out of date, which is done as soon as the loop finds nothing else to do. Kills
        // wait to be described until their time (Registry::describe_due_ns).
        int timeout = -1;
        if (registry_->has_unnamed() || (binding_log_ && binding_log_->has_unidentified()) ||
            notifier_->status_waiting() || connections_->has_ready()) {
            timeout = 0;
        } else if (uint64_t due = registry_->describe_due_ns()) {
            uint64_t now = monotonic_ns();
            timeout = due <= now ? 0 : static_cast<int>((due - now + 999'999) / 1'000'000);
        }
        if (!dispatch(timeout))
            return 1;
    }
    notifier_->stopping();
    // Scope kills still queued are carried out (their searches cut short), then every kill
    // already sent is logged before orphand goes.
    if (!scopes_->finish(10'000))
        log_fmt(LOG_WARNING, "a scope kill is still running as orphand stops");
    registry_->scopes_done();
    registry_->describe(SIZE_MAX);
    log_fmt(LOG_INFO, "stopping; {} bindings were live", registry_->stats().bindings);
    return 0;
}

bool Server::dispatch(int timeout_ms) {
    std::array<struct epoll_event, 256> events;
    int n = loop_.wait(events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0) {
        if (n == -EINTR)
            return true;
        log_fmt(LOG_ERR, "epoll_wait failed: {}", std::strerror(-n));
        return false;
    }
    if (n == 0) {
        registry_->name_parents();
        if (binding_log_)
            binding_log_->identify();
        notifier_->update_status();
    }
    // The registry's events first: every kill of the batch is out before anything else runs
    // (requests, logging).
    registry_->handle_events(events.data(), n);
    for (int i = 0; i < n; ++i) {
        auto *source = static_cast<Source *>(events[i].data.ptr);
        switch (source->kind) {
        case Source::Kind::Process:
        case Source::Kind::Timer:
            break; // the registry's
        case Source::Kind::Connection:
            connections_->on_connection(static_cast<Connection *>(source), events[i].events);
            break;
        case Source::Kind::Listener:
            connections_->on_listener();
            break;
        case Source::Kind::Datagrams:
            datagrams_->on_readable();
            break;
        case Source::Kind::Signal:
            on_signal();
            break;
        case Source::Kind::Closer:
            connections_->on_closer();
            if (datagrams_)
                datagrams_->on_closer();
            break;
        case Source::Kind::Scopes:
            registry_->scopes_done();
            break;
        case Source::Kind::Status:
            notifier_->on_status_timer();
            break;
        case Source::Kind::Watchdog:
            notifier_->on_watchdog();
            break;
        }
    }
    // Kills are described a few at a time, between batches of events, once their children have
    // had time to die: a fan-out's journal entries never hold up a later kill or a
    // registration, nor compete with the children for the CPUs.
    if (uint64_t due = registry_->describe_due_ns(); due && due <= monotonic_ns())
        registry_->describe(kDescribePerTurn);
    // Processes are identified in the binding log when the loop is idle, or when a flood of
    // registrations leaves it no idle turn for a while.
    if (binding_log_ && binding_log_->unidentified() >= BindingLog::kMaxUnidentified)
        binding_log_->identify();
    // Connections that yielded or had more to read than one turn's worth go on now, after
    // everyone else's events.
    connections_->resume_ready();
    bool freed = connections_->collect();
    // A process that exited closed its pidfd: a listener paused on EMFILE may accept again.
    freed |= registry_->collect() > 0;
    if (freed)
        connections_->fds_freed();
    // glibc keeps freed heap pages: after a burst (a flood of clients, a kill storm) the
    // daemon would stay at its peak size. Give them back once most of the peak is gone.
    auto s = registry_->stats();
    size_t live = connections_->size() + s.parents + s.children;
    live_high_ = std::max(live_high_, live);
    // Also once nothing is left at all, however small the burst was: an idle daemon is back at
    // its size at start.
    if ((live == 0 && live_high_ > 0) ||
        (live_high_ - live >= kTrimAfter && live <= live_high_ / 2)) {
        ::malloc_trim(0);
        live_high_ = live;
    }
    return true;
}

void Server::on_signal() {
    struct signalfd_siginfo si {};
    while (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            stop_ = true;
    }
}

} // namespace orphand
