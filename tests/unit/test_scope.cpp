// SPDX-License-Identifier: MIT
// Unit tests of kill scopes on real process trees, groups and cgroups: who dies, who is spared.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "event_loop.hpp"
#include "scope.hpp"
#include "scope_worker.hpp"
#include "unit_fork.hpp"

using namespace orphand;

namespace {

constexpr uid_t kNobody = 65534;
// The real uid of a member that turns into nobody while it is killed (see Turncoat).
constexpr uid_t kMarkUid = 4321;

// What a test process writes on the report pipe once it is set up: which one it is, and its pid.
struct Report {
    int tag;
    pid_t pid;
};

// The processes of one test case. This process is their subreaper: an orphan among them comes
// back to us, so that each one can be reaped here and counted. Whatever a test case leaves
// running is killed (through pidfds) and reaped by the destructor, its descendants with it.
struct Family {
    Family() {
        REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        reports = UniqueFd(fds[0]);
        report_end = UniqueFd(fds[1]);
    }
    ~Family() { end_all(); }

    // Forks a process that runs `body`, reports as `tag`, then sleeps until killed. Also used in
    // test processes (to fork theirs): only system calls in the child.
    template <typename F> pid_t spawn(int tag, F body) const {
        pid_t pid = test::fork_child();
        if (pid == 0) {
            body();
            report(tag);
            for (;;)
                ::pause();
        }
        return pid;
    }
    void report(int tag) const {
        Report r{tag, ::getpid()};
        (void)!::write(report_end.get(), &r, sizeof(r));
    }

    // The pids of the next `n` reports, by tag.
    std::map<int, pid_t> wait_reports(size_t n, int timeout_ms = 10000) {
        std::map<int, pid_t> out;
        while (out.size() < n) {
            struct pollfd p = {reports.get(), POLLIN, 0};
            REQUIRE(::poll(&p, 1, timeout_ms) == 1);
            Report r{};
            REQUIRE(::read(reports.get(), &r, sizeof(r)) == sizeof(r));
            out[r.tag] = r.pid;
        }
        return out;
    }

    // Reaps every process that comes back to us until none is left, for up to `timeout_ms`.
    // False if some are still running then. Collects their wait statuses.
    bool reap_all(int timeout_ms, std::vector<int> *statuses = nullptr) {
        uint64_t deadline = monotonic_ns() + uint64_t(timeout_ms) * 1000000;
        for (;;) {
            int status;
            pid_t pid = ::waitpid(-1, &status, WNOHANG);
            if (pid > 0) {
                if (statuses)
                    statuses->push_back(status);
                continue;
            }
            if (pid < 0 && errno == ECHILD)
                return true;
            if (monotonic_ns() > deadline)
                return false;
            ::usleep(1000);
        }
    }

    // Our children still there, from /proc (this process has one thread).
    static std::vector<pid_t> children() {
        char path[64];
        std::snprintf(path, sizeof(path), "/proc/self/task/%d/children", ::getpid());
        std::vector<pid_t> out;
        FILE *f = std::fopen(path, "re");
        if (!f)
            return out;
        int pid;
        while (std::fscanf(f, "%d", &pid) == 1)
            out.push_back(pid);
        std::fclose(f);
        return out;
    }

    // Kills what is left of the family, and reaps it.
    void end_all() {
        for (int round = 0; round < 10000; ++round) {
            if (reap_all(0))
                return;
            for (pid_t pid : children()) {
                UniqueFd fd(sys_pidfd_open(pid, 0));
                if (fd)
                    sys_pidfd_send_signal(fd.get(), SIGKILL);
            }
            ::usleep(1000);
        }
    }

    UniqueFd reports, report_end;
};

PidFd open_pid(pid_t pid) {
    UniqueFd fd(sys_pidfd_open(pid, 0));
    REQUIRE(fd);
    return PidFd(pid, std::move(fd));
}

// Exited (a zombie counts), waiting up to `timeout_ms`.
bool dead(const PidFd &p, int timeout_ms = 5000) {
    struct pollfd pfd = {p.fd(), POLLIN, 0};
    return ::poll(&pfd, 1, timeout_ms) == 1;
}

bool alive(const PidFd &p) {
    return !dead(p, 100);
}

bool allow_all(const Creds &) {
    return true;
}

// A kill of `sig` under `rule`, given the budget a worker thread gives the engine rather than the
// event loop's: a loaded machine must not turn a search cut short into a failed test. The budget
// itself is tested on its own.
ScopeKill kill_with(int sig, bool (*rule)(const Creds &) = allow_all) {
    ScopeKill k;
    k.signal = sig;
    k.allowed = rule;
    k.budget_ns = 5'000'000'000;
    return k;
}

ScopeKill sigkill_all() {
    return kill_with(SIGKILL);
}

// How many of `all` have exited within `timeout_ms`, all of them waited for together.
size_t count_dead(const std::vector<PidFd> &all, int timeout_ms = 10000) {
    uint64_t deadline = monotonic_ns() + uint64_t(timeout_ms) * 1000000;
    size_t n = 0;
    for (const PidFd &p : all) {
        uint64_t now = monotonic_ns();
        if (dead(p, now < deadline ? static_cast<int>((deadline - now) / 1000000) : 0))
            ++n;
    }
    return n;
}

// kill(2)'s rule for a sender whose uid is 0 but is not privileged.
bool uid0_rule(const Creds &c) {
    return c.ruid == 0 || c.suid == 0;
}

void become_nobody(const char *name) {
    ::prctl(PR_SET_NAME, name);
    if (::setresuid(kNobody, kNobody, kNobody) != 0)
        ::_exit(1);
}

bool kernel_at_least(int major, int minor) {
    struct utsname u {};
    int a = 0, b = 0;
    return ::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &a, &b) == 2 &&
           (a > major || (a == major && b >= minor));
}

