// SPDX-License-Identifier: MIT
// Closing fds that may block, on worker threads.
#include "fd_closer.hpp"

#include <pthread.h>
#include <sys/eventfd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <system_error>

#include "log.hpp"

namespace orphand {

struct FdCloser::State {
    std::mutex mutex;
    std::unordered_map<uid_t, std::deque<int>> queues; // fds waiting, per uid
    std::unordered_map<uid_t, size_t> pending;         // queued + being closed, per uid
    std::unordered_map<uid_t, bool> served;            // uids that have a worker
    std::deque<uid_t> waiting;                         // uids with work and no worker
    std::atomic<size_t> total = 0; // read without the lock by the loop's fast paths
    size_t workers = 0;
    UniqueFd notify; // eventfd: a throttled uid dropped below its limit, or the total below
                     // kMaxPending or kQuiet

    void work(uid_t uid);
};

namespace {

struct WorkerArg {
    FdCloser::State *state;
    uid_t uid;
};

} // namespace

FdCloser::FdCloser(EventLoop &loop, Source *source) : state_(new State) {
    state_->notify.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!state_->notify)
        throw std::system_error(errno, std::generic_category(), "eventfd");
    if (auto r = loop.add(state_->notify.get(), EPOLLIN, source); !r)
        throw std::system_error(-r.code(), std::generic_category(), r.error().what);
}

void FdCloser::take(UniqueFd fd, uid_t uid) {
    if (!fd)
        return;
    std::lock_guard lock(state_->mutex);
    state_->queues[uid].push_back(fd.release());
    ++state_->pending[uid];
    ++state_->total;
    if (state_->served.count(uid))
        return;
    for (uid_t w : state_->waiting)
        if (w == uid)
            return;
    if (state_->workers >= kMaxWorkers) {
        state_->waiting.push_back(uid);
        return;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    auto *arg = new WorkerArg{state_, uid};
    pthread_t thread;
    if (pthread_create(&thread, &attr, worker_main, arg) != 0) {
        // No thread to be had: the fd waits until a running worker, or a later take(), can
        // start one.
        delete arg;
        state_->waiting.push_back(uid);
    } else {
        state_->served[uid] = true;
        ++state_->workers;
    }
    pthread_attr_destroy(&attr);
}

void *FdCloser::worker_main(void *arg) {
    auto *a = static_cast<WorkerArg *>(arg);
    State *state = a->state;
    uid_t uid = a->uid;
    delete a;
    state->work(uid);
    return nullptr;
}

FdCloser::~FdCloser() {
    std::unique_lock lock(state_->mutex);
    if (state_->workers > 0) {
        // A worker still blocked in close() keeps the state until process exit; it stays
        // reachable from here, as memory kept on purpose rather than lost.
        [[maybe_unused]] static State *volatile abandoned;
        abandoned = state_;
        return;
    }
    // Fds still queued (no thread could be started for them) are left to process exit: nothing
    // may block the way out.
    lock.unlock();
    delete state_;
}

void FdCloser::State::work(uid_t uid) {
    State *s = this;
    std::unique_lock lock(s->mutex);
    for (;;) {
        auto q = s->queues.find(uid);
        if (q == s->queues.end() || q->second.empty()) {
            if (q != s->queues.end())
                s->queues.erase(q);
            s->served.erase(uid);
            if (s->waiting.empty()) {
                --s->workers;
                return;
            }
            uid = s->waiting.front();
            s->waiting.pop_front();
            s->served[uid] = true;
            continue;
        }
        int fd = q->second.front();
        q->second.pop_front();
        lock.unlock();
        ::close(fd); // may block for as long as the fd's owner wants: only this uid waits
        lock.lock();
        size_t before = s->total--;
        auto p = s->pending.find(uid);
        if (p->second-- == kMaxPendingPerUid || before == kMaxPending || before == kQuiet) {
            uint64_t one = 1;
            (void)!::write(s->notify.get(), &one, sizeof(one));
        }
        if (p->second == 0)
            s->pending.erase(p);
    }
}

bool FdCloser::throttled(uid_t uid) {
    // Asked before every read: nothing pending, the usual case, costs no lock.
    if (state_->total.load(std::memory_order_relaxed) == 0)
        return false;
    std::lock_guard lock(state_->mutex);
    auto it = state_->pending.find(uid);
    return it != state_->pending.end() && it->second >= kMaxPendingPerUid;
}

size_t FdCloser::pending() {
    return state_->total.load(std::memory_order_relaxed);
}

void FdCloser::drain_notification() {
    uint64_t n;
    (void)!::read(state_->notify.get(), &n, sizeof(n));
}

} // namespace orphand
