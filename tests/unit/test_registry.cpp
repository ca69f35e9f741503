// SPDX-License-Identifier: MIT
// Unit tests of the registry on real processes: add, retire, cascade, duplicates, policy.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "event_loop.hpp"
#include "log.hpp"
#include "registry.hpp"
#include "unit_fork.hpp"

using namespace orphand;

namespace {

// A forked child that sleeps until killed; optionally ignores SIGTERM. Killed and reaped by
// the destructor, through its pidfd.
struct Child {
    explicit Child(bool ignore_term = false) {
        int ready[2];
        REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
        pid = test::fork_child();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            if (ignore_term)
                ::signal(SIGTERM, SIG_IGN);
            (void)!::write(ready[1], "x", 1); // its signal dispositions are in place
            for (;;)
                ::pause();
        }
        ::close(ready[1]);
        char c;
        REQUIRE(::read(ready[0], &c, 1) == 1);
        ::close(ready[0]);
        fd = UniqueFd(sys_pidfd_open(pid, 0));
        REQUIRE(fd);
    }
    ~Child() {
        sys_pidfd_send_signal(fd.get(), SIGKILL);
        ::waitpid(pid, nullptr, 0);
    }
    PidFd handle() const { return PidFd(pid, UniqueFd(::dup(fd.get()))); }
    // Exited (a zombie counts: we are its parent and have not reaped it).
    bool dead(int timeout_ms = 0) const {
        struct pollfd p = {fd.get(), POLLIN, 0};
        return ::poll(&p, 1, timeout_ms) > 0;
    }
    void kill(int sig = SIGKILL) const { sys_pidfd_send_signal(fd.get(), sig); }
    pid_t pid;
    UniqueFd fd;
};

struct Fixture {
    Fixture(Limits limits = {}) {
        log_setup(LogTarget::Stderr, LOG_WARNING);
        UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        REQUIRE(loop.add(timer.get(), EPOLLIN, &timer_source).ok());
        registry = std::make_unique<Registry>(loop, std::move(timer), &timer_source, limits);
    }
    // Dispatches events until `done` or the timeout.
    template <typename F> bool pump_until(F done, int timeout_ms = 5000) {
        uint64_t deadline = monotonic_ns() + uint64_t(timeout_ms) * 1000000;
        while (!done()) {
            if (monotonic_ns() > deadline)
                return false;
            std::array<struct epoll_event, 16> ev;
            int n = loop.wait(ev.data(), 16, 50);
            registry->handle_events(ev.data(), std::max(n, 0));
            registry->collect();
        }
        return true;
    }
    void pump(int ms) {
        pump_until([] { return false; }, ms);
    }
    // As pump_until, retiring exited children at each turn, as answering LIST does: nothing
    // watches a process that is only a child.
    template <typename F> bool sweep_until(F done, int timeout_ms = 5000) {
        return pump_until(
            [&] {
                registry->retire_exited_children();
                registry->collect();
                return done();
            },
            timeout_ms);
    }
    // One batch of events (none after `timeout_ms`), handled; the kinds of its sources.
    std::vector<Source::Kind> step(int timeout_ms) {
        std::array<struct epoll_event, 16> ev;
        int n = loop.wait(ev.data(), 16, timeout_ms);
        std::vector<Source::Kind> kinds;
        for (int i = 0; i < n; ++i)
            kinds.push_back(static_cast<Source *>(ev[i].data.ptr)->kind);
        registry->handle_events(ev.data(), std::max(n, 0));
        registry->collect();
        return kinds;
    }
    EventLoop loop;
    Source timer_source{Source::Kind::Timer};
    std::unique_ptr<Registry> registry;
    Registrant root{0, ::getpid(), true};
    Policy policy{SIGTERM, 5000};
};

} // namespace

TEST_CASE("parent death kills the child and retires the binding") {
    Fixture f;
    Child parent, child;
    Verdict v = f.registry->add(parent.handle(), child.handle(), f.policy, f.root);
    CHECK(v.error == 0);
    CHECK(v.reason == proto::kOk);
    CHECK(f.registry->stats().bindings == 1);
    parent.kill();
    CHECK(f.pump_until([&] { return child.dead(); }));
    f.pump_until(
        [&] { return f.registry->stats().bindings == 0 && f.registry->stats().children == 0; });
    CHECK(f.registry->stats().bindings == 0);
    CHECK(f.registry->stats().kills == 1);
}

