// SPDX-License-Identifier: MIT
// The epoll-based event loop.
#include "event_loop.hpp"

#include <sys/timerfd.h>
#include <time.h>

#include <cerrno>
#include <system_error>

namespace orphand {

EventLoop::EventLoop() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_)
        throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

Result<void> EventLoop::add(int fd, uint32_t events, Source *source) {
    struct epoll_event ev {};
    ev.events = events;
    ev.data.ptr = source;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
        return Error{-errno, "epoll_ctl(ADD)"};
    return {};
}

Result<void> EventLoop::modify(int fd, uint32_t events, Source *source) {
    struct epoll_event ev {};
    ev.events = events;
    ev.data.ptr = source;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) < 0)
        return Error{-errno, "epoll_ctl(MOD)"};
    return {};
}

void EventLoop::remove(int fd) {
    // Closing the fd would drop it from the interest list too, but only once every duplicate of
    // the open file is closed (systemd's fd store may hold one): remove it explicitly.
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

int EventLoop::wait(struct epoll_event *events, int max, int timeout_ms) {
    int n = ::epoll_wait(epoll_.get(), events, max, timeout_ms);
    return n < 0 ? -errno : n;
}

uint64_t monotonic_ns() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

bool arm_timer_at(int fd, uint64_t deadline_ns) {
    struct itimerspec its {};
    its.it_value.tv_sec = static_cast<time_t>(deadline_ns / 1000000000u);
    its.it_value.tv_nsec = static_cast<long>(deadline_ns % 1000000000u);
    return ::timerfd_settime(fd, deadline_ns ? TFD_TIMER_ABSTIME : 0, &its, nullptr) == 0;
}

} // namespace orphand
