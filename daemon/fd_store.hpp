// SPDX-License-Identifier: MIT
// FdStore: keeps every live binding's pidfds in systemd's file descriptor store, so that
// bindings survive restarts and crashes of orphand.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "event_loop.hpp"
#include "log.hpp"
#include "registry.hpp"
#include "result.hpp"
#include "unique_fd.hpp"

namespace orphand {

// An fd systemd passed at start-up, with the name it was stored under (LISTEN_FDNAMES).
struct StoredFd {
    std::string name;
    UniqueFd fd;
};

// What a binding's entry in the store says about it (encoded in the entry's FDNAME).
struct StoredBinding {
    pid_t parent_pid = 0;
    uint64_t parent_inode = 0; // pidfs inode: tells the entry's two pidfds apart
    pid_t child_pid = 0;
    uint64_t child_inode = 0;
    Policy policy;
    Registrant registrant;
    std::string parent_comm; // its log name, should the parent die while orphand is down
};

// The FDNAME of a binding's entry: unique per binding (its two processes' pids and pidfs
// inodes), at most 255 printable ASCII characters, no ':'.
std::string fd_store_name(const StoredBinding &b);
// Parses a name made by fd_store_name; false for any other name.
bool parse_fd_store_name(std::string_view name, StoredBinding *out);

// Counts from restoring the entries systemd passed back at start-up.
struct RestoreCounts {
    uint32_t restored = 0;    // bindings enforced again
    uint32_t parent_dead = 0; // the parent died while orphand was down: child killed at once
    uint32_t gone = 0;        // the child exited meanwhile, or the binding was a duplicate
    uint32_t invalid = 0;     // entries not made by orphand (or damaged): dropped
};

// Each binding is one store entry holding its parent's and its child's pidfd, sent to
// $NOTIFY_SOCKET with FDSTORE=1 and FDPOLL=0 (a pidfd reports EPOLLHUP once its process is
// reaped; systemd would drop it then), and removed with FDSTOREREMOVE=1 when the binding ends.
// A binding is removed from the store only when it ends, never when orphand stops: on a
// restart systemd passes every entry back and restore() re-creates the bindings.
class FdStore final : public BindingStore {
  public:
    // Connects to $NOTIFY_SOCKET. `max_fds` is the unit's FileDescriptorStoreMax=: bindings
    // beyond it are not stored (and a warning says they will not survive a restart).
    // A binding is stored once it has lived `delay_ms`: most children (a build's compilers, a
    // shell's commands) live less, and every entry costs PID 1 work that grows with the size
    // of the store. The delay's timer is in `loop`, armed only while a binding waits.
    static Result<std::unique_ptr<FdStore>> connect(uint32_t max_fds, EventLoop &loop,
                                                    uint32_t delay_ms);

    // Re-creates the bindings of the entries systemd passed back, through Registry::add (a
    // parent that died meanwhile has its children killed at once), and removes the entries of
    // bindings that no longer exist. Takes ownership of every fd in `entries`.
    RestoreCounts restore(std::vector<StoredFd> entries, Registry &registry);

    void binding_added(const Binding &b) override;
    void binding_removed(const Binding &b) override;

    // The loop calls it when the delay timer fires: stores the bindings old enough.
    void timer_fired();
    // Stores every waiting binding now (a clean stop: the restart that follows loses nothing).
    void flush();

    // Fds currently held in the store for our bindings.
    uint32_t stored_fds() const { return stored_fds_; }

  private:
    FdStore(UniqueFd socket, uint32_t max_fds, EventLoop &loop, UniqueFd timer, uint64_t delay_ns)
        : socket_(std::move(socket)), max_fds_(max_fds), loop_(loop), timer_(std::move(timer)),
          delay_ns_(delay_ns) {}
    void store(const Binding &b);
    void rearm();
    Result<void> notify(std::string_view text, const int *fds, size_t nfds);
    void remove(const std::string &name);
    // The fd to store for `p` in b's entry: p's own pidfd, or a new one kept in `copy`.
    static int entry_fd(const Process &p, const Binding &b, UniqueFd *copy);
    friend std::unique_ptr<FdStore> start_fd_store(uint32_t, uint32_t, std::vector<StoredFd>,
                                                   Registry &, EventLoop &);

    UniqueFd socket_;
    uint32_t max_fds_;
    EventLoop &loop_;
    UniqueFd timer_;
    Source timer_source_{Source::Kind::StoreTimer};
    uint64_t delay_ns_;
    uint64_t armed_ns_ = 0;
    // Bindings not yet old enough to store, in the order they were made. The queue may hold
    // entries of bindings that ended meanwhile; `waiting_` says which are still live.
    struct Waiting {
        const Binding *binding;
        uint64_t created_ns;
    };
    std::deque<Waiting> queue_;
    std::unordered_set<const Binding *> waiting_;
    uint32_t stored_fds_ = 0;
    bool restoring_ = false;
    // Bindings that could not be stored (store full, or systemd not answering): normally empty.
    std::unordered_set<const Binding *> unstored_;
    LogLimiter warn_limiter_{5, 1};
};

// Sets up the store at start-up: with `max_fds` > 0 and $NOTIFY_SOCKET set, connects and
// restores `passed` into `registry`, logging what it did; returns null (and closes `passed`)
// when the store is not in use.
std::unique_ptr<FdStore> start_fd_store(uint32_t max_fds, uint32_t delay_ms,
                                        std::vector<StoredFd> passed, Registry &registry,
                                        EventLoop &loop);

} // namespace orphand
