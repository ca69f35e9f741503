// SPDX-License-Identifier: MIT
// Notifier: what orphand tells systemd (sd_notify): READY, STATUS, WATCHDOG and STOPPING.
#pragma once

#include <cstdint>

#include "event_loop.hpp"
#include "registry.hpp"
#include "unique_fd.hpp"

namespace orphand {

// Tells systemd when orphand is ready and stopping, keeps its watchdog fed, and keeps the unit's
// STATUS= line (the registry's figures) up to date at a bounded rate. Outside systemd (no
// NOTIFY_SOCKET) every call but the watchdog's is a no-op.
class Notifier {
  public:
    // Adds the watchdog timer (if systemd asked for one) and the STATUS= timer (under systemd)
    // to `loop`, reporting them through `watchdog_source` and `status_source`. Reads figures
    // from `registry`, which outlives it. Throws std::system_error on start-up failure.
    Notifier(EventLoop &loop, Registry &registry, Source *watchdog_source, Source *status_source);

    void ready();    // READY=1, then the first STATUS=
    void stopping(); // STOPPING=1
    // The loop's events for the two timers.
    void on_watchdog();
    void on_status_timer();
    // Sends STATUS= if the figures changed, unless one went less than kStatusInterval ago: then
    // the status timer is armed for when one may go. The loop calls it when it is idle.
    void update_status();
    // STATUS= is out of date and not yet waiting for its timer: the loop should not sleep.
    bool status_waiting() const;

    static constexpr uint64_t kStatusInterval = 1'000'000'000; // ns between two STATUS= at most

  private:
    bool status_stale() const;

    Registry &registry_;
    UniqueFd watchdog_fd_;
    UniqueFd status_fd_;        // the next STATUS= when one is due (under systemd only)
    bool notify_;               // under systemd (sd_notify)
    RegistryStats status_sent_; // figures of the last STATUS=
    bool status_sent_once_ = false;
    uint64_t status_sent_ns_ = 0; // when the last STATUS= went
    bool status_armed_ = false;   // status_fd_ will fire for a STATUS= out of date
};

} // namespace orphand
