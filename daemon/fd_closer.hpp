// SPDX-License-Identifier: MIT
// FdCloser: closes, off the event loop, fds whose last close may block.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "event_loop.hpp"
#include "unique_fd.hpp"

namespace orphand {

// A client controls what closing some fds costs: the last close of a TCP socket with SO_LINGER
// waits for its send queue, a FUSE file waits for its server's FLUSH, a Unix socket releases the
// fds queued in it. Signals cannot cut these short, so the loop never does them itself: it hands
// such fds here, and a worker thread closes them.
//
// Fds are queued per uid (whoever made the daemon hold them) and each uid's queue is served by
// at most one worker at a time, so a close that never returns stalls only that uid's later
// closes. At most kMaxWorkers threads run; a uid waits for one when all are busy. Workers exist
// only while there is work: an idle daemon has none. Blocked signals stay blocked in them.
class FdCloser {
  public:
    // A uid with this many fds queued or being closed is throttled (see throttled()).
    static constexpr size_t kMaxPendingPerUid = 32;
    static constexpr size_t kMaxWorkers = 16;
    // With this many fds pending in all, the daemon accepts no connection until some are
    // closed: a refused connection would be one more (see full()).
    static constexpr size_t kMaxPending = 512;
    // Datagrams are read only while fewer than this many fds are pending in all: a datagram's
    // sender is known only once it is read, so a uid cannot be throttled alone there (see
    // quiet()). Honest clients send pidfds only, which are never pending here.
    static constexpr size_t kQuiet = kMaxPendingPerUid;

    // `loop` watches an eventfd that becomes readable when a throttled uid drops below its limit.
    FdCloser(EventLoop &loop, Source *source);
    // Workers may be blocked in close(): they are left to process exit, with what they share.
    ~FdCloser();
    FdCloser(const FdCloser &) = delete;
    FdCloser &operator=(const FdCloser &) = delete;

    // Takes `fd` and closes it on a worker. Never blocks (beyond a short lock).
    void take(UniqueFd fd, uid_t uid);
    // True while `uid` has kMaxPendingPerUid or more fds pending: the loop then reads no more
    // from that uid's connections, which is the only way new fds reach the daemon.
    bool throttled(uid_t uid);
    // Total fds not yet closed.
    size_t pending();
    // True while kMaxPending or more fds are pending. The eventfd becomes readable when that
    // ends, as when a uid's throttle does.
    bool full() { return pending() >= kMaxPending; }
    // True while fewer than kQuiet fds are pending; the eventfd becomes readable when that
    // starts again.
    bool quiet() { return pending() < kQuiet; }
    // Called by the loop when the eventfd is readable; clears it.
    void drain_notification();

    struct State;

  private:
    static void *worker_main(void *arg);

    State *state_; // shared with the workers, never freed while one may run
};

} // namespace orphand
