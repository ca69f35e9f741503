// SPDX-License-Identifier: MIT
// Kill scopes: a binding's process group, descendants or cgroup, found in /proc and the cgroup2
// hierarchy and signalled member by member through pidfds, each after the registrant's rule.
#include "scope.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "event_loop.hpp"

namespace orphand {
namespace {

// A scope kill may run on the event loop: unless given a budget (ScopeKill::budget_ns), it stops
// after this long, or after this many rounds (rescans of /proc or of the cgroup, sweeps over the
// tree's members not yet stopped), and says it is incomplete. A budget given allows rounds in
// proportion. Between two looks at processes expected to stop or to exit, it sleeps.
constexpr uint64_t kBudgetNs = 100'000'000;
constexpr uint64_t kMaxRounds = 1000;
constexpr long kPollNs = 100'000;

// How long the freeze waits for one member to show stopped, from its first SIGSTOP: SIGSTOP is
// sent again each time it is seen running meanwhile. Past it, the member is read as if it were
// stopped (and read again at every later pass, as one never stopped), and the search goes on. A
// member kept running (by a SIGCONT sent again and again, or in a frozen cgroup) would otherwise
// hold the search until the budget ran out, and leave the rest of the tree unsearched. This
// concedes that such a member may fork after its children were last read, its child unseen: it
// is the registrant's own tree, which it could leave by other means anyway (a double fork).
constexpr uint64_t kStopWaitNs = 20'000'000;

// /proc/PID/stat is about 300 bytes; the command name is at most 64.
constexpr size_t kStatSize = 1024;

// Calls f(pid) for each decimal number in a file of numbers ("children": space-separated;
// "cgroup.procs": one a line), read in pieces of any size. False if it cannot be opened or read.
template <typename F> bool for_each_number(int dir, const char *path, F f) {
    UniqueFd fd(::openat(dir, path, O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd)
        return false;
    char buf[4096];
    long value = 0;
    bool in_number = false;
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; ++i) {
            char c = buf[i];
            if (c >= '0' && c <= '9') {
                value = value < 0x3fffffff ? value * 10 + (c - '0') : value;
                in_number = true;
            } else if (in_number) {
                f(static_cast<pid_t>(value));
                value = 0;
                in_number = false;
            }
        }
    }
    if (in_number)
        f(static_cast<pid_t>(value));
    return true;
}

// Calls f(name, d_type) for each entry of the directory `fd` but "." and "..", from its start;
// stops early when f returns false.
template <typename F> void for_each_entry(int fd, F f) {
    if (::lseek(fd, 0, SEEK_SET) < 0)
        return;
    alignas(struct dirent64) char buf[8192];
    for (;;) {
        ssize_t n = ::getdents64(fd, buf, sizeof(buf));
        if (n <= 0)
            return;
        for (ssize_t off = 0; off < n;) {
            auto *d = reinterpret_cast<struct dirent64 *>(buf + off);
            off += d->d_reclen;
            const char *name = d->d_name;
            if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
                continue;
            if (!f(name, d->d_type))
                return;
        }
    }
}

// A pid from a /proc entry's name; 0 for other names.
pid_t pid_of_name(const char *name) {
    long value = 0;
    for (const char *p = name; *p; ++p) {
        if (*p < '0' || *p > '9' || value > 0x3fffffff)
            return 0;
        value = value * 10 + (*p - '0');
    }
    return static_cast<pid_t>(value);
}

// The fields of /proc/PID/stat a scope needs.
struct Stat {
    char state = 0;   // field 3: R, S, D, T (stopped), t (traced), Z, X...
    pid_t ppid = 0;   // field 4
    pid_t pgid = 0;   // field 5
    long threads = 1; // field 20
    bool kthread = false;
};

// Parses the text of a /proc/PID/stat up to field `last` (the kernel-thread flag from 20 on).
// Fields are counted from the last ')', as the command name may hold spaces and ')'.
bool parse_stat(const char *text, Stat *out, int last = 20) {
    const char *p = std::strrchr(text, ')');
    if (!p || p[1] != ' ' || p[2] == '\0')
        return false;
    out->state = p[2];
    const char *q = p + 3;
    for (int field = 4; field <= last; ++field) {
        char *end;
        long value = std::strtol(q, &end, 10);
        if (end == q)
            return false;
        if (field == 4)
            out->ppid = static_cast<pid_t>(value);
        else if (field == 5)
            out->pgid = static_cast<pid_t>(value);
        else if (field == 20)
            out->threads = value;
        q = end;
    }
    out->kthread = last >= 20 && stat_is_kernel_thread(text);
    return true;
}

bool stopped_state(char state) {
    return state == 'T' || state == 't';
}
bool exited_state(char state) {
    return state == 'Z' || state == 'X' || state == 'x';
}

// cgroup_contains() on views.
bool contains(std::string_view outer, std::string_view inner) {
    while (outer.size() > 1 && outer.back() == '/')
        outer.remove_suffix(1);
    if (outer == "/")
        return !inner.empty() && inner[0] == '/';
    return inner.substr(0, outer.size()) == outer &&
           (inner.size() == outer.size() || inner[outer.size()] == '/');
}

// The cgroup2 path on the "0::" line of a /proc/PID/cgroup text, or "" if it has none.
std::string_view unified_line(const char *text) {
    for (const char *line = text; line && *line;) {
        const char *end = std::strchr(line, '\n');
        if (std::strncmp(line, "0::", 3) == 0)
            return std::string_view(line + 3, end ? static_cast<size_t>(end - line - 3)
                                                  : std::strlen(line + 3));
        line = end ? end + 1 : nullptr;
    }
    return {};
}

// A field of /proc/self/mountinfo, with the octal escapes (\040 for a space) decoded.
std::string unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3') {
            out +=
                static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

// True once a pidfd's process is reaped: its pid may then name another process. A zombie is
// not reaped; EPERM (a process we may not signal) is not either.
bool reaped(const PidFd &p) {
    return p.send_signal(0) == -ESRCH;
}

bool have_children_files() {
    // CONFIG_PROC_CHILDREN. FIXME: drop the /proc scan once every supported kernel has it.
    static const bool have = [] {
        char path[64];
        std::snprintf(path, sizeof(path), "/proc/self/task/%d/children", ::gettid());
        return ::access(path, R_OK) == 0;
    }();
    return have;
}

void pause_briefly() {
    struct timespec ts = {0, kPollNs};
    ::nanosleep(&ts, nullptr);
}

// One scope kill. Every process met is held by a pidfd from the moment it is met: a pid read
// from /proc or cgroupfs is opened first and its membership read after, while the pidfd proves
// the pid still names it.
class ScopeWalk {
  public:
    ScopeWalk(const PidFd &child, ScopeKill &kill)
        : child_(child), kill_(kill), self_(::getpid()),
          deadline_(monotonic_ns() + (kill.budget_ns ? kill.budget_ns : kBudgetNs)),
          max_rounds_(kill.budget_ns
                          ? std::max<uint64_t>(kMaxRounds * kill.budget_ns / kBudgetNs, 1)
                          : kMaxRounds) {
        proc_.reset(::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    }

    void process();
    void pgroup();
    void tree();
    void cgroup(const CgroupRef &ref);

  private:
    enum Role : uint8_t {
        kGone,      // exited before it could be judged
        kProtected, // pid 1, a kernel thread, or orphand
        kSkipped,   // refused by the registrant's rule
        kAllowed,
    };
    struct Member {
        PidFd pidfd; // empty for the child, which `child_` holds
        Role role = kGone;
        bool stop_sent = false;     // tree: sent SIGSTOP
        bool overdue = false;       // tree: not seen stopped by stop_deadline
        bool looked = false;        // tree: its children read ahead of its stop
        uint64_t stop_deadline = 0; // tree: kStopWaitNs after its first SIGSTOP
        bool signalled = false;     // sent the kill's signal
        uint32_t threads = 1;
    };

    bool is_child(uint32_t i) const { return has_child_ && i == 0; }
    const PidFd &pidfd(uint32_t i) const { return is_child(i) ? child_ : members_[i].pidfd; }
    pid_t pid(uint32_t i) const { return pidfd(i).pid(); }

    bool aborted() const { return kill_.abort && kill_.abort->load(std::memory_order_relaxed); }
    bool expired() {
        if (rounds_ < max_rounds_ && monotonic_ns() < deadline_ && !aborted())
            return false;
        kill_.incomplete = true;
        return true;
    }

    ssize_t read_stat(pid_t pid, char *buf) const {
        char path[32];
        std::snprintf(path, sizeof(path), "%d/stat", pid);
        return read_small_at(proc_.get(), path, buf, kStatSize);
    }

    bool add_child(Stat *st);
    Result<PidFd> open_member(pid_t pid, Stat *st);
    uint32_t add(PidFd p, const Stat &st, const Creds *creds = nullptr);
    Role judge(const PidFd &p, bool kthread, const Creds *creds);
    void note_skipped(const PidFd &p, const Creds &creds);
    bool known(pid_t pid);
    bool send(uint32_t i, int sig);
    void signal(uint32_t i);
    void finish();

    bool scan_pgroup(pid_t pgid);
    void freeze();
    void stop(uint32_t i);
    enum Progress { kRunning, kStopped, kExited };
    Progress progress(uint32_t i);
    void read_children(const std::vector<uint32_t> &parents);
    struct CgroupScan {
        size_t added = 0;      // members met for the first time
        size_t dying = 0;      // members signalled already and still listed
        bool complete = false; // the whole subtree was read in time
    };
    CgroupScan scan_cgroup(int root, std::string_view path);

    const PidFd &child_;
    ScopeKill &kill_;
    UniqueFd proc_;
    pid_t self_;
    uint64_t deadline_;
    uint64_t max_rounds_;
    uint64_t rounds_ = 0;
    bool has_child_ = false; // members_[0] is the child
    std::vector<Member> members_;
    std::unordered_map<pid_t, uint32_t> index_;  // pid -> members_ index
    std::vector<uint32_t> pending_;              // tree: members whose children may still grow
    std::vector<uint32_t> fresh_;                // tree: members met in the last look
    std::vector<std::pair<pid_t, pid_t>> found_; // tree: (pid, parent pid) read from /proc
};

// The child is judged like any member, from its stat, which names it only while it is not reaped
// (a zombie keeps its pid). False if it is reaped: nothing about it can be known safely.
bool ScopeWalk::add_child(Stat *st) {
    char buf[kStatSize];
    ssize_t n = read_stat(child_.pid(), buf);
    if (reaped(child_))
        return false;
    if (n < 0 || !parse_stat(buf, st)) {
        // Not readable though it is there (no /proc?): the child alone, flagged.
        *st = Stat{};
        kill_.incomplete = true;
    }
    has_child_ = true;
    Member m;
    m.role = judge(child_, st->kthread, nullptr);
    m.threads = static_cast<uint32_t>(st->threads > 0 ? st->threads : 1);
    index_[child_.pid()] = 0;
    members_.push_back(std::move(m));
    return true;
}

// Opens `pid` and reads its stat after: the text is this process's if it has not exited when
// the read is done. An exited process is of no interest (it signals nothing, forks nothing) and
// its pid may be reaped and reused at any moment.
Result<PidFd> ScopeWalk::open_member(pid_t pid, Stat *st) {
    auto p = PidFd::open(pid);
    if (!p)
        return p.error();
    char buf[kStatSize];
    if (read_stat(pid, buf) < 0 || p->exited())
        return Error{-ESRCH, "exited"};
    if (!parse_stat(buf, st))
        return Error{-EIO, "/proc/PID/stat"};
    return p;
}

// Decides what becomes of a member; its credentials are read through its pidfd unless `known`
// gives them, read through it already.
ScopeWalk::Role ScopeWalk::judge(const PidFd &p, bool kthread, const Creds *known) {
    if (p.pid() == 1 || p.pid() == self_ || kthread) {
        ++kill_.protected_count;
        return kProtected;
    }
    Result<Creds> creds = known ? Result<Creds>(*known) : p.creds();
    if (!creds)
        return kGone;
    // No rule given refuses everything: a scope kill signals only what a rule allows.
    if (kill_.allowed && kill_.allowed(*creds))
        return kAllowed;
    note_skipped(p, *creds);
    return kSkipped;
}

void ScopeWalk::note_skipped(const PidFd &p, const Creds &creds) {
    Skipped s;
    s.pid = p.pid();
    s.ruid = creds.ruid;
    std::string comm = p.comm();
    std::strncpy(s.comm.data(), comm.c_str(), s.comm.size() - 1);
    kill_.skipped.push_back(s);
}

uint32_t ScopeWalk::add(PidFd p, const Stat &st, const Creds *creds) {
    Member m;
    m.role = judge(p, st.kthread, creds);
    m.threads = static_cast<uint32_t>(st.threads > 0 ? st.threads : 1);
    m.pidfd = std::move(p);
    auto i = static_cast<uint32_t>(members_.size());
    index_[m.pidfd.pid()] = i;
    members_.push_back(std::move(m));
    return i;
}

// True if `pid` names a process met already. One met before and reaped since no longer owns its
// pid, which may name a newer process: that pid is looked at afresh.
bool ScopeWalk::known(pid_t pid) {
    auto it = index_.find(pid);
    if (it == index_.end())
        return false;
    if (!reaped(pidfd(it->second)))
        return true;
    index_.erase(it);
    return false;
}

// Sends `sig` to a member the rule allowed, after reading its credentials again through its
// pidfd and applying the rule to them: a member may have changed identity since it was judged
// (a setuid exec), and orphand may signal what the registrant could not. One refused now is
// recorded as skipped, once, and sent nothing more. One whose credentials cannot be read is
// gone (or about to be): it is not signalled. True if the signal was sent.
bool ScopeWalk::send(uint32_t i, int sig) {
    Member &m = members_[i];
    if (m.role != kAllowed)
        return false;
    const PidFd &p = pidfd(i);
    Result<Creds> creds = p.creds();
    if (!creds)
        return false;
    if (!kill_.allowed || !kill_.allowed(*creds)) {
        m.role = kSkipped;
        note_skipped(p, *creds);
        return false;
    }
    return p.send_signal(sig) == 0;
}

void ScopeWalk::signal(uint32_t i) {
    if (!members_[i].signalled && send(i, kill_.signal))
        members_[i].signalled = true;
}

void ScopeWalk::finish() {
    for (uint32_t i = 0; i < members_.size(); ++i) {
        if (!members_[i].signalled)
            continue;
        ++kill_.signalled;
        if (is_child(i))
            kill_.child_signalled = true;
        else
            kill_.reached.push_back(std::move(members_[i].pidfd));
    }
}

void ScopeWalk::process() {
    Stat st;
    if (!add_child(&st))
        return;
    signal(0);
    finish();
}

// Adds the members of group `pgid` not met yet, signalling none. False if time ran out.
bool ScopeWalk::scan_pgroup(pid_t pgid) {
    bool in_time = true;
    unsigned count = 0;
    char buf[kStatSize];
    char name[32];
    for_each_entry(proc_.get(), [&](const char *entry, unsigned char) {
        if ((++count & 255) == 0 && expired()) {
            in_time = false;
            return false;
        }
        pid_t pid = pid_of_name(entry);
        if (pid <= 0 || known(pid))
            return true;
        // Read once unverified to pass over non-members cheaply, and again through the pidfd.
        std::snprintf(name, sizeof(name), "%d/stat", pid);
        Stat st;
        if (read_small_at(proc_.get(), name, buf, sizeof(buf)) < 0 || !parse_stat(buf, &st, 5) ||
            st.pgid != pgid)
            return true;
        auto p = open_member(pid, &st);
        if (p && st.pgid == pgid)
            add(std::move(*p), st);
        return true;
    });
    return in_time;
}

void ScopeWalk::pgroup() {
    Stat st;
    if (!add_child(&st))
        return;
    pid_t pgid = st.pgid;
    if (pgid <= 0) {
        signal(0);
        finish();
        return;
    }
    // PIDFD_SIGNAL_PROCESS_GROUP signals the group whose id is the pidfd's pid: the group led by
    // that process, not the group it belongs to. It is sent through the leader's pidfd, which
    // pins the group's identity; while the leader has not exited, its pid is the group's id.
    //
    // That one signal reaches each member without a look at its credentials when it lands: one
    // that changed identity since the scan (a setuid exec), or joined the group after it, would
    // be signalled unchecked. It is used only for a privileged registrant, whose rule allows
    // every process; pid 1, kernel threads and orphand cannot be among them (checked below).
    PidFd leader_owned;
    const PidFd *leader = nullptr;
    if (kill_.privileged && have_pgroup_signal()) {
        if (pgid == child_.pid()) {
            leader = &child_;
        } else if (auto p = PidFd::open(pgid)) {
            char buf[kStatSize];
            Stat ls;
            if (read_stat(pgid, buf) > 0 && !reaped(*p) && parse_stat(buf, &ls) &&
                ls.pgid == pgid) {
                leader_owned = std::move(*p);
                leader = &leader_owned;
            }
        }
    }
    bool in_time = scan_pgroup(pgid);
    // Members were matched by the group's id: still the leader's pid if it is not reaped.
    bool atomic = in_time && leader && !reaped(*leader);
    for (const Member &m : members_)
        atomic = atomic && m.role == kAllowed;
    if (atomic &&
        sys_pidfd_send_signal(leader->fd(), kill_.signal, kPidfdSignalProcessGroup) == 0) {
        // One signal to the whole group, forks racing with it included.
        for (Member &m : members_)
            m.signalled = true;
        finish();
        return;
    }
    // Members are signalled one by one, each checked just before its signal: for unprivileged
    // registrants, for groups holding a member refused or protected, for groups whose leader is
    // gone, and where the kernel lacks the group signal. A member may fork meanwhile, its child
    // in the group too, so the group is scanned again until a scan finds nobody not met already.
    size_t done = 0;
    for (;;) {
        size_t n = members_.size();
        for (uint32_t i = static_cast<uint32_t>(done); i < n; ++i)
            signal(i);
        done = n;
        if (!in_time || expired())
            break;
        ++rounds_;
        in_time = scan_pgroup(pgid);
        if (members_.size() == done)
            break;
    }
    finish();
}

// Sends SIGSTOP to a member that may be signalled (checked again, see send()); its wait for the
// stop starts with the first one.
void ScopeWalk::stop(uint32_t i) {
    if (!send(i, SIGSTOP))
        return;
    Member &m = members_[i];
    if (!m.stop_sent)
        m.stop_deadline = monotonic_ns() + kStopWaitNs;
    m.stop_sent = true;
}

// A thread blocked in vfork() until its child execs or exits waits in the kernel's clone, in
// state D, and cannot stop meanwhile. Nor can it fork: its child is listed already, and its
// pending SIGSTOP stops it on its way out. Told by its wait channel, where the kernel shows it
// (to a reader allowed to ptrace it); elsewhere it is waited for like any other.
bool in_vfork_wait(int dir, pid_t tid) {
    char path[32];
    std::snprintf(path, sizeof(path), "%d/wchan", tid);
    char buf[64];
    if (read_small_at(dir, path, buf, sizeof(buf)) <= 0)
        return false;
    return std::strcmp(buf, "kernel_clone") == 0 || std::strcmp(buf, "wait_for_vfork_done") == 0;
}

// True if a thread in `state` can fork no more before it is continued.
bool quiet(char state, int dir, pid_t tid) {
    return stopped_state(state) || exited_state(state) || (state == 'D' && in_vfork_wait(dir, tid));
}

// Where a member sent SIGSTOP stands: stopped (every thread of it) or exited, it cannot fork any
// more. Its thread count is brought up to date for the last reading of its children.
ScopeWalk::Progress ScopeWalk::progress(uint32_t i) {
    Member &m = members_[i];
    const PidFd &p = pidfd(i);
    char buf[kStatSize];
    Stat st;
    if (read_stat(p.pid(), buf) < 0)
        return kExited;
    if (!parse_stat(buf, &st))
        return kRunning;
    if (st.threads <= 1) {
        if (!quiet(st.state, proc_.get(), p.pid()))
            return kRunning;
        // What was read is the member's only if it is not reaped: its children are read next.
        return p.exited() ? kExited : kStopped;
    }
    m.threads = static_cast<uint32_t>(st.threads);
    // A group stop reaches the threads one by one, and the leader's state speaks for it alone.
    char path[32];
    std::snprintf(path, sizeof(path), "%d/task", p.pid());
    UniqueFd dir(::openat(proc_.get(), path, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir)
        return kExited; // reaped meanwhile
    bool all = true;
    for_each_entry(dir.get(), [&](const char *name, unsigned char) {
        pid_t tid = pid_of_name(name);
        char file[32];
        std::snprintf(file, sizeof(file), "%d/stat", tid);
        Stat ts;
        if (read_small_at(dir.get(), file, buf, sizeof(buf)) > 0 && parse_stat(buf, &ts) &&
            !quiet(ts.state, dir.get(), tid))
            all = false;
        return all;
    });
    if (!all)
        return kRunning;
    return p.exited() ? kExited : kStopped;
}

// Reads the children of `parents` into found_: /proc/PID/task/TID/children for each thread (a
// child is listed under the thread that forked it), or one scan of /proc's ppids where the kernel
// lacks those files. Then opens each one not met yet, checks through its pidfd that its parent is
// still the one it was listed under, and adds it, stopped if it may be signalled, to fresh_ and
// pending_.
void ScopeWalk::read_children(const std::vector<uint32_t> &parents) {
    found_.clear();
    char path[96];
    if (have_children_files()) {
        for (uint32_t i : parents) {
            pid_t parent = pid(i);
            auto add_found = [&](pid_t c) { found_.emplace_back(c, parent); };
            const Member &m = members_[i];
            if (m.threads == 1 && m.stop_sent && !m.overdue && m.role == kAllowed) {
                std::snprintf(path, sizeof(path), "%d/task/%d/children", parent, parent);
                for_each_number(proc_.get(), path, add_found);
                continue;
            }
            // Several threads, or a process not stopped (refused, overdue, or not yet seen
            // stopped) that may have started some since.
            std::snprintf(path, sizeof(path), "%d/task", parent);
            UniqueFd dir(::openat(proc_.get(), path, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
            if (!dir)
                continue;
            for_each_entry(dir.get(), [&](const char *tid, unsigned char) {
                char file[32];
                std::snprintf(file, sizeof(file), "%d/children", pid_of_name(tid));
                for_each_number(dir.get(), file, add_found);
                return true;
            });
        }
    } else {
        std::unordered_set<pid_t> wanted;
        for (uint32_t i : parents)
            wanted.insert(pid(i));
        char buf[kStatSize];
        for_each_entry(proc_.get(), [&](const char *entry, unsigned char) {
            pid_t c = pid_of_name(entry);
            if (c <= 0 || known(c))
                return true;
            std::snprintf(path, sizeof(path), "%d/stat", c);
            Stat st;
            if (read_small_at(proc_.get(), path, buf, sizeof(buf)) > 0 && parse_stat(buf, &st, 4) &&
                wanted.count(st.ppid))
                found_.emplace_back(c, st.ppid);
            return true;
        });
    }
    unsigned count = 0;
    for (auto [c, parent] : found_) {
        if ((++count & 63) == 0 && expired())
            return;
        if (known(c))
            continue;
        Stat st;
        Creds creds;
        Result<PidFd> p = Error{-ESRCH, ""};
        if (kernel_features().pidfd_info) {
            // Its parent and credentials in one call, through the pidfd itself: no pid is read
            // apart from it that could be reused meanwhile. (Its thread count is read once it is
            // stopped; the children of a process are never kernel threads.)
            p = PidFd::open(c);
            ProcessInfo info;
            if (!p || pidfd_get_info(p->fd(), &info) < 0 || !info.have_pid || !info.have_creds ||
                info.ppid != parent || p->exited())
                continue; // gone (a zombie has nothing left to kill), or reparented away
            creds = Creds{info.ruid, info.euid, info.suid};
        } else {
            // FIXME: drop once Linux 6.13 is the minimum.
            p = open_member(c, &st);
            if (!p || st.ppid != parent)
                continue;
        }
        uint32_t i = add(std::move(*p), st, kernel_features().pidfd_info ? &creds : nullptr);
        stop(i);
        fresh_.push_back(i);
        pending_.push_back(i);
    }
}

// Stops the tree top-down and reads each member's children once it is stopped, until a look at
// every member whose children may still change finds no new one.
//
// A process's children go to a reaper (init, or a subreaper) when it exits: they are no longer
// its descendants, so the tree is frozen before anything is killed. A SIGSTOP does not interrupt
// a fork already under way: the new child may be listed only after the signal was sent, so the
// children a member has when it is seen stopped are the ones that count, and read again then.
// Members that are not stopped (refused, protected, not stoppable, or not seen stopped within
// kStopWaitNs) are read again on each pass. What cannot be caught: processes reparented away
// before the kill (a daemonizing double fork), which are no longer in the tree.
void ScopeWalk::freeze() {
    stop(0);
    pending_.push_back(0);
    std::vector<uint32_t> look, eager;
    for (;;) {
        // Members stopped since the last pass are read a last time; those never stopped (refused
        // or protected) or overdue, on every pass.
        look.clear();
        size_t kept = 0, waiting = 0, settled_now = 0;
        uint64_t now = monotonic_ns();
        for (uint32_t i : pending_) {
            Member &m = members_[i];
            // A member refused since its SIGSTOP (see send()) is no longer stopped by orphand.
            if (m.stop_sent && !m.overdue && m.role == kAllowed) {
                Progress state = progress(i);
                if (state == kRunning && now < m.stop_deadline) {
                    // Continued since (or not stopped yet): stopped again, if still allowed.
                    stop(i);
                    ++waiting;
                    pending_[kept++] = i;
                    continue;
                }
                ++settled_now;
                if (state == kStopped) {
                    look.push_back(i);
                    continue;
                }
                if (state == kExited)
                    continue;
                m.overdue = true; // read from now on as one never stopped
            }
            if (pidfd(i).exited())
                continue;
            look.push_back(i);
            pending_[kept++] = i;
        }
        pending_.resize(kept);
        fresh_.clear();
        read_children(look);
        if (fresh_.empty() && waiting == 0)
            return;
        if (expired())
            return;
        ++rounds_;
        if (!fresh_.empty() || settled_now > 0)
            continue;
        // Nothing stopped since the last pass: meanwhile the children of members still stopping
        // are read ahead, so that a deep tree is stopped level after level without a wait for
        // each. They are read again once their parent is stopped.
        eager.clear();
        for (uint32_t i : pending_) {
            Member &m = members_[i];
            if (m.stop_sent && !m.overdue && m.role == kAllowed && !m.looked) {
                m.looked = true;
                eager.push_back(i);
            }
        }
        read_children(eager);
        if (fresh_.empty())
            pause_briefly();
    }
}

void ScopeWalk::tree() {
    Stat st;
    if (!add_child(&st))
        return;
    // An exited child has no descendants left: they went to a reaper when it exited. A kernel
    // thread's are kernel threads.
    if (!child_.exited() && !st.kthread)
        freeze();
    // Whether the freeze completed, ran out of budget or was aborted: every member found is
    // signalled, then every member stopped is continued.
    for (uint32_t i = 0; i < members_.size(); ++i)
        signal(i);
    // SIGCONT lets a stopped member act on a catchable signal. One killed by SIGKILL needs none;
    // one whose kill's signal failed must not be left stopped. SIGCONT too goes only to a member
    // the rule still allows. A stopped process cannot exec: one refused now was continued by
    // someone else after its SIGSTOP, or changed identity in the window between the reading of
    // its credentials and that SIGSTOP, the window every signal has.
    for (uint32_t i = 0; i < members_.size(); ++i) {
        const Member &m = members_[i];
        bool leave = m.signalled && (kill_.signal == SIGKILL || kill_.signal == SIGSTOP);
        if (m.stop_sent && !leave)
            (void)send(i, SIGCONT);
    }
    finish();
}

// Adds and signals the processes of the cgroup open at `root` (path `path`) and of those below
// it that were not met yet.
ScopeWalk::CgroupScan ScopeWalk::scan_cgroup(int root, std::string_view path) {
    CgroupScan scan;
    std::vector<std::string> dirs{"."};
    std::vector<pid_t> pids;
    char buf[8192];
    while (!dirs.empty()) {
        if (expired())
            return scan;
        std::string dir = std::move(dirs.back());
        dirs.pop_back();
        UniqueFd fd(::openat(root, dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!fd)
            continue; // removed meanwhile
        pids.clear();
        for_each_number(fd.get(), "cgroup.procs", [&](pid_t p) { pids.push_back(p); });
        unsigned count = 0;
        for (pid_t p : pids) {
            if ((++count & 63) == 0 && expired())
                return scan;
            if (known(p)) {
                if (members_[index_[p]].signalled)
                    ++scan.dying;
                continue;
            }
            auto pf = PidFd::open(p);
            if (!pf)
                continue;
            char name[32];
            std::snprintf(name, sizeof(name), "%d/cgroup", p);
            ssize_t n = read_small_at(proc_.get(), name, buf, sizeof(buf));
            if (n <= 0 || static_cast<size_t>(n) >= sizeof(buf) - 1 || pf->exited())
                continue;
            if (!contains(path, unified_line(buf)))
                continue; // moved out meanwhile
            // Its stat for the kernel-thread rule, which never holds below the root cgroup, read
            // through the pidfd all the same.
            Stat st;
            if (read_stat(p, buf) < 0 || pf->exited() || !parse_stat(buf, &st))
                continue;
            uint32_t i = add(std::move(*pf), st);
            signal(i);
            ++scan.added;
        }
        for_each_entry(fd.get(), [&](const char *name, unsigned char type) {
            if (type == DT_DIR)
                dirs.push_back(dir + "/" + name);
            return true;
        });
    }
    scan.complete = true;
    return scan;
}

void ScopeWalk::cgroup(const CgroupRef &ref) {
    const std::string &mount = cgroup_mount();
    if (mount.empty())
        return;
    std::string dir = mount + (ref.path == "/" ? std::string() : ref.path);
    UniqueFd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat sb {};
    // Removed, or removed and made again under the same name: not the binding's cgroup.
    if (!root || ::fstat(root.get(), &sb) < 0 || sb.st_ino != ref.id)
        return;
    Stat st;
    if (add_child(&st))
        signal(0); // the child, wherever it is now
    // Processes move in, and members fork, while the cgroup is read: it is read again until a
    // reading finds nobody new. For SIGKILL, until only members refused or protected are left,
    // the others having exited: the cgroup is then empty but for them.
    for (;;) {
        CgroupScan scan = scan_cgroup(root.get(), ref.path);
        if (!scan.complete)
            break;
        if (scan.added == 0 && (kill_.signal != SIGKILL || scan.dying == 0))
            break;
        if (rounds_ >= max_rounds_ || monotonic_ns() >= deadline_ || aborted()) {
            // Every member found is signalled: if only their exits are awaited, it is complete.
            if (scan.added > 0)
                kill_.incomplete = true;
            break;
        }
        ++rounds_;
        if (scan.added == 0)
            pause_briefly();
    }
    finish();
}

} // namespace

const std::string &cgroup_mount() {
    static const std::string mount = [] {
        std::string text;
        UniqueFd fd(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
        if (!fd)
            return std::string();
        char buf[4096];
        for (;;) {
            ssize_t n = ::read(fd.get(), buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            text.append(buf, static_cast<size_t>(n));
        }
        // "36 35 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw": the root of the mounted
        // tree (field 4), its mount point (field 5), then after " - " the file system type. A
        // mount of the whole hierarchy is preferred: /proc/PID/cgroup paths start at its root.
        std::string found;
        std::string_view all = text;
        while (!all.empty()) {
            size_t eol = all.find('\n');
            std::string_view line = all.substr(0, eol);
            all = eol == std::string_view::npos ? std::string_view() : all.substr(eol + 1);
            size_t dash = line.find(" - ");
            if (dash == std::string_view::npos || line.substr(dash + 3, 8) != "cgroup2 ")
                continue;
            std::string_view f[5];
            std::string_view rest = line.substr(0, dash);
            for (auto &field : f) {
                size_t sp = rest.find(' ');
                field = rest.substr(0, sp);
                rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
            }
            if (f[4].empty())
                continue;
            if (f[3] == "/")
                return unescape(f[4]);
            if (found.empty())
                found = unescape(f[4]);
        }
        return found;
    }();
    return mount;
}

Result<CgroupRef> cgroup_of(const PidFd &p) {
    const std::string &mount = cgroup_mount();
    if (mount.empty())
        return Error{-EOPNOTSUPP, "no cgroup2 mount"};
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/cgroup", p.pid());
    char buf[8192];
    ssize_t n = read_small_at(AT_FDCWD, path, buf, sizeof(buf));
    if (n < 0)
        return Error{static_cast<int>(n), "/proc/PID/cgroup"};
    // The pid names our process only while it is not reaped: checked after reading.
    if (reaped(p))
        return Error{-ESRCH, "process reaped"};
    if (static_cast<size_t>(n) >= sizeof(buf) - 1)
        return Error{-E2BIG, "/proc/PID/cgroup"};
    std::string_view line = unified_line(buf);
    if (line.empty() || line[0] != '/')
        return Error{-ENOENT, "no cgroup2 path in /proc/PID/cgroup"};
    // A cgroup outside our cgroup namespace shows as "/../..": not one below the mount.
    for (size_t at = line.find("/.."); at != std::string_view::npos; at = line.find("/..", at + 3))
        if (at + 3 == line.size() || line[at + 3] == '/')
            return Error{-ENOENT, "cgroup outside our cgroup namespace"};
    CgroupRef ref;
    ref.path = std::string(line);
    struct stat sb {};
    std::string dir = mount + (ref.path == "/" ? std::string() : ref.path);
    if (::stat(dir.c_str(), &sb) < 0)
        return Error{-errno, "stat of the cgroup"};
    ref.id = sb.st_ino;
    return ref;
}

bool cgroup_contains(const std::string &outer, const std::string &inner) {
    return contains(outer, inner);
}

bool have_pgroup_signal() {
    // Signal 0 with the flag, through our own pidfd: a kernel that does not know the flag says
    // EINVAL; one that does says 0, or ESRCH if we lead no process group.
    static const bool have = [] {
        UniqueFd self(sys_pidfd_open(::getpid(), 0));
        if (!self)
            return false;
        int r = sys_pidfd_send_signal(self.get(), 0, kPidfdSignalProcessGroup);
        return r == 0 || errno != EINVAL;
    }();
    return have;
}

void signal_scope(uint32_t scope, const PidFd &child, const CgroupRef *cgroup, ScopeKill &kill) {
    ScopeWalk walk(child, kill);
    switch (scope) {
    case proto::kScopePgroup:
        walk.pgroup();
        break;
    case proto::kScopeTree:
        walk.tree();
        break;
    case proto::kScopeCgroup:
        if (cgroup)
            walk.cgroup(*cgroup);
        break;
    default:
        walk.process();
        break;
    }
}

} // namespace orphand