// A file's text, or "" if it cannot be read.
std::string read_text(const std::string &path) {
    std::string out;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    char buf[4096];
    ssize_t n;
    while (fd && (n = ::read(fd.get(), buf, sizeof(buf))) > 0)
        out.append(buf, static_cast<size_t>(n));
    return out;
}

bool write_text(const std::string &path, const std::string &text) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    return fd && ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

enum Tag { kChild, kIntermediate, kHelper, kOther, kMember = 100 };

// The state letter of /proc/PID/stat (field 3), or 0 if it cannot be read.
char proc_state(pid_t pid) {
    std::string text = read_text("/proc/" + std::to_string(pid) + "/stat");
    size_t at = text.rfind(')');
    return at != std::string::npos && at + 2 < text.size() ? text[at + 2] : 0;
}

// True if `pid` is still stopped after `timeout_ms`: nothing is going to continue it.
bool stays_stopped(pid_t pid, int timeout_ms = 1000) {
    for (int i = 0; i < timeout_ms; ++i) {
        char state = proc_state(pid);
        if (state != 'T' && state != 't')
            return false;
        ::usleep(1000);
    }
    return true;
}

// Forks a process, outside any tree under test, that sends SIGCONT to `target` again and again,
// as one keeping a member from staying stopped would, until `target` is reaped. Returns once it
// has sent the first.
void spin_sigcont(Family &f, pid_t target) {
    pid_t pid = test::fork_child();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        UniqueFd fd(sys_pidfd_open(target, 0));
        if (fd && sys_pidfd_send_signal(fd.get(), SIGCONT) == 0)
            f.report(kHelper);
        while (fd && sys_pidfd_send_signal(fd.get(), SIGCONT) == 0)
            ::sched_yield();
        ::_exit(0);
    }
    f.wait_reports(1);
}

// A member that changes identity while it is killed, at a moment the test chooses: it runs with
// real uid kMarkUid and saved uid 0 (which uid0_rule allows) until told, then becomes nobody
// (which it refuses). The rule tells it when it meets kMarkUid for the `trigger`-th time, and
// waits until it has changed: every reading of its credentials after that one sees nobody.
struct Turncoat {
    explicit Turncoat(int trigger) : trigger(trigger) {
        int go[2], ack[2];
        REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(ack, O_CLOEXEC) == 0);
        go_r = UniqueFd(go[0]);
        go_w = UniqueFd(go[1]);
        ack_r = UniqueFd(ack[0]);
        ack_w = UniqueFd(ack[1]);
    }

    // The member's body (in a test process): reports as `tag`, then waits to be told.
    [[noreturn]] void run(const Family &f, int tag) const {
        if (::setresuid(kMarkUid, 0, 0) != 0)
            ::_exit(1);
        f.report(tag);
        char c;
        while (::read(go_r.get(), &c, 1) < 0 && errno == EINTR) {
        }
        become_nobody("scope-turncoat");
        (void)!::write(ack_w.get(), "a", 1);
        for (;;)
            ::pause();
    }

    std::function<bool(const Creds &)> rule() {
        return [this](const Creds &c) {
            if (c.ruid == kMarkUid && ++seen == trigger) {
                (void)!::write(go_w.get(), "g", 1);
                struct pollfd p = {ack_r.get(), POLLIN, 0};
                char a;
                turned = ::poll(&p, 1, 5000) == 1 && ::read(ack_r.get(), &a, 1) == 1;
            }
            return uid0_rule(c);
        };
    }

    int trigger;
    int seen = 0;
    bool turned = false;
    UniqueFd go_r, go_w, ack_r, ack_w;
};

} // namespace

TEST_CASE("tree: the process scope spares a descendant that left the session; the tree ends it") {
    for (uint32_t scope : {proto::kScopeProcess, proto::kScopeTree}) {
        CAPTURE(scope);
        Family f;
        // child -> intermediate -> helper, which starts a session of its own.
        REQUIRE(f.spawn(kChild, [&] {
            f.spawn(kIntermediate, [&] { f.spawn(kHelper, [] { ::setsid(); }); });
        }) > 0);
        auto pids = f.wait_reports(3);
        PidFd child = open_pid(pids[kChild]);
        PidFd intermediate = open_pid(pids[kIntermediate]);
        PidFd helper = open_pid(pids[kHelper]);

        ScopeKill k = sigkill_all();
        signal_scope(scope, child, nullptr, k);
        CHECK(dead(child));
        CHECK(k.child_signalled);
        CHECK_FALSE(k.incomplete);
        CHECK(k.skipped.empty());
        CHECK(k.protected_count == 0);
        if (scope == proto::kScopeProcess) {
            CHECK(k.signalled == 1);
            CHECK(k.reached.empty());
            CHECK(alive(intermediate));
            CHECK(alive(helper));
        } else {
            CHECK(k.signalled == 3);
            CHECK(k.reached.size() == 2);
            CHECK(dead(intermediate));
            CHECK(dead(helper));
        }
    }
}