TEST_CASE("a child that exits on its own retires its binding; the parent's death kills nothing") {
    Fixture f;
    Child parent, child, bystander;
    CHECK(f.registry->add(parent.handle(), child.handle(), f.policy, f.root).error == 0);
    child.kill();
    CHECK(f.sweep_until([&] { return f.registry->stats().bindings == 0; }));
    parent.kill();
    f.pump(100);
    CHECK(f.registry->stats().kills == 0);
    CHECK_FALSE(bystander.dead());
}

TEST_CASE("registering the same pair twice is one binding") {
    Fixture f;
    Child parent, child;
    CHECK(f.registry->add(parent.handle(), child.handle(), f.policy, f.root).reason == proto::kOk);
    CHECK(f.registry->add(parent.handle(), child.handle(), f.policy, f.root).reason ==
          proto::kAlreadyBound);
    CHECK(f.registry->stats().bindings == 1);
    CHECK(f.registry->stats().parents == 1);
    CHECK(f.registry->stats().children == 1);
}

TEST_CASE("remove forgets the binding and the child survives") {
    Fixture f;
    Child parent, child;
    CHECK(f.registry->add(parent.handle(), child.handle(), f.policy, f.root).error == 0);
    CHECK(f.registry->remove(parent.pid, child.pid, f.root).reason == proto::kOk);
    CHECK(f.registry->remove(parent.pid, child.pid, f.root).reason == proto::kNotBound);
    parent.kill();
    f.pump(100);
    CHECK_FALSE(child.dead());
}

TEST_CASE("cascade: a killed child that is a parent takes its own children down") {
    Fixture f;
    Child a, b, c;
    CHECK(f.registry->add(a.handle(), b.handle(), f.policy, f.root).error == 0);
    CHECK(f.registry->add(b.handle(), c.handle(), f.policy, f.root).error == 0);
    CHECK(f.registry->stats().parents == 2);
    a.kill();
    CHECK(f.pump_until([&] { return c.dead(); }));
    CHECK(b.dead());
    CHECK(f.registry->stats().kills == 2);
}

TEST_CASE("a child bound to two parents dies with the first of them") {
    Fixture f;
    Child p1, p2, child;
    CHECK(f.registry->add(p1.handle(), child.handle(), f.policy, f.root).error == 0);
    CHECK(f.registry->add(p2.handle(), child.handle(), f.policy, f.root).error == 0);
    CHECK(f.registry->stats().bindings == 2);
    p2.kill();
    CHECK(f.pump_until([&] { return child.dead(); }));
    CHECK_FALSE(p1.dead());
    CHECK(f.sweep_until([&] { return f.registry->stats().bindings == 0; }));
}

TEST_CASE("policy: SIGTERM is escalated to SIGKILL after the grace period") {
    Fixture f;
    Child parent, stubborn(true);
    CHECK(f.registry->add(parent.handle(), stubborn.handle(), {SIGTERM, 200}, f.root).error == 0);
    parent.kill();
    f.pump(100);
    CHECK_FALSE(stubborn.dead());
    CHECK(f.pump_until([&] { return stubborn.dead(); }, 5000));
    CHECK(f.registry->stats().kills == 1); // one process killed, with two signals
}

TEST_CASE("policy: grace 'never' leaves a child that ignores the first signal alone") {
    Fixture f;
    Child parent, stubborn(true);
    CHECK(f.registry->add(parent.handle(), stubborn.handle(), {SIGTERM, proto::kGraceNever}, f.root)
              .error == 0);
    parent.kill();
    f.pump(400);
    CHECK_FALSE(stubborn.dead());
}

TEST_CASE("policy: a chosen first signal is the one delivered") {
    Fixture f;
    Child parent, child;
    CHECK(f.registry->add(parent.handle(), child.handle(), {SIGUSR1, 5000}, f.root).error == 0);
    parent.kill();
    CHECK(f.pump_until([&] { return child.dead(); }));
    siginfo_t si{};
    REQUIRE(::waitid(P_PID, static_cast<id_t>(child.pid), &si, WEXITED | WNOWAIT) == 0);
    CHECK(si.si_code == CLD_KILLED);
    CHECK(si.si_status == SIGUSR1);
}

