// SPDX-License-Identifier: MIT
// ScopeWorker: scope kills (scope.hpp) on a thread of their own.
#pragma once

#include <sys/types.h>

#include <deque>
#include <memory>
#include <mutex>

#include "event_loop.hpp"
#include "scope.hpp"
#include "unique_fd.hpp"

namespace orphand {

// One scope kill to carry out: the registry derives its own job type with what the kill's
// description and escalations need, and gets it back, done, from ScopeWorker::take_done().
struct ScopeJob {
    virtual ~ScopeJob() = default;
    uid_t uid = 0;           // the registrant's: jobs are taken in turn, one uid after another
    bool privileged = false; // root or CAP_KILL: the longer budget
    uint32_t scope = 0;
    PidFd child; // the worker's own duplicate: the registry may close its handle meanwhile
    CgroupRef cgroup;
    bool has_cgroup = false;
    ScopeKill kill; // signal and rule in; what was done out
};

// Searching a process group in /proc, freezing a tree that keeps forking, or emptying a cgroup
// can take far longer than sending a signal, above all on a loaded host. The loop never does it
// itself: it queues the job here, and a worker thread runs the jobs one after another, so that a
// scope being searched never holds up another kill, a registration or a reply. An eventfd in the
// loop says when jobs are done.
//
// One user's scopes must not hold up another's: jobs wait in a queue per registrant uid, and the
// worker takes them one uid after another; an unprivileged registrant's job searches for at most
// kBudgetNs / 10, and a uid has at most kMaxQueuedPerUid jobs waiting (submit() refuses more).
// The thread exists only while there are jobs: an idle daemon has none. It inherits the loop's
// blocked signals. The engine it runs shares nothing with the loop but the job.
class ScopeWorker {
  public:
    // How long one job of a privileged registrant may search before it gives up
    // (ScopeKill::incomplete); an unprivileged registrant's, a tenth of it.
    static constexpr uint64_t kBudgetNs = 10'000'000'000;
    static constexpr size_t kMaxQueuedPerUid = 64;

    ScopeWorker(EventLoop &loop, Source *source);
    // finish(), then frees what it shares with the worker once the worker has ended.
    ~ScopeWorker();
    ScopeWorker(const ScopeWorker &) = delete;
    ScopeWorker &operator=(const ScopeWorker &) = delete;

    // Queues `job`. False, the job handed back untouched in `job`, if its uid has
    // kMaxQueuedPerUid jobs waiting or no thread could be started.
    bool submit(std::unique_ptr<ScopeJob> &job);
    // For a daemon that stops: every job still queued or running ends its search at once
    // (ScopeKill::abort), which still signals the child and what was found and lets every
    // process it stopped go on, so that no kill the daemon owes is dropped. Waits for them,
    // for at most `wait_ms`; true if they are all done.
    bool finish(int wait_ms);
    // The jobs done so far, in order; clears the eventfd.
    std::deque<std::unique_ptr<ScopeJob>> take_done();
    // Jobs queued or running.
    size_t pending();

    struct State;

  private:
    static void *worker_main(void *arg);

    State *state_; // shared with the worker, never freed while it may run
};

} // namespace orphand