TEST_CASE("tree: a catchable signal reaches every member, which are continued to act on it") {
    Family f;
    // Each member exits from its SIGTERM handler, which a member left stopped would never run.
    static const auto on_term = [] {
        struct sigaction sa {};
        sa.sa_handler = [](int) { ::_exit(3); };
        ::sigaction(SIGTERM, &sa, nullptr);
    };
    REQUIRE(f.spawn(kChild, [&] {
        on_term();
        f.spawn(kIntermediate, [&] {
            on_term();
            f.spawn(kHelper, on_term);
            f.spawn(kOther, on_term);
        });
    }) > 0);
    auto pids = f.wait_reports(4);
    std::vector<PidFd> all;
    for (auto [tag, pid] : pids)
        all.push_back(open_pid(pid));
    PidFd child = open_pid(pids[kChild]);

    ScopeKill k = kill_with(SIGTERM);
    signal_scope(proto::kScopeTree, child, nullptr, k);
    CHECK(k.signalled == 4);
    CHECK_FALSE(k.incomplete);
    CHECK(count_dead(all) == all.size());
    // Each from its handler, with status 3.
    std::vector<int> statuses;
    CHECK(f.reap_all(5000, &statuses));
    CHECK(statuses.size() == 4);
    for (int status : statuses)
        CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 3));
}

// A thread of the intermediate forks the helper: it is listed among that thread's children.
void *fork_from_thread(void *family) {
    static_cast<const Family *>(family)->spawn(kHelper, [] {});
    for (;;)
        ::pause();
}

TEST_CASE("tree: a child forked by a thread other than the main one is in the tree") {
    Family f;
    REQUIRE(f.spawn(kChild, [&] {
        f.spawn(kIntermediate, [&] {
            pthread_t thread;
            if (::pthread_create(&thread, nullptr, fork_from_thread, const_cast<Family *>(&f)))
                ::_exit(1);
        });
    }) > 0);
    auto pids = f.wait_reports(3);
    PidFd child = open_pid(pids[kChild]);
    PidFd intermediate = open_pid(pids[kIntermediate]);
    PidFd helper = open_pid(pids[kHelper]);
    ScopeKill k = sigkill_all();
    signal_scope(proto::kScopeTree, child, nullptr, k);
    CHECK(k.signalled == 3);
    CHECK_FALSE(k.incomplete);
    CHECK(dead(child));
    CHECK(dead(intermediate));
    CHECK(dead(helper));
}

// Each process forks `fan_out` children, a moment apart, down to `depth`, then sleeps: the tree
// is still growing while it is killed.
void fork_bomb(int depth, int fan_out) {
    for (int k = 0; k < fan_out && depth > 0; ++k) {
        pid_t pid = ::fork();
        if (pid == 0) {
            fork_bomb(depth - 1, fan_out);
            for (;;)
                ::pause();
        }
        ::usleep(200);
    }
}

TEST_CASE("tree: a tree that forks while it is killed with SIGKILL ends wholly dead") {
    Family f;
    // A bounded bomb of 1 + 3 + ... + 3^5 = 364 processes, forking from its start.
    pid_t root = test::fork_child();
    REQUIRE(root >= 0);
    if (root == 0) {
        fork_bomb(5, 3);
        for (;;)
            ::pause();
    }
    PidFd child = open_pid(root);
    // Well into its forking: its first children are there, more are coming.
    std::string children =
        "/proc/" + std::to_string(root) + "/task/" + std::to_string(root) + "/children";
    for (int i = 0; i < 5000 && read_text(children).empty(); ++i)
        ::usleep(1000);
    ::usleep(2000);
    ScopeKill k = sigkill_all();
    signal_scope(proto::kScopeTree, child, nullptr, k);
    CHECK_FALSE(k.incomplete);
    CHECK(k.child_signalled);
    // Every process the bomb made comes back to us (we are its subreaper), dead of SIGKILL: none
    // was missed, or it would still be running.
    std::vector<int> statuses;
    CHECK(f.reap_all(10000, &statuses));
    MESSAGE("fork bomb: ", statuses.size(), " processes, ", k.signalled, " signalled");
    CHECK(statuses.size() > 1);
    CHECK(k.signalled == statuses.size());
    for (int status : statuses)
        CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
}

TEST_CASE("tree: a member refused by the rule is spared, and its own descendants are not") {
    Family f;
    // child -> intermediate (becomes nobody after forking) -> helper (root).
    REQUIRE(f.spawn(kChild, [&] {
        f.spawn(kIntermediate, [&] {
            f.spawn(kHelper, [] {});
            become_nobody("scope-nobody");
        });
    }) > 0);
    auto pids = f.wait_reports(3);
    PidFd child = open_pid(pids[kChild]);
    PidFd intermediate = open_pid(pids[kIntermediate]);
    PidFd helper = open_pid(pids[kHelper]);

    ScopeKill k = kill_with(SIGKILL, uid0_rule);
    signal_scope(proto::kScopeTree, child, nullptr, k);
    CHECK(dead(child));
    CHECK(dead(helper));
    CHECK(alive(intermediate));
    CHECK(k.signalled == 2);
    CHECK(k.reached.size() == 1);
    REQUIRE(k.skipped.size() == 1);
    CHECK(k.skipped[0].pid == pids[kIntermediate]);
    CHECK(k.skipped[0].ruid == kNobody);
    CHECK(std::string(k.skipped[0].comm.data()) == "scope-nobody");
    CHECK_FALSE(k.incomplete);
}

// A process in vfork() waits for its child, unable to stop: it must not hold the kill up.
[[noreturn]] void vfork_and_wait(const Family &f) {
    pid_t pid = ::vfork();
    if (pid == 0) {
        f.report(kHelper);
        for (;;)
            ::pause();
    }
    for (;;)
        ::pause();
}

