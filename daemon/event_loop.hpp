// SPDX-License-Identifier: MIT
// EventLoop: one epoll instance; every fd the daemon waits on is a Source registered here.
//
// Raw epoll rather than sd-event: the daemon's sources are one kind that dominates (a pidfd per
// watched process, up to the fd limit), and a bare epoll_event pointing at the Process keeps the
// per-process cost at one epoll item with no extra allocation per source.
#pragma once

#include <sys/epoll.h>

#include <cstdint>

#include "result.hpp"
#include "unique_fd.hpp"

namespace orphand {

// Base of everything registered in the loop; `kind` says how to dispatch its events.
struct Source {
    enum class Kind : uint8_t {
        Listener,
        Datagrams,
        Connection,
        Process,
        Signal,
        Timer,
        Watchdog,
        Closer,
        Scopes,
        Status
    };
    explicit Source(Kind k) : kind(k) {}
    Kind kind;
};

class EventLoop {
  public:
    // Throws std::system_error if epoll cannot be created (start-up only).
    EventLoop();

    // The Source must outlive its registration.
    Result<void> add(int fd, uint32_t events, Source *source);
    Result<void> modify(int fd, uint32_t events, Source *source);
    void remove(int fd);

    // Waits for events; -1 timeout blocks. Returns the count or a negative errno.
    int wait(struct epoll_event *events, int max, int timeout_ms);

  private:
    UniqueFd epoll_;
};

// Monotonic clock in nanoseconds.
uint64_t monotonic_ns();

// Arms the CLOCK_MONOTONIC timerfd `fd` to expire once at `deadline_ns` (absolute), or disarms
// it when `deadline_ns` is 0. Returns false if the kernel refused.
bool arm_timer_at(int fd, uint64_t deadline_ns);

} // namespace orphand