TEST_CASE("a parent already dead at registration kills the child at once") {
    Fixture f;
    Child parent, child;
    parent.kill();
    REQUIRE(parent.dead(2000));
    Verdict v = f.registry->add(parent.handle(), child.handle(), f.policy, f.root);
    CHECK(v.error == 0);
    CHECK(v.reason == proto::kParentAlreadyDead);
    CHECK(child.dead(2000));
    CHECK(f.registry->stats().bindings == 0);
}

TEST_CASE("an unprivileged registrant's child is not killed if it is another user's") {
    Fixture f;
    Child parent, child; // both root's
    Registrant nobody{65534, 1, false};
    CHECK(f.registry->add(parent.handle(), child.handle(), f.policy, nobody).error == 0);
    parent.kill();
    f.pump(200);
    CHECK_FALSE(child.dead());
}

TEST_CASE("limits: per uid and per parent") {
    Fixture f({2, 1, 0});
    Child p1, p2, p3, c1, c2, c3;
    Registrant user{1000, 1, false};
    CHECK(f.registry->add(p1.handle(), c1.handle(), f.policy, user).error == 0);
    CHECK(f.registry->add(p1.handle(), c2.handle(), f.policy, user).reason == proto::kLimitParent);
    CHECK(f.registry->add(p2.handle(), c2.handle(), f.policy, user).error == 0);
    CHECK(f.registry->add(p3.handle(), c3.handle(), f.policy, user).reason == proto::kLimitUser);
    CHECK(f.registry->add(p3.handle(), c3.handle(), f.policy, f.root).error == 0);
    CHECK(f.registry->stats().bindings == 3);
}

TEST_CASE("limits: watched processes are bounded (the fd reserve) with a clean refusal") {
    Fixture f({0, 0, 3});
    Child p1, c1, p2, c2;
    CHECK(f.registry->add(p1.handle(), c1.handle(), f.policy, f.root).error == 0);
    Verdict v = f.registry->add(p2.handle(), c2.handle(), f.policy, f.root);
    CHECK(v.error == -EMFILE);
    CHECK(v.reason == proto::kOutOfFds);
    CHECK(f.registry->stats().bindings == 1);
    // The existing binding is still enforced.
    p1.kill();
    CHECK(f.pump_until([&] { return c1.dead(); }));
}

TEST_CASE("parents whose children are gone stay usable, lingering or evicted") {
    Fixture f;
    // More parents than the registry keeps lingering: the oldest are evicted, the rest kept.
    std::vector<std::unique_ptr<Child>> parents;
    for (int i = 0; i < 70; ++i) {
        parents.push_back(std::make_unique<Child>());
        Child child;
        REQUIRE(f.registry->add(parents.back()->handle(), child.handle(), f.policy, f.root).error ==
                0);
        child.kill();
        REQUIRE(f.sweep_until([&] { return f.registry->stats().bindings == 0; }));
    }
    CHECK(f.registry->stats().parents == 0);
    // Evicted (the first) and lingering (the last) parents bind and kill as before.
    for (int i : {0, 69}) {
        Child child;
        REQUIRE(f.registry->add(parents[i]->handle(), child.handle(), f.policy, f.root).reason ==
                proto::kOk);
        parents[i]->kill();
        CHECK(f.pump_until([&] { return child.dead(); }));
    }
    CHECK(f.registry->stats().kills == 2);
}

TEST_CASE("each binding of a child is carried out: an earlier, milder one weakens none") {
    Fixture f;
    Child a, b, child(true); // the child ignores SIGTERM: only a SIGKILL ends it
    Policy mild{SIGWINCH, proto::kGraceNever};
    Policy strict{SIGTERM, 50};
    CHECK(f.registry->add(a.handle(), child.handle(), mild, f.root).error == 0);
    CHECK(f.registry->add(b.handle(), child.handle(), strict, f.root).error == 0);
    a.kill();
    f.pump(100);
    CHECK_FALSE(child.dead()); // SIGWINCH, and never an escalation
    b.kill();
    CHECK(f.pump_until([&] { return child.dead(); })); // SIGTERM ignored, then SIGKILL
    CHECK(f.registry->stats().kills == 2); // SIGWINCH and SIGTERM; escalations count apart
}