TEST_CASE("tree: a member blocked in vfork() is killed with its child, in time") {
    Family f;
    pid_t root = test::fork_child();
    REQUIRE(root >= 0);
    if (root == 0)
        vfork_and_wait(f);
    f.wait_reports(1);
    PidFd child = open_pid(root);
    // Where the kernel names the wait (to a reader that may ptrace), the kill need not wait for
    // its time bound to run out.
    bool told = false;
    for (int i = 0; i < 1000 && !told; ++i) {
        std::string wchan = read_text("/proc/" + std::to_string(root) + "/wchan");
        told = wchan == "kernel_clone" || wchan == "wait_for_vfork_done";
        if (!told)
            ::usleep(1000);
    }
    ScopeKill k = sigkill_all();
    k.budget_ns = 0; // the event loop's budget, the default
    uint64_t start = monotonic_ns();
    signal_scope(proto::kScopeTree, child, nullptr, k);
    uint64_t took_ms = (monotonic_ns() - start) / 1000000;
    CHECK(dead(child));
    CHECK(k.signalled == 2);
    CHECK(took_ms < 1000);
    if (told)
        CHECK_FALSE(k.incomplete);
    else
        MESSAGE("the vfork() wait is not shown: the kill ran to its time bound");
    std::vector<int> statuses;
    CHECK(f.reap_all(5000, &statuses));
    CHECK(statuses.size() == 2);
    for (int status : statuses)
        CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
}

// Forks a group leader and `members` processes in its group, each reporting as kMember + i.
pid_t make_group(Family &f, int members) {
    pid_t leader = f.spawn(kChild, [] { ::setpgid(0, 0); });
    REQUIRE(leader > 0);
    ::setpgid(leader, leader); // either side may get there first
    f.wait_reports(1);
    for (int i = 0; i < members; ++i) {
        pid_t pid = f.spawn(kMember + i, [leader] { ::setpgid(0, leader); });
        REQUIRE(pid > 0);
        ::setpgid(pid, leader);
    }
    return leader;
}

TEST_CASE("pgroup: every one of a group of 50 dies; a process in another group lives") {
    if (kernel_at_least(6, 9))
        CHECK(have_pgroup_signal());
    bool privileged = false;
    SUBCASE("privileged registrant: the group in one signal where the kernel can") {
        privileged = true;
    }
    SUBCASE("unprivileged registrant: member by member") {}
    Family f;
    pid_t leader = make_group(f, 49);
    auto members = f.wait_reports(49);
    REQUIRE(f.spawn(kOther, [] { ::setpgid(0, 0); }) > 0);
    PidFd bystander = open_pid(f.wait_reports(1)[kOther]);
    std::vector<PidFd> group;
    group.push_back(open_pid(leader));
    for (auto [tag, pid] : members)
        group.push_back(open_pid(pid));

    // The child is a member, not the leader: the group is the one it is in.
    PidFd child = open_pid(members[kMember + 7]);
    ScopeKill k = sigkill_all();
    k.privileged = privileged;
    unsigned checks = 0;
    k.allowed = [&checks](const Creds &) {
        ++checks;
        return true;
    };
    signal_scope(proto::kScopePgroup, child, nullptr, k);
    CHECK(k.signalled == 50);
    CHECK(k.reached.size() == 49);
    CHECK(k.child_signalled);
    CHECK_FALSE(k.incomplete);
    CHECK(count_dead(group) == group.size());
    CHECK(alive(bystander));
    // Each member judged when found; for an unprivileged registrant, checked again just before
    // its own signal, the group never signalled in one call.
    if (privileged && have_pgroup_signal())
        CHECK(checks == 50);
    else
        CHECK(checks >= 100);
}

TEST_CASE("pgroup: a group whose leader is gone is signalled member by member") {
    Family f;
    pid_t leader = make_group(f, 20);
    auto members = f.wait_reports(20);
    {
        PidFd l = open_pid(leader);
        REQUIRE(l.send_signal(SIGKILL) == 0);
        REQUIRE(::waitpid(leader, nullptr, 0) == leader);
    }
    std::vector<PidFd> group;
    for (auto [tag, pid] : members)
        group.push_back(open_pid(pid));
    PidFd child = open_pid(members[kMember]);
    ScopeKill k = sigkill_all();
    signal_scope(proto::kScopePgroup, child, nullptr, k);
    CHECK(k.signalled == 20);
    CHECK(k.reached.size() == 19);
    CHECK_FALSE(k.incomplete);
    CHECK(count_dead(group) == group.size());
}

TEST_CASE("pgroup: a member of another uid is skipped and named; the others die") {
    Family f;
    pid_t leader = make_group(f, 10);
    auto members = f.wait_reports(10);
    pid_t nobody = f.spawn(kOther, [leader] {
        ::setpgid(0, leader);
        become_nobody("scope-nobody");
    });
    REQUIRE(nobody > 0);
    ::setpgid(nobody, leader);
    f.wait_reports(1);
    PidFd spared = open_pid(nobody);
    std::vector<PidFd> group;
    group.push_back(open_pid(leader));
    for (auto [tag, pid] : members)
        group.push_back(open_pid(pid));

    PidFd child = open_pid(leader);
    ScopeKill k = kill_with(SIGKILL, uid0_rule);
    signal_scope(proto::kScopePgroup, child, nullptr, k);
    CHECK(k.signalled == 11);
    REQUIRE(k.skipped.size() == 1);
    CHECK(k.skipped[0].pid == nobody);
    CHECK(k.skipped[0].ruid == kNobody);
    CHECK(std::string(k.skipped[0].comm.data()) == "scope-nobody");
    CHECK(count_dead(group) == group.size());
    CHECK(alive(spared));
}

