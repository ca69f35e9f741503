// SPDX-License-Identifier: MIT
// Scope kills on a worker thread.
#include "scope_worker.hpp"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <system_error>
#include <unordered_map>

namespace orphand {

struct ScopeWorker::State {
    std::mutex mutex;
    std::condition_variable idle; // the worker finished a job or ended
    std::unordered_map<uid_t, std::deque<std::unique_ptr<ScopeJob>>> queued;
    std::deque<uid_t> turns; // uids with jobs waiting, in the order they are served
    std::deque<std::unique_ptr<ScopeJob>> done;
    bool running = false; // a job taken from `queued` and not yet in `done`
    bool thread = false;
    std::atomic<bool> abort = false; // the daemon is stopping: the running job ends its search
    UniqueFd notify;                 // eventfd: a job is done

    // The next job, from the uid whose turn it is; null if none. Under the lock.
    std::unique_ptr<ScopeJob> next();
};

std::unique_ptr<ScopeJob> ScopeWorker::State::next() {
    while (!turns.empty()) {
        uid_t uid = turns.front();
        turns.pop_front();
        auto it = queued.find(uid);
        if (it == queued.end() || it->second.empty())
            continue;
        std::unique_ptr<ScopeJob> job = std::move(it->second.front());
        it->second.pop_front();
        if (it->second.empty())
            queued.erase(it);
        else
            turns.push_back(uid); // its next job waits for every other uid's
        return job;
    }
    return nullptr;
}

ScopeWorker::ScopeWorker(EventLoop &loop, Source *source) : state_(new State) {
    state_->notify.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!state_->notify)
        throw std::system_error(errno, std::generic_category(), "eventfd");
    if (auto r = loop.add(state_->notify.get(), EPOLLIN, source); !r)
        throw std::system_error(-r.code(), std::generic_category(), r.error().what);
}

bool ScopeWorker::finish(int wait_ms) {
    std::unique_lock lock(state_->mutex);
    state_->abort = true;
    return state_->idle.wait_for(lock, std::chrono::milliseconds(wait_ms),
                                 [&] { return !state_->thread; });
}

ScopeWorker::~ScopeWorker() {
    if (finish(10'000)) {
        delete state_;
        return;
    }
    // Still running (stuck in the kernel): left to process exit, with what it shares.
}

bool ScopeWorker::submit(std::unique_ptr<ScopeJob> &job) {
    std::lock_guard lock(state_->mutex);
    auto &mine = state_->queued[job->uid];
    if (mine.size() >= kMaxQueuedPerUid) {
        if (mine.empty())
            state_->queued.erase(job->uid);
        return false;
    }
    if (!state_->thread) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        // The engine reads /proc into buffers on its stack (a few KiB) and keeps the rest in
        // its containers.
        pthread_attr_setstacksize(&attr, 256 * 1024);
        pthread_t t;
        int r = pthread_create(&t, &attr, worker_main, state_);
        pthread_attr_destroy(&attr);
        if (r != 0) {
            if (mine.empty())
                state_->queued.erase(job->uid);
            return false;
        }
        state_->thread = true;
    }
    if (mine.empty())
        state_->turns.push_back(job->uid);
    mine.push_back(std::move(job));
    return true;
}

std::deque<std::unique_ptr<ScopeJob>> ScopeWorker::take_done() {
    uint64_t count;
    (void)!::read(state_->notify.get(), &count, sizeof(count));
    std::lock_guard lock(state_->mutex);
    return std::exchange(state_->done, {});
}

size_t ScopeWorker::pending() {
    std::lock_guard lock(state_->mutex);
    size_t n = state_->running ? 1 : 0;
    for (const auto &[uid, jobs] : state_->queued)
        n += jobs.size();
    return n;
}

void *ScopeWorker::worker_main(void *arg) {
    auto *s = static_cast<State *>(arg);
    for (;;) {
        std::unique_ptr<ScopeJob> job;
        {
            std::lock_guard lock(s->mutex);
            job = s->next();
            if (!job) {
                // Idle: the thread ends; the next submit starts another.
                s->thread = false;
                s->idle.notify_all();
                return nullptr;
            }
            s->running = true;
        }
        job->kill.budget_ns = job->privileged ? kBudgetNs : kBudgetNs / 10;
        job->kill.abort = &s->abort;
        signal_scope(job->scope, job->child, job->has_cgroup ? &job->cgroup : nullptr, job->kill);
        {
            std::lock_guard lock(s->mutex);
            s->done.push_back(std::move(job));
            s->running = false;
            s->idle.notify_all();
        }
        uint64_t one = 1;
        (void)!::write(s->notify.get(), &one, sizeof(one));
    }
}

} // namespace orphand
