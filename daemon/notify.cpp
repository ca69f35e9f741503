// SPDX-License-Identifier: MIT
// Notifier: sd_notify's READY, STATUS (rate-limited), WATCHDOG and STOPPING.
#include "notify.hpp"

#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <system_error>

#include <systemd/sd-daemon.h>

namespace orphand {
namespace {

[[noreturn]] void fail(int err, const std::string &what) {
    throw std::system_error(err, std::generic_category(), what);
}

} // namespace

Notifier::Notifier(EventLoop &loop, Registry &registry, Source *watchdog_source,
                   Source *status_source)
    : registry_(registry), notify_(getenv("NOTIFY_SOCKET") != nullptr) {
    uint64_t watchdog_usec = 0;
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
        watchdog_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        if (!watchdog_fd_)
            fail(errno, "timerfd_create");
        struct itimerspec its {};
        uint64_t half = watchdog_usec / 2;
        its.it_value.tv_sec = static_cast<time_t>(half / 1000000);
        its.it_value.tv_nsec = static_cast<long>(half % 1000000 * 1000);
        its.it_interval = its.it_value;
        ::timerfd_settime(watchdog_fd_.get(), 0, &its, nullptr);
        if (auto r = loop.add(watchdog_fd_.get(), EPOLLIN, watchdog_source); !r)
            fail(-r.code(), r.error().what);
    }

    if (notify_) {
        status_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        if (!status_fd_)
            fail(errno, "timerfd_create");
        if (auto r = loop.add(status_fd_.get(), EPOLLIN, status_source); !r)
            fail(-r.code(), r.error().what);
    }
}

void Notifier::ready() {
    sd_notify(0, "READY=1");
    update_status();
}

void Notifier::stopping() {
    sd_notify(0, "STOPPING=1");
}

void Notifier::on_watchdog() {
    uint64_t expirations;
    (void)!::read(watchdog_fd_.get(), &expirations, sizeof(expirations));
    sd_notify(0, "WATCHDOG=1");
}

void Notifier::on_status_timer() {
    uint64_t expirations;
    (void)!::read(status_fd_.get(), &expirations, sizeof(expirations));
    status_armed_ = false;
    update_status();
}

bool Notifier::status_stale() const {
    if (!notify_)
        return false;
    auto s = registry_.stats();
    return s.parents != status_sent_.parents || s.children != status_sent_.children ||
           s.kills != status_sent_.kills;
}

bool Notifier::status_waiting() const {
    // Out of date and not yet waiting for its turn: the loop sends it (or arms status_fd_) as
    // soon as it finds nothing else to do.
    return !status_armed_ && (status_stale() || (notify_ && !status_sent_once_));
}

void Notifier::update_status() {
    // Sent from an idle loop only, and at most once per kStatusInterval: each STATUS= is a
    // datagram that PID 1 must parse. One per registration or per child's exit would put a
    // flood's or a fan-out kill's cost on PID 1, competing for the CPUs with the children that
    // must run to die.
    if (!notify_ || status_armed_ || (!status_stale() && status_sent_once_))
        return;
    uint64_t now = monotonic_ns();
    if (status_sent_once_ && now - status_sent_ns_ < kStatusInterval) {
        if (arm_timer_at(status_fd_.get(), status_sent_ns_ + kStatusInterval)) {
            status_armed_ = true;
            return;
        }
    }
    // Children that have exited are not counted: they are retired first (a poll of every
    // child's pidfd, at most once per kStatusInterval, and only while the figures change).
    registry_.sweep_if_due();
    auto s = registry_.stats();
    sd_notifyf(0, "STATUS=watching %u parents, %u children; %llu killed since start", s.parents,
               s.children, static_cast<unsigned long long>(s.kills));
    status_sent_ = s;
    status_sent_once_ = true;
    status_sent_ns_ = now;
}

} // namespace orphand