TEST_CASE("two users binding the same pair have a binding each; removal is per user") {
    Fixture f;
    Child parent, child;
    Registrant alice{1000, ::getpid(), false}, bob{1001, ::getpid(), false};
    // The child's uid is root's here: the registry does not judge permission, the server does.
    CHECK(f.registry->add(parent.handle(), child.handle(), f.policy, alice).reason == proto::kOk);
    CHECK(f.registry->add(parent.handle(), child.handle(), f.policy, bob).reason == proto::kOk);
    CHECK(f.registry->add(parent.handle(), child.handle(), f.policy, bob).reason ==
          proto::kAlreadyBound);
    CHECK(f.registry->stats().bindings == 2);
    CHECK(f.registry->stats_of(alice.uid).bindings == 1);
    // Bob cannot tell Alice's binding from no binding, and cannot remove it.
    Registrant carol{1002, ::getpid(), false};
    CHECK(f.registry->remove(parent.pid, child.pid, carol).reason == proto::kNotBound);
    CHECK(f.registry->remove(parent.pid, child.pid, bob).reason == proto::kOk);
    CHECK(f.registry->remove(parent.pid, child.pid, bob).reason == proto::kNotBound);
    CHECK(f.registry->stats().bindings == 1);
    // Root removes whatever binds the pair.
    CHECK(f.registry->remove(parent.pid, child.pid, f.root).reason == proto::kOk);
    CHECK(f.registry->stats().bindings == 0);
}

TEST_CASE("children's exits cost no wakeup; registrations, LIST and a parent's death sweep") {
    Fixture f;
    Child parent;
    std::vector<std::unique_ptr<Child>> children;
    for (size_t i = 0; i < Registry::kSweepMin; ++i) {
        children.push_back(std::make_unique<Child>());
        REQUIRE(
            f.registry->add(parent.handle(), children.back()->handle(), f.policy, f.root).error ==
            0);
    }
    // Each child exits: the loop is not woken by it (the timer reads children's names), and
    // nothing is retired yet.
    auto no_exit_events = [&] {
        for (Source::Kind k : f.step(50))
            if (k != Source::Kind::Timer)
                return false;
        return true;
    };
    for (auto &c : children) {
        c->kill();
        REQUIRE(c->dead(5000));
    }
    CHECK(no_exit_events());
    CHECK(f.registry->stats().bindings == children.size());
    // With kSweepMin children held, the next registration sweeps first: the exited ones are
    // retired, the new one is held.
    Child last;
    REQUIRE(f.registry->add(parent.handle(), last.handle(), f.policy, f.root).error == 0);
    f.registry->collect();
    CHECK(f.registry->stats().bindings == 1);
    CHECK(f.registry->stats().children == 1);
    // Then one exits without a sweep until asked (LIST, STATUS).
    last.kill();
    REQUIRE(last.dead(5000));
    CHECK(no_exit_events());
    CHECK(f.registry->stats().bindings == 1);
    f.registry->retire_exited_children();
    f.registry->collect();
    CHECK(f.registry->stats().bindings == 0);
    CHECK(f.registry->stats().kills == 0);
    CHECK_FALSE(parent.dead());
}

TEST_CASE("a child whose exit waits to be retired is not signalled when its parent dies") {
    Fixture f;
    Child parent, first, second, third;
    for (Child *c : {&first, &second, &third})
        REQUIRE(f.registry->add(parent.handle(), c->handle(), f.policy, f.root).error == 0);
    // The first exit is retired (as LIST would).
    first.kill();
    REQUIRE(first.dead(5000));
    CHECK(f.sweep_until([&] { return f.registry->stats().bindings == 2; }));
    // The second exits (a zombie: we do not reap it) and the parent dies, before any turn.
    second.kill();
    REQUIRE(second.dead(5000));
    parent.kill();
    REQUIRE(parent.dead(5000));
    CHECK(f.pump_until([&] { return third.dead(); }));
    // Only the third was signalled: the second's exit was seen before the kills.
    CHECK(f.registry->stats().kills == 1);
}