TEST_CASE("pgroup: a reaped child's group cannot be known, and nothing is signalled") {
    Family f;
    pid_t leader = make_group(f, 3);
    auto members = f.wait_reports(3);
    PidFd child = open_pid(leader);
    REQUIRE(child.send_signal(SIGKILL) == 0);
    REQUIRE(::waitpid(leader, nullptr, 0) == leader);
    ScopeKill k = sigkill_all();
    signal_scope(proto::kScopePgroup, child, nullptr, k);
    CHECK(k.signalled == 0);
    CHECK_FALSE(k.child_signalled);
    for (auto [tag, pid] : members)
        CHECK(alive(open_pid(pid)));
}

// What a kill run in a process of its own reports back.
struct ProtectedOutcome {
    uint32_t signalled, protected_count, dead;
    bool child_signalled;
};

TEST_CASE("pid 1, kernel threads and orphand itself are never signalled") {
    // Signal 0 tests the rule without harm, were it broken.
    ScopeKill k;
    k.signal = 0;
    k.allowed = [](const Creds &) { return true; };
    PidFd init = open_pid(1);
    signal_scope(proto::kScopeProcess, init, nullptr, k);
    PidFd self = open_pid(::getpid());
    signal_scope(proto::kScopeProcess, self, nullptr, k);
    CHECK(k.protected_count == 2);
    if (is_kernel_thread(2)) {
        PidFd kthreadd = open_pid(2);
        signal_scope(proto::kScopeProcess, kthreadd, nullptr, k);
        CHECK(k.protected_count == 3);
    }
    CHECK(k.signalled == 0);
    CHECK_FALSE(k.child_signalled);

    // A group holding the process that kills it (orphand): SIGKILL for real, in a process of its
    // own that leads a group of its own and its five children.
    Family f;
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    UniqueFd out_r(out[0]), out_w(out[1]);
    pid_t killer = test::fork_child();
    REQUIRE(killer >= 0);
    if (killer == 0) {
        ::setpgid(0, 0);
        pid_t kids[5];
        UniqueFd fds[5];
        for (int i = 0; i < 5; ++i) {
            kids[i] = ::fork();
            if (kids[i] == 0)
                for (;;)
                    ::pause();
            fds[i].reset(sys_pidfd_open(kids[i], 0));
        }
        PidFd child(kids[2], UniqueFd(::dup(fds[2].get())));
        ScopeKill g = sigkill_all();
        g.privileged = true; // the one group signal would be allowed, but for orphand in it
        signal_scope(proto::kScopePgroup, child, nullptr, g);
        ProtectedOutcome o{g.signalled, g.protected_count, 0, g.child_signalled};
        // Counted, then ended whatever the outcome: none may be left behind.
        for (int i = 0; i < 5; ++i) {
            struct pollfd p = {fds[i].get(), POLLIN, 0};
            if (::poll(&p, 1, 5000) == 1)
                ++o.dead;
            sys_pidfd_send_signal(fds[i].get(), SIGKILL);
            ::waitpid(kids[i], nullptr, 0);
        }
        (void)!::write(out_w.get(), &o, sizeof(o));
        ::_exit(0);
    }
    out_w.reset();
    ProtectedOutcome o{};
    struct pollfd p = {out_r.get(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 30000) == 1);
    REQUIRE(::read(out_r.get(), &o, sizeof(o)) == sizeof(o));
    int status;
    REQUIRE(::waitpid(killer, &status, 0) == killer);
    CHECK(WIFEXITED(status)); // it survived its own group's kill
    CHECK(o.protected_count == 1);
    CHECK(o.signalled == 5);
    CHECK(o.dead == 5);
    CHECK(o.child_signalled);
}

TEST_CASE("cgroup paths: a cgroup holds itself and what lies below it") {
    CHECK(cgroup_contains("/", "/"));
    CHECK(cgroup_contains("/", "/a/b"));
    CHECK(cgroup_contains("/a", "/a"));
    CHECK(cgroup_contains("/a", "/a/b"));
    CHECK(cgroup_contains("/a/", "/a/b"));
    CHECK(cgroup_contains("/a/b", "/a/b/c/d"));
    CHECK_FALSE(cgroup_contains("/a", "/ab"));
    CHECK_FALSE(cgroup_contains("/a/b", "/a"));
    CHECK_FALSE(cgroup_contains("/a/b", "/a/c"));
    CHECK_FALSE(cgroup_contains("/a", ""));
    CHECK_FALSE(cgroup_contains("/", ""));
}

TEST_CASE("cgroup_of: this process's cgroup, with the id of its directory") {
    std::string text = read_text("/proc/self/mountinfo");
    if (text.find(" - cgroup2 ") == std::string::npos) {
        CHECK(cgroup_mount().empty());
        MESSAGE("no cgroup2 mount here");
        return;
    }
    REQUIRE_FALSE(cgroup_mount().empty());
    PidFd self = open_pid(::getpid());
    auto ref = cgroup_of(self);
    REQUIRE(ref);
    std::string cg = read_text("/proc/self/cgroup");
    size_t at = cg.find("0::");
    REQUIRE(at != std::string::npos);
    CHECK(ref->path == cg.substr(at + 3, cg.find('\n', at) - at - 3));
    struct stat sb {};
    REQUIRE(::stat((cgroup_mount() + (ref->path == "/" ? "" : ref->path)).c_str(), &sb) == 0);
    CHECK(ref->id == sb.st_ino);
}

