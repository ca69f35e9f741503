// SPDX-License-Identifier: MIT
// KillLog: what the registry's kills did, as log entries.
#pragma once

#include <string>

#include "registry.hpp"

namespace orphand {

// Describes each kill event the registry reports: one entry per kill (the child, its scope, the
// parent's death and exit status, the latency), escalation or refusal, and one for the
// processes a scope skipped. Names not read before the kill are read here, through the
// event's pidfds.
class KillLog final : public KillObserver {
  public:
    void on_kill(KillEvent &event) override;

  private:
    // The processes a scope skipped (not the registrant's), or could not escalate, if any.
    void describe_skipped(const KillEvent &note, const std::string &child_comm,
                          const char *parent_comm, const std::string &parent_pid);
};

} // namespace orphand