TEST_CASE("a group-scope child whose exit waits to be retired takes no member with it") {
    Fixture f;
    Child parent, first;
    // The child leads a process group of its own, with a member that outlives it.
    int pipefd[2];
    REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
    pid_t leader = test::fork_child();
    REQUIRE(leader >= 0);
    if (leader == 0) {
        ::setpgid(0, 0);
        pid_t member = test::fork_child();
        if (member == 0)
            for (;;)
                ::pause();
        (void)!::write(pipefd[1], &member, sizeof(member));
        for (;;)
            ::pause();
    }
    ::close(pipefd[1]);
    pid_t member = 0;
    REQUIRE(::read(pipefd[0], &member, sizeof(member)) == sizeof(member));
    ::close(pipefd[0]);
    UniqueFd leader_fd(sys_pidfd_open(leader, 0)), member_fd(sys_pidfd_open(member, 0));
    REQUIRE(leader_fd);
    REQUIRE(member_fd);
    auto exited = [](const UniqueFd &fd, int timeout_ms) {
        struct pollfd p = {fd.get(), POLLIN, 0};
        return ::poll(&p, 1, timeout_ms) > 0;
    };
    Policy group{SIGKILL, proto::kGraceNever, proto::kScopePgroup};
    REQUIRE(f.registry->add(parent.handle(), first.handle(), f.policy, f.root).error == 0);
    REQUIRE(
        f.registry
            ->add(parent.handle(), PidFd(leader, UniqueFd(::dup(leader_fd.get()))), group, f.root)
            .error == 0);
    // The first exit is retired (as LIST would).
    first.kill();
    REQUIRE(first.dead(5000));
    CHECK(f.sweep_until([&] { return f.registry->stats().bindings == 1; }));
    // The leader exits (a zombie: not reaped), then the parent dies, before any turn.
    sys_pidfd_send_signal(leader_fd.get(), SIGKILL);
    REQUIRE(exited(leader_fd, 5000));
    parent.kill();
    REQUIRE(parent.dead(5000));
    CHECK(f.pump_until([&] { return f.registry->stats().bindings == 0; }));
    f.pump(100);
    CHECK_FALSE(exited(member_fd, 0));
    CHECK(f.registry->stats().kills == 0);
    sys_pidfd_send_signal(member_fd.get(), SIGKILL);
    ::waitpid(leader, nullptr, 0);
}

TEST_CASE("an exited child is retired when asked, without a loop turn (LIST, STATUS)") {
    Fixture f;
    Child parent, child;
    REQUIRE(f.registry->add(parent.handle(), child.handle(), f.policy, f.root).error == 0);
    child.kill();
    REQUIRE(child.dead(5000));
    CHECK(f.registry->stats().bindings == 1);
    f.registry->retire_exited_children();
    f.registry->collect();
    CHECK(f.registry->stats().bindings == 0);
    CHECK(f.registry->stats().children == 0);
}

TEST_CASE("a child that becomes a parent is watched as one: its death is acted on at once") {
    Fixture f;
    Child a, b, c, other;
    REQUIRE(f.registry->add(a.handle(), b.handle(), f.policy, f.root).error == 0);
    REQUIRE(f.registry->add(a.handle(), other.handle(), f.policy, f.root).error == 0);
    // A child is watched by nothing; once it is a parent, its death is an event of its own.
    other.kill();
    REQUIRE(other.dead(5000));
    CHECK(f.sweep_until([&] { return f.registry->stats().bindings == 1; }));
    REQUIRE(f.registry->add(b.handle(), c.handle(), f.policy, f.root).error == 0);
    b.kill();
    REQUIRE(b.dead(5000));
    // The first batch holds b's death: b is watched in the loop since it became a parent.
    auto kinds = f.step(5000);
    CHECK(std::find(kinds.begin(), kinds.end(), Source::Kind::Process) != kinds.end());
    CHECK(c.dead(5000));
    CHECK_FALSE(a.dead());
}