// Root, and a cgroup2 mount that is not read-only: then the cgroup tests must run (and fail if
// they cannot make their cgroups).
bool can_make_cgroups() {
    if (cgroup_mount().empty() || ::geteuid() != 0) {
        MESSAGE("not run: needs a cgroup2 mount and root");
        return false;
    }
    if (::access(cgroup_mount().c_str(), W_OK) != 0 && errno == EROFS) {
        MESSAGE("not run: the cgroup2 mount is read-only");
        return false;
    }
    return true;
}

// A cgroup made for one test below this process's own, removed with those made below it.
struct TestCgroup {
    explicit TestCgroup(const char *name) {
        PidFd self = open_pid(::getpid());
        auto mine = cgroup_of(self);
        REQUIRE(mine);
        path = (mine->path == "/" ? "" : mine->path) + "/orphand-" + name + "-" +
               std::to_string(::getpid());
        REQUIRE(make(""));
    }
    ~TestCgroup() {
        for (auto it = made.rbegin(); it != made.rend(); ++it)
            ::rmdir(it->c_str());
    }
    bool make(const std::string &below) {
        if (::mkdir(dir(below).c_str(), 0755) != 0)
            return false;
        made.push_back(dir(below));
        return true;
    }
    std::string dir(const std::string &below = "") const { return cgroup_mount() + path + below; }
    bool move(pid_t pid, const std::string &below = "") const {
        return write_text(dir(below) + "/cgroup.procs", std::to_string(pid));
    }

    std::string path; // below the mount
    std::vector<std::string> made;
};

TEST_CASE("tree: a member that cannot stop holds the kill up for a short wait of its own") {
    if (!can_make_cgroups())
        return;
    // The intermediate sits in a frozen cgroup: a SIGSTOP cannot stop it, SIGKILL still ends it.
    // It is waited for briefly, then read as if stopped: the kill completes, not at its budget.
    TestCgroup cg("scope-frozen");
    Family f;
    REQUIRE(f.spawn(kChild, [&] { f.spawn(kIntermediate, [] {}); }) > 0);
    auto pids = f.wait_reports(2);
    REQUIRE(cg.move(pids[kIntermediate]));
    REQUIRE(write_text(cg.dir() + "/cgroup.freeze", "1"));
    for (int i = 0;
         i < 5000 && read_text(cg.dir() + "/cgroup.events").find("frozen 1") == std::string::npos;
         ++i)
        ::usleep(1000);
    PidFd child = open_pid(pids[kChild]);
    PidFd intermediate = open_pid(pids[kIntermediate]);

    ScopeKill k = sigkill_all(); // a budget of 5 s
    uint64_t start = monotonic_ns();
    signal_scope(proto::kScopeTree, child, nullptr, k);
    uint64_t took_ms = (monotonic_ns() - start) / 1000000;
    MESSAGE("a member that cannot stop: the kill took ", took_ms, " ms");
    CHECK_FALSE(k.incomplete);
    CHECK(took_ms < 2000);
    CHECK(k.signalled == 2);
    CHECK(dead(child));
    CHECK(dead(intermediate));
    CHECK(f.reap_all(5000));
}

void *pause_forever(void *) {
    for (;;)
        ::pause();
}

TEST_CASE("tree: a member kept running by SIGCONT from outside dies without the budget spent") {
    Family f;
    // Its threads must all be seen stopped at once, which the SIGCONTs make rarer still.
    REQUIRE(f.spawn(kChild, [&] {
        f.spawn(kIntermediate, [] {
            for (int i = 0; i < 3; ++i) {
                pthread_t thread;
                if (::pthread_create(&thread, nullptr, pause_forever, nullptr))
                    ::_exit(1);
            }
        });
    }) > 0);
    auto pids = f.wait_reports(2);
    PidFd child = open_pid(pids[kChild]);
    PidFd intermediate = open_pid(pids[kIntermediate]);
    spin_sigcont(f, pids[kIntermediate]);

    ScopeKill k = sigkill_all(); // a budget of 5 s
    uint64_t start = monotonic_ns();
    signal_scope(proto::kScopeTree, child, nullptr, k);
    uint64_t took_ms = (monotonic_ns() - start) / 1000000;
    MESSAGE("a member continued again and again: the kill took ", took_ms, " ms");
    CHECK_FALSE(k.incomplete);
    CHECK(took_ms < 2000);
    CHECK(k.signalled == 2);
    CHECK(dead(child));
    REQUIRE(dead(intermediate));
    // Its parent is dead: it is ours (we are the subreaper), dead of SIGKILL.
    int status = 0;
    REQUIRE(::waitpid(pids[kIntermediate], &status, 0) == pids[kIntermediate]);
    CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
}

