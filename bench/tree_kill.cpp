// SPDX-License-Identifier: MIT
// Tree kill: a child with about 1,000 descendants is ended as a whole; time until every member
// of the tree is dead, with orphand (a binding of scope tree whose parent is SIGKILLed) and with
// cgroup v2's cgroup.kill on an identical tree, in alternating rounds.
#include <dirent.h>
#include <sys/epoll.h>

#include <atomic>
#include <climits>
#include <thread>

#include "bench_util.hpp"

using namespace orphand::bench;

namespace {

enum Mechanism { kOrphand, kCgroupKill, kMechanisms };

// A count with thousands separators ("1,000"; fmt_num would write "50.0").
std::string count_text(size_t n) {
    return n >= 1000 ? fmt_num(static_cast<double>(n)) : std::to_string(n);
}

// The tree: members numbered breadth-first, 0 the root (the bound child); member i's children
// are fan_out * i + 1 ... fan_out * i + fan_out, those up to `descendants`. Every level is full
// but the last, which is filled from the left.
struct Shape {
    size_t descendants = 0, fan_out = 0;

    size_t members() const { return descendants + 1; }

    // Members in the subtree of member `i`, `i` included.
    size_t subtree(size_t i) const {
        size_t count = 0;
        for (size_t lo = i, hi = i; lo <= descendants;
             lo = fan_out * lo + 1, hi = fan_out * hi + fan_out)
            count += std::min(hi, descendants) - lo + 1;
        return count;
    }

    // Descendants per depth, depth 1 first.
    std::vector<size_t> levels() const {
        std::vector<size_t> v;
        for (size_t lo = 1, hi = fan_out; lo <= descendants;
             lo = fan_out * lo + 1, hi = fan_out * hi + fan_out)
            v.push_back(std::min(hi, descendants) - lo + 1);
        return v;
    }

    std::string describe() const {
        std::vector<size_t> v = levels();
        if (v.size() > 8)
            return fmt("fan-out %zu, %zu levels deep", fan_out, v.size());
        std::string sum;
        for (size_t d = 0; d < v.size(); ++d)
            sum += (d ? " + " : "") + count_text(v[d]);
        return fmt("fan-out %zu, breadth-first: %s at depths 1-%zu", fan_out, sum.c_str(),
                   v.size());
    }
};

// What a member writes on the report pipe: its pid once it has forked its own children, or,
// for a child it could not fork, that child's index and -errno. 8 bytes: one atomic write.
struct Report {
    uint32_t index;
    int32_t pid;
};
static_assert(sizeof(Report) <= PIPE_BUF);

// A member of the tree, in a process of its own: forks its children, reports, then idles. It
// never returns (no destructor of ours may run in it) and never asks for PR_SET_PDEATHSIG,
// which would end the tree by itself once the root dies. A failed report means that we are gone:
// the member leaves too.
[[noreturn]] void member_main(const Shape &shape, size_t index, int report) {
    for (size_t k = 1; k <= shape.fan_out; ++k) {
        size_t c = shape.fan_out * index + k;
        if (c > shape.descendants)
            break;
        pid_t pid = ::fork();
        if (pid == 0)
            member_main(shape, c, report);
        if (pid < 0) {
            Report r{static_cast<uint32_t>(c), -errno};
            if (::write(report, &r, sizeof(r)) != sizeof(r))
                _exit(1);
        }
    }
    Report r{static_cast<uint32_t>(index), ::getpid()};
    if (::write(report, &r, sizeof(r)) != sizeof(r))
        _exit(1);
    ::close(report);
    for (;;)
        ::pause();
}

// Closes every fd from 3 up but `a` and `b` (in a freshly forked process).
void close_all_but(int a, int b) {
    unsigned lo = static_cast<unsigned>(std::min(a, b)), hi = static_cast<unsigned>(std::max(a, b));
    if (lo > 3)
        ::close_range(3, lo - 1, 0);
    if (hi > lo + 1)
        ::close_range(lo + 1, hi - 1, 0);
    ::close_range(hi + 1, ~0u, 0);
}

// The processes on the host (the numbered entries of /proc), and whether the kernel lists a
// thread's children in /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN): without it, finding
// a process's descendants takes a look at every process.
std::string host_processes() {
    size_t count = 0;
    if (DIR *d = ::opendir("/proc")) {
        while (const struct dirent *e = ::readdir(d))
            if (e->d_name[0] >= '1' && e->d_name[0] <= '9')
                ++count;
        ::closedir(d);
    }
    std::string children = fmt("/proc/%d/task/%d/children", ::getpid(), ::getpid());
    return fmt("%s processes on the host at the start, /proc/PID/task/TID/children %s",
               count_text(count).c_str(),
               ::access(children.c_str(), R_OK) == 0 ? "present" : "absent");
}

// Writes `text` to a cgroup control file; 0 or -errno.
int write_file(const std::string &path, const std::string &text) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid())
        return -errno;
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        return -errno;
    return 0;
}

