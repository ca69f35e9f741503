// SPDX-License-Identifier: MIT
// KillLog: the registry's kill events, described in the log (journal fields, /proc reads).
#include "kill_log.hpp"

#include <cstring>
#include <string>

#include "log.hpp"

namespace orphand {
namespace {

// "tree", "process group": what the log calls a scope.
const char *scope_noun(uint8_t scope) {
    switch (scope) {
    case proto::kScopePgroup:
        return "process group";
    case proto::kScopeTree:
        return "tree";
    case proto::kScopeCgroup:
        return "cgroup";
    default:
        return "process";
    }
}

} // namespace

void KillLog::on_kill(KillEvent &note) {
    std::string child_comm = note.comm[0] != '\0' ? note.comm.data()
                             : note.child.valid() ? note.child.comm()
                                                  : "?";
    std::string child_pid = std::to_string(note.child_pid);
    std::string uid = std::to_string(note.who.uid);
    if (note.notice == KillNotice::Escalated) {
        log_entry(LOG_WARNING, msgid::kEscalate,
                  fmt::format("killed {}[{}] with SIGKILL: it outlived its grace period",
                              child_comm, child_pid),
                  {{"ORPHAND_CHILD_PID", child_pid},
                   {"ORPHAND_CHILD_COMM", child_comm},
                   {"ORPHAND_SIGNAL", "SIGKILL"},
                   {"ORPHAND_REGISTRANT_UID", uid}});
        return;
    }
    if (note.notice == KillNotice::EscalationRefused) {
        log_entry(LOG_WARNING, msgid::kKillRefused,
                  fmt::format("not escalating to SIGKILL for {}[{}]: its uid ({}) is no longer "
                              "the registrant's ({})",
                              child_comm, child_pid, note.child_ruid, note.who.uid),
                  {{"ORPHAND_CHILD_PID", child_pid},
                   {"ORPHAND_CHILD_COMM", child_comm},
                   {"ORPHAND_SIGNAL", "SIGKILL"},
                   {"ORPHAND_REGISTRANT_UID", uid}});
        return;
    }
    DeadParent &parent = *note.parent;
    if (parent.comm[0] == '\0') {
        // Named only now (it died before the loop was idle): a zombie still has its name.
        std::string comm = parent.pidfd.valid() ? parent.pidfd.comm() : "?";
        std::snprintf(parent.comm.data(), parent.comm.size(), "%s", comm.c_str());
    }
    const char *parent_comm = parent.comm.data();
    std::string parent_pid = std::to_string(parent.pid);
    if (note.scope_kill)
        describe_skipped(note, child_comm, parent_comm, parent_pid);
    if (note.notice == KillNotice::Refused &&
        !(note.scope_kill && note.scope_kill->signalled > 0)) {
        log_entry(LOG_WARNING, msgid::kKillRefused,
                  fmt::format("not killing {}[{}]: its uid ({}) is no longer the registrant's "
                              "({}); parent {}[{}] died",
                              child_comm, child_pid, note.child_ruid, note.who.uid, parent_comm,
                              parent_pid),
                  {{"ORPHAND_CHILD_PID", child_pid},
                   {"ORPHAND_CHILD_COMM", child_comm},
                   {"ORPHAND_PARENT_PID", parent_pid},
                   {"ORPHAND_REGISTRANT_UID", uid}});
        return;
    }
    // The parent's status is in /proc/PID/stat while it is a zombie, and in PIDFD_INFO_EXIT
    // once reaped; read once for all its children.
    if (parent.status == -2 && !(parent.pidfd.valid() && parent.pidfd.exit_status(&parent.status)))
        parent.status = -1;
    std::string parent_exit = parent.status >= 0 ? describe_exit(parent.status) : "";
    std::string how = parent_exit.empty() ? "" : fmt::format(" ({})", parent_exit);
    // A scope beyond the child: how many it signalled, the child among them or not.
    const ScopeKill *k = note.scope_kill.get();
    uint32_t signalled = k ? k->signalled : 1;
    std::string whom = fmt::format("{}[{}]", child_comm, child_pid);
    if (k) {
        uint32_t others = k->signalled - (k->child_signalled ? 1 : 0);
        if (k->child_signalled && others > 0)
            whom = fmt::format("{} and {} more of its {}", whom, others, scope_noun(note.scope));
        else if (!k->child_signalled)
            whom =
                fmt::format("{} processes of the {} of {}", others, scope_noun(note.scope), whom);
        if (k->incomplete)
            whom += " (gave up before the scope was complete)";
    }
    if (note.scope_dropped)
        whom += fmt::format(" (alone: its {} was not searched, as orphand had no fd, no thread or "
                            "no room in this user's queue of scope kills)",
                            scope_noun(note.scope));
    std::string text = fmt::format("killed {} with {}: parent {}[{}] ", whom,
                                   signal_name(note.signal), parent_comm, parent_pid);
    switch (note.notice) {
    case KillNotice::AtRegistration:
        text += fmt::format("was already dead when the binding was registered{}", how);
        break;
    case KillNotice::AtRestore:
        text += fmt::format("died while orphand was not running{}", how);
        break;
    default:
        text += fmt::format("died{}, {} us after its death", how, note.latency_us);
        break;
    }
    bool already_dead = note.notice != KillNotice::Watched;
    log_entry(LOG_NOTICE, already_dead ? msgid::kParentAlreadyDead : msgid::kKill, text,
              {{"ORPHAND_PARENT_PID", parent_pid},
               {"ORPHAND_PARENT_COMM", parent_comm},
               {"ORPHAND_PARENT_EXIT", parent_exit},
               {"ORPHAND_CHILD_PID", child_pid},
               {"ORPHAND_CHILD_COMM", child_comm},
               {"ORPHAND_SIGNAL", signal_name(note.signal)},
               {"ORPHAND_REGISTRANT_UID", uid},
               {"ORPHAND_REGISTRANT_PID", std::to_string(note.who.pid)},
               {"ORPHAND_LATENCY_USEC", std::to_string(note.latency_us)},
               {"ORPHAND_SCOPE", proto::scope_name(note.scope)},
               {"ORPHAND_SIGNALLED", std::to_string(signalled)}});
}

void KillLog::describe_skipped(const KillEvent &note, const std::string &child_comm,
                               const char *parent_comm, const std::string &parent_pid) {
    const ScopeKill &k = *note.scope_kill;
    if (k.skipped.empty() && note.unescalated == 0)
        return;
    std::string list;
    size_t shown = 0;
    for (const Skipped &s : k.skipped) {
        if (shown++ == 8) {
            list += fmt::format(", and {} more", k.skipped.size() - 8);
            break;
        }
        list += fmt::format("{}{}[{}] (uid {})", list.empty() ? "" : ", ",
                            std::string(s.comm.data(), strnlen(s.comm.data(), s.comm.size())),
                            s.pid, s.ruid);
    }
    std::string text =
        k.skipped.empty()
            ? fmt::format("the {} of {}[{}]: {} processes signalled but not escalated to SIGKILL: "
                          "orphand has no fd left to watch them",
                          scope_noun(note.scope), child_comm, note.child_pid, note.unescalated)
            : fmt::format("not signalling {} of the {} of {}[{}]: their uid is not the "
                          "registrant's ({}); parent {}[{}] died",
                          list, scope_noun(note.scope), child_comm, note.child_pid, note.who.uid,
                          parent_comm, parent_pid);
    log_entry(LOG_WARNING, msgid::kKillRefused, text,
              {{"ORPHAND_CHILD_PID", std::to_string(note.child_pid)},
               {"ORPHAND_CHILD_COMM", child_comm},
               {"ORPHAND_PARENT_PID", parent_pid},
               {"ORPHAND_REGISTRANT_UID", std::to_string(note.who.uid)},
               {"ORPHAND_SCOPE", proto::scope_name(note.scope)},
               {"ORPHAND_SKIPPED", std::to_string(k.skipped.size())}});
}

} // namespace orphand