TEST_CASE("kills wait to be described while their children die, unless many parents wait") {
    // Each dead parent waiting for its kills' descriptions holds its pidfd: beyond
    // kMaxDeadParents they are due at once, so a stream of deaths holds a bounded number.
    for (size_t n : {size_t{4}, Registry::kMaxDeadParents + 4}) {
        CAPTURE(n);
        Fixture f;
        std::vector<std::unique_ptr<Child>> parents, children;
        for (size_t i = 0; i < n; ++i) {
            parents.push_back(std::make_unique<Child>());
            children.push_back(std::make_unique<Child>());
            REQUIRE(f.registry
                        ->add(parents.back()->handle(), children.back()->handle(), f.policy, f.root)
                        .error == 0);
        }
        uint64_t t0 = monotonic_ns();
        for (auto &p : parents)
            p->kill();
        CHECK(f.pump_until([&] { return f.registry->stats().kills == n; }));
        uint64_t due = f.registry->describe_due_ns();
        REQUIRE(due != 0);
        if (n > Registry::kMaxDeadParents)
            CHECK(due < t0); // at once
        else
            CHECK(due >= t0 + Registry::kDescribeAfterNs); // after the last kill
        f.registry->describe(SIZE_MAX);
        CHECK(f.registry->describe_due_ns() == 0);
    }
}

TEST_CASE("kills are reported as events to the observer, only once described") {
    struct Recorder final : KillObserver {
        void on_kill(KillEvent &e) override {
            notices.push_back(e.notice);
            children.push_back(e.child_pid);
            parents.push_back(e.parent ? e.parent->pid : 0);
            signals.push_back(e.signal);
        }
        std::vector<KillNotice> notices;
        std::vector<pid_t> children, parents;
        std::vector<int> signals;
    } recorder;
    Fixture f;
    f.registry->set_kill_observer(&recorder);
    Child parent, child;
    REQUIRE(f.registry->add(parent.handle(), child.handle(), f.policy, f.root).error == 0);
    parent.kill();
    CHECK(f.pump_until([&] { return f.registry->stats().kills == 1; }));
    // The kill is out; its event waits until descriptions are due.
    CHECK(recorder.notices.empty());
    CHECK(f.registry->describe_due_ns() != 0);
    f.registry->describe(SIZE_MAX);
    REQUIRE(recorder.notices.size() == 1);
    CHECK(recorder.notices[0] == KillNotice::Watched);
    CHECK(recorder.children[0] == child.pid);
    CHECK(recorder.parents[0] == parent.pid);
    CHECK(recorder.signals[0] == SIGTERM);
    CHECK(f.registry->describe_due_ns() == 0);
    f.registry->set_kill_observer(nullptr);
}

TEST_CASE("a parent that dies before it is named is named at its death, not when described") {
    // Parents are named once the loop is idle (name_parents); one that dies first is named
    // right after its children's signals, while it is still a zombie: by the time its kills
    // are described, its own parent may have reaped it.
    struct Recorder final : KillObserver {
        void on_kill(KillEvent &e) override { parent_comm = e.parent ? e.parent->comm.data() : ""; }
        std::string parent_comm;
    } recorder;
    Fixture f;
    f.registry->set_kill_observer(&recorder);
    Child parent, child;
    std::string expected = PidFd(parent.pid, UniqueFd(::dup(parent.fd.get()))).comm();
    REQUIRE(expected != "?");
    REQUIRE(f.registry->add(parent.handle(), child.handle(), f.policy, f.root).error == 0);
    parent.kill();
    CHECK(f.pump_until([&] { return f.registry->stats().kills == 1; }));
    REQUIRE(::waitpid(parent.pid, nullptr, 0) == parent.pid); // reaped before the description
    f.registry->describe(SIZE_MAX);
    CHECK(recorder.parent_comm == expected);
    f.registry->set_kill_observer(nullptr);
}

TEST_CASE("sweeps clients can ask for again and again are spaced: at most a tenth of the time") {
    Fixture f;
    Child parent, child;
    REQUIRE(f.registry->add(parent.handle(), child.handle(), f.policy, f.root).error == 0);
    CHECK(f.registry->sweep_if_due());
    child.kill();
    REQUIRE(child.dead(5000));
    // Asked again at once: not swept, the exit is still held.
    CHECK_FALSE(f.registry->sweep_if_due());
    f.registry->collect();
    CHECK(f.registry->stats().bindings == 1);
    // Once kSweepEveryNs has passed, it is.
    ::usleep(static_cast<useconds_t>(Registry::kSweepEveryNs / 1000 + 1000));
    CHECK(f.registry->sweep_if_due());
    f.registry->collect();
    CHECK(f.registry->stats().bindings == 0);
}