// Everything a round measured, in milliseconds from the trigger (the parent's SIGKILL, or the
// write to cgroup.kill) on.
struct Outcome {
    size_t left = 0;          // members still alive when the wait timed out
    double all_ms = 0;        // the last member's pidfd readable (when left == 0)
    double root_ms = -1;      // the root's (the bound child's) pidfd readable
    double trigger_ms = 0;    // the trigger's syscall returned
    double daemon_cpu_ms = 0; // CPU used by the daemon from the trigger to the end of the wait
};

// One tree, its root forked by us and every other member by its parent in the tree. The root
// waits for a byte on a pipe before it forks anything, so that we can move it into a cgroup
// first; every member reports on a shared pipe once it has forked its own children, so that the
// tree is complete when every member has reported. We hold (and own: die() kills them) a pidfd
// to each member from its report on. We are the subreaper: a member whose parent dies becomes
// our child, and every member is reaped by us.
class Tree {
  public:
    Tree(const Shape &shape, const std::string &cgroup, int timeout_ms) {
        int report[2], go[2];
        if (::pipe2(report, O_CLOEXEC) < 0 || ::pipe2(go, O_CLOEXEC) < 0)
            die("pipe2: %s", std::strerror(errno));
        pid_t root = ::fork();
        if (root < 0)
            die("fork (tree root): %s", std::strerror(errno));
        if (root == 0) {
            // The tree holds nothing of ours but the report pipe (and, until released, `go`).
            close_all_but(report[1], go[0]);
            char byte;
            if (::read(go[0], &byte, 1) != 1)
                _exit(1);
            ::close(go[0]);
            member_main(shape, 0, report[1]);
        }
        ::close(report[1]);
        ::close(go[0]);
        Fd reports(report[0]), release(go[1]);
        pids_.assign(shape.members(), 0);
        fds_.resize(shape.members());
        dead_.assign(shape.members(), false);
        adopt(0, root);
        if (!cgroup.empty()) {
            if (int err = write_file(cgroup + "/cgroup.procs", std::to_string(root)); err < 0)
                die("moving the tree's root into %s: %s", cgroup.c_str(), std::strerror(-err));
        }
        if (::write(release.get(), "g", 1) != 1)
            die("releasing the tree's root: %s", std::strerror(errno));
        release.reset();

        // Every member accounted for: reported, or missing with its whole subtree (its fork
        // failed; the first failure is kept to say so).
        size_t accounted = 0;
        int fork_error = 0;
        while (accounted < shape.members()) {
            if (!readable(reports.get(), timeout_ms))
                die("tree: %zu of %zu members accounted for, then nothing for %d ms", accounted,
                    shape.members(), timeout_ms);
            Report r{};
            ssize_t n = ::read(reports.get(), &r, sizeof(r));
            if (n < 0 && errno == EINTR)
                continue;
            if (n != sizeof(r))
                die("tree: %zu of %zu members accounted for, then %s", accounted, shape.members(),
                    n == 0 ? "every member gone" : "a short read");
            // The root (forked by us, adopted already) reports its own pid; a member reports
            // once, and a failed fork names a member other than the root.
            bool valid =
                r.index < shape.members() &&
                (r.pid > 0 ? (r.index == 0 ? r.pid == root : pids_[r.index] == 0) : r.index != 0);
            if (!valid)
                die("tree: a bad report (member %u, pid %d)", r.index, r.pid);
            if (r.pid > 0) {
                if (r.index != 0)
                    adopt(r.index, r.pid);
                ++accounted;
            } else {
                fork_error = fork_error ? fork_error : -r.pid;
                accounted += shape.subtree(r.index);
            }
        }
        if (fork_error)
            die("tree: a member could not fork: %s", std::strerror(fork_error));
    }