TEST_CASE("a member that becomes another user after it was found is not signalled") {
    // The rule refuses it from its next reading on: before its SIGSTOP (trigger 1), or, kept
    // running by SIGCONT from outside after a SIGSTOP it got, before the kill (trigger 2).
    for (int trigger : {1, 2}) {
        CAPTURE(trigger);
        Family f;
        Turncoat turn(trigger);
        REQUIRE(f.spawn(kChild, [&] { f.spawn(kMember, [&] { turn.run(f, kMember); }); }) > 0);
        auto pids = f.wait_reports(2);
        PidFd child = open_pid(pids[kChild]);
        PidFd member = open_pid(pids[kMember]);
        if (trigger == 2)
            spin_sigcont(f, pids[kMember]);

        ScopeKill k = kill_with(SIGKILL);
        k.allowed = turn.rule();
        signal_scope(proto::kScopeTree, child, nullptr, k);
        CHECK(turn.turned);
        CHECK(dead(child));
        CHECK(alive(member));
        CHECK_FALSE(stays_stopped(pids[kMember]));
        CHECK(k.signalled == 1);
        CHECK(k.reached.empty());
        REQUIRE(k.skipped.size() == 1);
        CHECK(k.skipped[0].pid == pids[kMember]);
        CHECK(k.skipped[0].ruid == kNobody);
        CHECK(std::string(k.skipped[0].comm.data()) == "scope-turncoat");
        CHECK_FALSE(k.incomplete);
    }
}

TEST_CASE("a child that becomes another user after it was judged is not signalled") {
    Family f;
    Turncoat turn(1);
    REQUIRE(f.spawn(kChild, [&] { turn.run(f, kChild); }) > 0);
    PidFd child = open_pid(f.wait_reports(1)[kChild]);
    ScopeKill k = kill_with(SIGKILL);
    k.allowed = turn.rule();
    signal_scope(proto::kScopeProcess, child, nullptr, k);
    CHECK(turn.turned);
    CHECK(alive(child));
    CHECK(k.signalled == 0);
    CHECK_FALSE(k.child_signalled);
    REQUIRE(k.skipped.size() == 1);
    CHECK(k.skipped[0].ruid == kNobody);
}

TEST_CASE("pgroup: a member that becomes another user after the scan is not signalled") {
    // For an unprivileged registrant, never the one group signal, which would reach it.
    Family f;
    pid_t leader = make_group(f, 5);
    auto members = f.wait_reports(5);
    Turncoat turn(1);
    pid_t turncoat = f.spawn(kOther, [&, leader] {
        ::setpgid(0, leader);
        turn.run(f, kOther);
    });
    REQUIRE(turncoat > 0);
    ::setpgid(turncoat, leader);
    f.wait_reports(1);
    PidFd spared = open_pid(turncoat);
    std::vector<PidFd> group;
    group.push_back(open_pid(leader));
    for (auto [tag, pid] : members)
        group.push_back(open_pid(pid));

    PidFd child = open_pid(leader);
    ScopeKill k = kill_with(SIGKILL);
    k.allowed = turn.rule();
    signal_scope(proto::kScopePgroup, child, nullptr, k);
    CHECK(turn.turned);
    CHECK(k.signalled == 6);
    REQUIRE(k.skipped.size() == 1);
    CHECK(k.skipped[0].pid == turncoat);
    CHECK(k.skipped[0].ruid == kNobody);
    CHECK(count_dead(group) == group.size());
    CHECK(alive(spared));
}

TEST_CASE("tree: a kill cut short by its abort flag or its budget leaves no member stopped") {
    // The members ignore SIGTERM: after the kill they are all still there, and none may be
    // left stopped. The abort flag is raised from the rule, at its n-th call: during the
    // freeze, with some members stopped and others not yet found (0: raised before the kill).
    // The rule is asked when a member is found and before each SIGSTOP, again if a member
    // must be stopped again, and members may be found ahead of their parent's stop: from the
    // 2nd call on, the flag may come when every member is already found and stopped. The kill
    // then either says it is incomplete, or it reached every member.
    for (int abort_at : {0, 1, 2, 3, 4, 5, 6, -1}) {
        CAPTURE(abort_at);
        Family f;
        static const auto ignore_term = [] { ::signal(SIGTERM, SIG_IGN); };
        REQUIRE(f.spawn(kChild, [&] {
            ignore_term();
            f.spawn(kIntermediate, [&] {
                ignore_term();
                f.spawn(kHelper, ignore_term);
                f.spawn(kOther, ignore_term);
            });
        }) > 0);
        auto pids = f.wait_reports(4);
        PidFd child = open_pid(pids[kChild]);

        std::atomic<bool> abort{abort_at == 0};
        int calls = 0;
        ScopeKill k = kill_with(SIGTERM);
        k.abort = &abort;
        if (abort_at >= 0) {
            k.allowed = [&](const Creds &) {
                if (++calls == abort_at)
                    abort = true;
                return true;
            };
        } else {
            // The budget runs out instead, a few members in.
            k.budget_ns = 5'000'000;
            k.allowed = [](const Creds &) {
                ::usleep(2000);
                return true;
            };
        }
        signal_scope(proto::kScopeTree, child, nullptr, k);
        if (abort_at == 0 || abort_at == 1)
            CHECK(k.incomplete); // only the child can have been found
        else
            CHECK((k.incomplete || k.signalled == pids.size()));
        CHECK(k.child_signalled);
        std::vector<PidFd> all;
        for (const auto &member : pids) {
            int tag = member.first; // a plain variable: CAPTURE takes it by reference
            CAPTURE(tag);
            all.push_back(open_pid(member.second));
            CHECK_FALSE(stays_stopped(member.second));
        }
        CHECK(count_dead(all, 100) == 0);
    }
}