    // Normally every member is dead already; this also ends those a round left alive. Each must
    // have died of SIGKILL, the signal both mechanisms send.
    ~Tree() {
        for (size_t i = 0; i < fds_.size(); ++i)
            if (fds_[i].valid() && !dead_[i])
                pidfd_kill(fds_[i].get(), SIGKILL);
        // Each member's death makes its children ours; once all are dead, all are ours to reap.
        for (Fd &fd : fds_) {
            if (!fd.valid())
                continue;
            if (!readable(fd.get(), 10000))
                die("a tree member is alive 10 s after its SIGKILL");
        }
        for (size_t i = 0; i < fds_.size(); ++i) {
            if (!fds_[i].valid())
                continue;
            siginfo_t si{};
            while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fds_[i].get()), &si,
                            WEXITED) < 0)
                if (errno != EINTR)
                    die("waitid (tree member %zu, pid %d): %s", i, pids_[i], std::strerror(errno));
            if (si.si_code != CLD_KILLED || si.si_status != SIGKILL)
                die("tree member %zu (pid %d) ended with code %d, status %d, not by SIGKILL", i,
                    pids_[i], si.si_code, si.si_status);
            disown(fds_[i].get());
        }
    }
    Tree(const Tree &) = delete;
    Tree &operator=(const Tree &) = delete;

    pid_t root() const { return pids_[0]; }
    int root_fd() const { return fds_[0].get(); }

    // Runs `trigger` on a thread of its own while this one waits until every member's pidfd is
    // readable (one epoll set, armed before the clock starts; each fd reports once), or until
    // `timeout_ms` have passed. The trigger has a thread of its own because cgroup.kill's write
    // signals the whole tree before it returns, and members can die while it runs: a waiter
    // stuck in that write would date every such death at the write's return.
    template <class Trigger> Outcome kill(Trigger trigger, pid_t daemon, int timeout_ms) {
        size_t n = fds_.size();
        Fd ep(::epoll_create1(EPOLL_CLOEXEC));
        if (!ep.valid())
            die("epoll_create1: %s", std::strerror(errno));
        for (size_t i = 0; i < n; ++i) {
            struct epoll_event ev {};
            ev.events = EPOLLIN | EPOLLONESHOT;
            ev.data.u64 = i;
            if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fds_[i].get(), &ev) < 0)
                die("epoll_ctl: %s", std::strerror(errno));
        }
        std::vector<struct epoll_event> evs(512);
        size_t dead = 0;
        uint64_t last_ns = 0, root_ns = 0;
        // Written by the trigger's thread, read after it is joined.
        uint64_t t0 = 0, returned = 0;
        std::atomic<int> go{0};
        std::thread killer([&] {
            go.wait(0);
            t0 = now_ns();
            trigger();
            returned = now_ns();
        });
        uint64_t cpu0 = cpu_ns(daemon);
        uint64_t deadline = now_ns() + static_cast<uint64_t>(timeout_ms) * 1000000u;
        go.store(1);
        go.notify_one();
        while (dead < n) {
            uint64_t now = now_ns();
            if (now >= deadline)
                break;
            int wait_ms = static_cast<int>((deadline - now + 999999) / 1000000);
            int k = ::epoll_wait(ep.get(), evs.data(), static_cast<int>(evs.size()), wait_ms);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                die("epoll_wait: %s", std::strerror(errno));
            uint64_t t = now_ns();
            for (int i = 0; i < k; ++i) {
                size_t m = evs[static_cast<size_t>(i)].data.u64;
                dead_[m] = true;
                ++dead;
                if (m == 0)
                    root_ns = t;
            }
            last_ns = t;
        }
        Outcome o;
        o.daemon_cpu_ms = static_cast<double>(cpu_ns(daemon) - cpu0) / 1e6;
        killer.join();
        auto ms = [&t0](uint64_t t) { return static_cast<double>(t - t0) / 1e6; };
        o.left = n - dead;
        o.all_ms = o.left == 0 ? ms(last_ns) : 0;
        o.root_ms = dead_[0] ? ms(root_ns) : -1;
        o.trigger_ms = ms(returned);
        return o;
    }

  private:
    void adopt(size_t index, pid_t pid) {
        Fd fd(pidfd_open(pid));
        if (!fd.valid())
            die("pidfd_open (tree member %zu, pid %d): %s", index, pid, std::strerror(errno));
        own(fd.get());
        pids_[index] = pid;
        fds_[index] = std::move(fd);
    }

    std::vector<pid_t> pids_;
    std::vector<Fd> fds_;
    std::vector<bool> dead_;
};

// The bound parent P: a child of ours that idles until it is SIGKILLed, and never outlives us.
class Parent {
  public:
    Parent() {
        pid_t self = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0)
            die("fork (parent): %s", std::strerror(errno));
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            if (::getppid() != self)
                _exit(1);
            ::close_range(3, ~0u, 0);
            for (;;)
                ::pause();
        }
        fd_.reset(pidfd_open(pid_));
        if (!fd_.valid())
            die("pidfd_open (parent): %s", std::strerror(errno));
        own(fd_.get());
    }
    ~Parent() {
        pidfd_kill(fd_.get(), SIGKILL);
        reap_pidfd(fd_.get());
        disown(fd_.get());
    }
    Parent(const Parent &) = delete;
    Parent &operator=(const Parent &) = delete;

    pid_t pid() const { return pid_; }
    int fd() const { return fd_.get(); }

  private:
    pid_t pid_ = -1;
    Fd fd_;
};

// Where the trees' cgroups are made: a cgroup v2 directory of ours in which we may make
// sub-cgroups that have cgroup.kill (Linux 5.14); `why_not` says otherwise why none is used.
struct CgroupSite {
    std::string dir;
    std::string why_not;
};

// A mount point as /proc/self/mountinfo writes it, its octal escapes ("\040") undone.
std::string unescape(const char *s) {
    std::string out;
    for (; *s; ++s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            out.push_back(static_cast<char>((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0')));
            s += 3;
        } else {
            out.push_back(*s);
        }
    }
    return out;
}

// Our cgroup v2 directory: the first cgroup2 mount in /proc/self/mountinfo (/sys/fs/cgroup
// under systemd, /sys/fs/cgroup/unified on hybrid hosts) joined with the "0::" line of
// /proc/self/cgroup. Probed by making (and removing) a sub-cgroup there.
CgroupSite find_cgroup_site() {
    CgroupSite site;
    std::string mount;
    if (FILE *f = std::fopen("/proc/self/mountinfo", "re")) {
        char line[4096];
        while (mount.empty() && std::fgets(line, sizeof(line), f)) {
            // "id parent major:minor root mount-point options [optional...] - type source ..."
            char root[1024], point[1024];
            const char *dash = std::strstr(line, " - ");
            char type[64];
            if (!dash || std::sscanf(line, "%*s %*s %*s %1023s %1023s", root, point) != 2 ||
                std::sscanf(dash + 3, "%63s", type) != 1)
                continue;
            if (std::strcmp(type, "cgroup2") == 0 && std::strcmp(root, "/") == 0)
                mount = unescape(point);
        }
        std::fclose(f);
    }
    if (mount.empty()) {
        site.why_not = "no cgroup2 file system is mounted (cgroup v1 only, or none)";
        return site;
    }
    std::string own_path;
    if (FILE *f = std::fopen("/proc/self/cgroup", "re")) {
        char line[4096];
        while (std::fgets(line, sizeof(line), f))
            if (std::strncmp(line, "0::", 3) == 0) {
                own_path = line + 3;
                own_path.erase(own_path.find_last_not_of('\n') + 1);
            }
        std::fclose(f);
    }
    if (own_path.empty() || own_path[0] != '/') {
        site.why_not = "no cgroup v2 line in /proc/self/cgroup";
        return site;
    }
    std::string dir = own_path == "/" ? mount : mount + own_path;
    std::string probe = fmt("%s/orphand-bench-tree-%d-probe", dir.c_str(), ::getpid());
    if (::mkdir(probe.c_str(), 0755) < 0) {
        site.why_not = fmt("cannot make a cgroup in %s: %s", dir.c_str(), std::strerror(errno));
        return site;
    }
    bool has_kill = ::access((probe + "/cgroup.kill").c_str(), W_OK) == 0;
    int access_error = errno;
    ::rmdir(probe.c_str());
    if (!has_kill) {
        site.why_not = access_error == ENOENT
                           ? fmt("cgroups in %s have no cgroup.kill (Linux < 5.14)", dir.c_str())
                           : fmt("cgroup.kill in %s is not writable: %s", dir.c_str(),
                                 std::strerror(access_error));
        return site;
    }
    site.dir = dir;
    return site;
}

// A fresh sub-cgroup for one tree, removed (once the tree is reaped) when it goes.
class Cgroup {
  public:
    Cgroup(const CgroupSite &site, int serial) {
        if (site.dir.empty())
            return;
        path_ = fmt("%s/orphand-bench-tree-%d-%d", site.dir.c_str(), ::getpid(), serial);
        if (::mkdir(path_.c_str(), 0755) < 0)
            die("mkdir %s: %s", path_.c_str(), std::strerror(errno));
    }
    ~Cgroup() {
        if (path_.empty())
            return;
        // Empty once its last member has exited; a moment's grace for the kernel's bookkeeping.
        for (int i = 0; ::rmdir(path_.c_str()) < 0; ++i) {
            if (errno != EBUSY || i == 1000)
                die("rmdir %s: %s", path_.c_str(), std::strerror(errno));
            sleep_ns(1'000'000);
        }
    }
    Cgroup(const Cgroup &) = delete;
    Cgroup &operator=(const Cgroup &) = delete;

    const std::string &path() const { return path_; }

  private:
    std::string path_;
};

// REGISTERs (parent, root) with scope tree and SIGKILL, never escalating, with both pidfds
// attached; the daemon must accept it as it is.
void register_tree(Client &client, const Parent &parent, const Tree &tree) {
    proto::Request q = Client::kill_request(parent.pid(), tree.root());
    q.scope = proto::kScopeTree;
    int fds[2] = {tree.root_fd(), parent.fd()}; // the child's first
    proto::Reply r = client.call(q, fds, 2);
    if (r.error != 0 || r.reason != proto::kOk)
        die("REGISTER with scope tree: %s", proto::reason_text(r.reason));
    proto::StatusInfo s = client.status();
    // Only root and CAP_KILL holders are told the daemon's parent and child counts.
    bool counts = s.scope == proto::kStatusAll;
    if (s.bindings != 1 || (counts && (s.parents != 1 || s.children != 1)))
        die("daemon holds %u bindings (%u parents, %u children), expected 1", s.bindings, s.parents,
            s.children);
}

std::string cell(const Summary &s) {
    return fmt("%s (min %s, max %s)", fmt_num(s.p50).c_str(), fmt_num(s.min).c_str(),
               fmt_num(s.max).c_str());
}

// The measured cell of a mechanism, or what went wrong in the rounds that left members alive.
std::string result_cell(const std::vector<Outcome> &outcomes) {
    std::vector<double> all;
    size_t most_left = 0;
    int failed = 0;
    for (const Outcome &o : outcomes) {
        if (o.left == 0)
            all.push_back(o.all_ms);
        else
            ++failed;
        most_left = std::max(most_left, o.left);
    }
    if (failed == 0)
        return cell(summarize(all));
    return fmt("not all dead: %s left (in %d of %zu rounds)", count_text(most_left).c_str(), failed,
               outcomes.size());
}

std::string median_of(const std::vector<Outcome> &outcomes, double Outcome::*field) {
    std::vector<double> v;
    for (const Outcome &o : outcomes)
        if (o.*field >= 0)
            v.push_back(o.*field);
    return v.empty() ? std::string("-") : fmt_num(summarize(v).p50);
}

} // namespace

int main(int argc, char **argv) {
    Args args{argc, argv};
    long descendants = args.num("--descendants", 1000);
    long fan_out = args.num("--fan-out", 10);
    int rounds = static_cast<int>(args.num("--rounds", 5));
    int timeout_ms = static_cast<int>(args.num("--timeout-ms", 10000));
    // The daemon's default (orphand(8)), restated because bench_util's Daemon passes
    // "--log-level warning" for the other benchmarks; later options win.
    std::string log_level = args.get("--log-level", "info");
    if (descendants < 1 || descendants > 4194304) // PID_MAX_LIMIT
        die("--descendants: 1 to 4,194,304");
    if (fan_out < 1)
        die("--fan-out: at least 1");
    if (rounds < 1)
        die("--rounds: at least 1");
    if (timeout_ms < 1)
        die("--timeout-ms: at least 1");
    Shape shape{static_cast<size_t>(descendants), static_cast<size_t>(fan_out)};
    become_subreaper();
    ::signal(SIGPIPE, SIG_IGN);
    long fd_limit = raise_fd_limit();
    if (fd_limit < static_cast<long>(shape.members()) + 64)
        die("RLIMIT_NOFILE allows %ld fds; a tree of %zu members needs %zu", fd_limit,
            shape.members(), shape.members() + 64);

    std::string host = host_processes();
    CgroupSite site = find_cgroup_site();
    const bool baseline = site.why_not.empty();
    if (!baseline)
        std::fprintf(stderr, "bench: no cgroup.kill rounds: %s\n", site.why_not.c_str());

    Daemon daemon(daemon_path(args), {"--log-level", log_level});
    Client client(daemon.socket());
    uint64_t kills = client.status().kills;

    std::vector<Outcome> outcomes[kMechanisms];
    std::vector<double> kills_per_round;
    int serial = 0;
    for (int round = 0; round < rounds; ++round) {
        for (int k = 0; k < kMechanisms; ++k) {
            // Round 0 runs orphand first, round 1 cgroup.kill first, and so on.
            Mechanism m = (k + round) % 2 == 0 ? kOrphand : kCgroupKill;
            if (m == kCgroupKill && !baseline)
                continue;
            // Both trees live in a fresh cgroup of their own where cgroup v2 allows it, so that
            // they differ in nothing but the way they are killed.
            Cgroup cgroup(site, serial++);
            if (m == kOrphand) {
                Parent parent;
                Tree tree(shape, cgroup.path(), timeout_ms);
                register_tree(client, parent, tree);
                outcomes[m].push_back(tree.kill(
                    [&parent] {
                        if (pidfd_kill(parent.fd(), SIGKILL) < 0)
                            die("pidfd_send_signal (parent): %s", std::strerror(errno));
                    },
                    daemon.pid(), timeout_ms));
            } else {
                Tree tree(shape, cgroup.path(), timeout_ms);
                Fd kill_file(
                    ::open((cgroup.path() + "/cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC));
                if (!kill_file.valid())
                    die("open %s/cgroup.kill: %s", cgroup.path().c_str(), std::strerror(errno));
                outcomes[m].push_back(tree.kill(
                    [&kill_file] {
                        if (::write(kill_file.get(), "1", 1) != 1)
                            die("write to cgroup.kill: %s", std::strerror(errno));
                    },
                    daemon.pid(), timeout_ms));
            }
            // The tree (and the parent) are reaped by now; the binding must be gone too.
            if (m == kOrphand) {
                uint64_t now = settle(client);
                kills_per_round.push_back(static_cast<double>(now - kills));
                kills = now;
            }
        }
    }

    const std::vector<Outcome> &o = outcomes[kOrphand], &c = outcomes[kCgroupKill];
    std::string n = count_text(shape.descendants);
    std::string orphand_cell = result_cell(o);
    std::string baseline_cell =
        baseline ? "cgroup.kill " + result_cell(c) : "cgroup.kill unavailable: " + site.why_not;
    auto all_dead = [](const std::vector<Outcome> &v) {
        return !v.empty() &&
               std::all_of(v.begin(), v.end(), [](const Outcome &x) { return x.left == 0; });
    };
    std::string ratio = "-";
    if (all_dead(o) && all_dead(c)) {
        std::vector<double> a, b;
        for (const Outcome &x : o)
            a.push_back(x.all_ms);
        for (const Outcome &x : c)
            b.push_back(x.all_ms);
        ratio = fmt("%.2fx", summarize(a).p50 / summarize(b).p50);
    }
    note("tree kill: one child with %s descendants (%s), every member idle in pause() and "
         "reported before the clock starts; orphand: the child bound to an idle parent with "
         "scope tree and SIGKILL (acknowledged), clock from the parent's SIGKILL; cgroup.kill: "
         "clock from the write of \"1\"; both until the last member's pidfd is readable (%d ms at "
         "most); %s; daemon log: stderr text at level %s to a file; %s",
         n.c_str(), shape.describe().c_str(), timeout_ms,
         baseline ? fmt("each tree built in a fresh cgroup v2 under %s", site.dir.c_str()).c_str()
                  : fmt("no cgroup.kill rounds: %s", site.why_not.c_str()).c_str(),
         log_level.c_str(), host.c_str());
    note("tree kill, %s descendants, %d rounds (medians; orphand / cgroup.kill): the bound child "
         "dead %s / %s ms; the trigger returned (the SIGKILL / the write to cgroup.kill) after %s "
         "/ %s ms; CPU used by the daemon from the trigger to the last death %s / %s ms; the "
         "daemon counted %s kills per orphand round",
         n.c_str(), rounds, median_of(o, &Outcome::root_ms).c_str(),
         median_of(c, &Outcome::root_ms).c_str(), median_of(o, &Outcome::trigger_ms).c_str(),
         median_of(c, &Outcome::trigger_ms).c_str(), median_of(o, &Outcome::daemon_cpu_ms).c_str(),
         median_of(c, &Outcome::daemon_cpu_ms).c_str(),
         kills_per_round.empty()
             ? "-"
             : count_text(static_cast<size_t>(summarize(kills_per_round).p50)).c_str());
    row(fmt("9. Tree kill, %s descendants: all dead (ms), %d rounds", n.c_str(), rounds),
        orphand_cell, baseline_cell, ratio, "-", "-");

    // Members left alive are a failure of the mechanism, not a figure: say so in the exit status.
    bool failed = !all_dead(o) || (baseline && !all_dead(c));
    if (failed)
        std::fprintf(stderr, "bench: %s left members of the tree alive\n",
                     !all_dead(o) ? "orphand's tree kill" : "cgroup.kill");
    return failed ? 1 : 0;
}