TEST_CASE("cgroup: every process in the cgroup and below it dies, the cgroup is left empty") {
    if (!can_make_cgroups())
        return;
    TestCgroup cg("scope-test");
    REQUIRE(cg.make("/sub"));

    Family f;
    {
        // The child is moved in before it forks: intermediate in the same cgroup, a helper that
        // double-forks away (no longer in the tree, still in the cgroup), and one moved below.
        int go[2];
        REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
        UniqueFd go_r(go[0]), go_w(go[1]);
        pid_t root = f.spawn(kChild, [&] {
            char c;
            (void)!::read(go_r.get(), &c, 1);
            f.spawn(kIntermediate, [] {});
            if (::fork() == 0) {
                f.spawn(kHelper, [] { ::setsid(); });
                ::_exit(0);
            }
        });
        REQUIRE(root > 0);
        REQUIRE(cg.move(root));
        REQUIRE(::write(go_w.get(), "g", 1) == 1);
    }
    auto pids = f.wait_reports(3);
    REQUIRE(f.spawn(kOther, [] {}) > 0);
    pid_t moved = f.wait_reports(1)[kOther];
    REQUIRE(cg.move(moved, "/sub"));
    REQUIRE(f.spawn(kOther, [] {}) > 0); // stays where we are
    PidFd bystander = open_pid(f.wait_reports(1)[kOther]);
    std::vector<PidFd> inside;
    for (auto [tag, pid] : pids)
        inside.push_back(open_pid(pid));
    inside.push_back(open_pid(moved));

    PidFd child = open_pid(pids[kChild]);
    auto ref = cgroup_of(child);
    REQUIRE(ref);
    CHECK(ref->path == cg.path);

    // A cgroup of the same path but another id (removed and made again) is not the binding's.
    CgroupRef stale = *ref;
    stale.id += 1;
    ScopeKill none = sigkill_all();
    signal_scope(proto::kScopeCgroup, child, &stale, none);
    CHECK(none.signalled == 0);
    CHECK(alive(child));

    ScopeKill k = sigkill_all();
    signal_scope(proto::kScopeCgroup, child, &*ref, k);
    CHECK(k.signalled == 4);
    CHECK(k.child_signalled);
    CHECK(k.reached.size() == 3);
    CHECK_FALSE(k.incomplete);
    CHECK(count_dead(inside) == inside.size());
    CHECK(alive(bystander));
    // Empty once its processes are reaped, and removable.
    bystander.send_signal(SIGKILL);
    CHECK(f.reap_all(5000));
    CHECK(read_text(cg.dir() + "/cgroup.procs").empty());
    CHECK(read_text(cg.dir("/sub") + "/cgroup.procs").empty());
    CHECK(::rmdir(cg.dir("/sub").c_str()) == 0);
    CHECK(::rmdir(cg.dir().c_str()) == 0);
}

TEST_CASE("worker: a daemon that stops carries out every scope kill still queued") {
    Family family;
    constexpr int kJobs = 24;
    std::vector<pid_t> pids;
    for (int i = 0; i < kJobs; ++i)
        pids.push_back(family.spawn(i, [] {}));
    family.wait_reports(kJobs);
    std::vector<PidFd> watched;
    for (pid_t pid : pids)
        watched.push_back(open_pid(pid));
    EventLoop loop;
    Source source(Source::Kind::Scopes);
    {
        ScopeWorker worker(loop, &source);
        for (int i = 0; i < kJobs; ++i) {
            auto job = std::make_unique<ScopeJob>();
            job->uid = static_cast<uid_t>(i % 3); // three queues, taken in turn
            job->privileged = true;
            job->scope = proto::kScopeTree;
            job->child = open_pid(pids[static_cast<size_t>(i)]);
            job->kill.signal = SIGKILL;
            job->kill.allowed = [](const Creds &) { return true; };
            std::unique_ptr<ScopeJob> base = std::move(job);
            REQUIRE(worker.submit(base));
        }
        // At once, as a stopping daemon does: most are still queued.
        REQUIRE(worker.finish(10000));
        auto done = worker.take_done();
        CHECK(done.size() == kJobs);
        for (const auto &job : done)
            CHECK(job->kill.child_signalled);
    }
    CHECK(count_dead(watched) == kJobs);
}

TEST_CASE("worker: a uid's queue is bounded, and another uid's job is still taken") {
    EventLoop loop;
    Source source(Source::Kind::Scopes);
    ScopeWorker worker(loop, &source);
    Family family;
    pid_t pid = family.spawn(0, [] {});
    family.wait_reports(1);
    // Each job takes 5 ms (its rule is slow): the queue fills faster than the worker drains it.
    auto slow = [](const Creds &) {
        ::usleep(5000);
        return false;
    };
    auto job_of = [&](uid_t uid) {
        auto job = std::make_unique<ScopeJob>();
        job->uid = uid;
        job->scope = proto::kScopeProcess;
        job->child = open_pid(pid);
        job->kill.signal = SIGKILL;
        job->kill.allowed = slow;
        return std::unique_ptr<ScopeJob>(std::move(job));
    };
    size_t accepted = 0, refused = 0;
    for (size_t i = 0; i < ScopeWorker::kMaxQueuedPerUid + 8; ++i) {
        auto job = job_of(1000);
        if (worker.submit(job)) {
            ++accepted;
        } else {
            ++refused;
            CHECK(job); // handed back to the caller
        }
    }
    // At most kMaxQueuedPerUid wait, and one may have been taken by the worker meanwhile.
    CHECK(accepted <= ScopeWorker::kMaxQueuedPerUid + 1);
    CHECK(refused >= 7);
    auto other = job_of(1001);
    CHECK(worker.submit(other));
    REQUIRE(worker.finish(20000));
    CHECK(worker.take_done().size() == accepted + 1);
    // Every rule said no: the child was never signalled.
    CHECK(alive(open_pid(pid)));
}
