// SPDX-License-Identifier: MIT
// The interposed libc entry points that create processes; each binds the new child to its caller.
//
// Each one calls the next definition in lookup order (normally glibc's) and then, in the parent
// and before returning to the program, registers the child with orphand. The child side never
// runs shim code. Nothing happens at load time: the real functions are looked up on first use.
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "registration.hpp"

#define ORPHAND_EXPORT extern "C" __attribute__((visibility("default")))

using orphand::shim::open_child_pidfd;
using orphand::shim::register_child;
using orphand::shim::register_child_pidfd;

namespace {

using ForkFn = pid_t (*)();
using SpawnFn = int (*)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);
using PopenFn = FILE *(*)(const char *, const char *);

ForkFn g_fork;
ForkFn g_underscore_fork;
SpawnFn g_posix_spawn;
SpawnFn g_posix_spawnp;
PopenFn g_popen;

// The next definition of `name` after the shim, looked up once. Several threads may race to
// look it up; they all store the same pointer, so a relaxed race is harmless. dlsym is not
// formally async-signal-safe: a program whose very first fork is made from a signal handler
// that interrupted the dynamic linker is the one case this cannot cover.
template <typename Fn> Fn next(Fn *slot, const char *name) {
    Fn fn = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (__builtin_expect(fn == nullptr, 0)) {
        int saved = errno;
        fn = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
        errno = saved;
        __atomic_store_n(slot, fn, __ATOMIC_RELEASE);
    }
    return fn;
}

// Calls a fork-like function and binds the child in the parent.
pid_t fork_with(ForkFn *slot, const char *name) {
    ForkFn real = next(slot, name);
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    pid_t pid = real();
    if (pid > 0)
        register_child(pid);
    return pid;
}

int spawn_with(SpawnFn *slot, const char *name, pid_t *pid, const char *file,
               const posix_spawn_file_actions_t *actions, const posix_spawnattr_t *attr,
               char *const argv[], char *const envp[]) {
    SpawnFn real = next(slot, name);
    if (!real)
        return ENOSYS;
    // The caller may pass a null pid; we need it regardless.
    pid_t child = 0;
    int r = real(&child, file, actions, attr, argv, envp);
    if (r == 0) {
        if (pid)
            *pid = child;
        register_child(child);
    }
    return r;
}

} // namespace

ORPHAND_EXPORT pid_t fork() noexcept {
    return fork_with(&g_fork, "fork");
}

// glibc's fork() runs the atfork handlers and calls _Fork internally (not through the PLT), so
// interposing both binds each child exactly once.
ORPHAND_EXPORT pid_t _Fork() noexcept {
    return fork_with(&g_underscore_fork, "_Fork");
}

ORPHAND_EXPORT int posix_spawn(pid_t *pid, const char *path,
                               const posix_spawn_file_actions_t *actions,
                               const posix_spawnattr_t *attr, char *const argv[],
                               char *const envp[]) {
    return spawn_with(&g_posix_spawn, "posix_spawn", pid, path, actions, attr, argv, envp);
}

ORPHAND_EXPORT int posix_spawnp(pid_t *pid, const char *file,
                                const posix_spawn_file_actions_t *actions,
                                const posix_spawnattr_t *attr, char *const argv[],
                                char *const envp[]) {
    return spawn_with(&g_posix_spawnp, "posix_spawnp", pid, file, actions, attr, argv, envp);
}

// vfork: the child borrows the parent's memory and stack until it calls exec or _exit, so no C
// function may return in the child on a frame the parent still needs. As glibc does, the return
// address is kept in a register across the syscall instead of on the (shared) stack. The child
// returns straight to the caller; the parent, once resumed, tail-calls the C part that binds the
// child. Elsewhere vfork is served by fork, which POSIX allows (a vfork child may only exec or
// _exit) but costs a page-table copy.
#if defined(__x86_64__)
static_assert(SYS_vfork == 58);
extern "C" __attribute__((visibility("hidden"))) pid_t orphand_vfork_finish(long ret) {
    if (ret < 0) {
        errno = static_cast<int>(-ret);
        return -1;
    }
    register_child(static_cast<pid_t>(ret));
    return static_cast<pid_t>(ret);
}

asm(R"(
    .text
    .globl vfork
    .type vfork, @function
    .p2align 4
vfork:
    .cfi_startproc
    popq %rdi
    .cfi_adjust_cfa_offset -8
    .cfi_register %rip, %rdi
    movl $58, %eax
    syscall
    pushq %rdi
    .cfi_adjust_cfa_offset 8
    .cfi_offset %rip, -8
    testq %rax, %rax
    jz 1f
    movq %rax, %rdi
    jmp orphand_vfork_finish
1:  ret
    .cfi_endproc
    .size vfork, .-vfork
)");
#else
ORPHAND_EXPORT pid_t vfork() noexcept {
    return fork();
}
#endif

// system(): glibc spawns the shell through an internal posix_spawn that no interposer sees, and
// the caller blocks until the shell exits, so the only place to learn the shell's pid is inside
// system() itself. This one keeps the behaviour POSIX specifies and glibc 2.36 has, with a
// registration between the spawn and the wait: SIGINT and SIGQUIT ignored while any system()
// runs (counted across threads), SIGCHLD blocked in the caller, both reset in the shell; 127 if
// the shell cannot be run; a cancelled caller kills and reaps the shell.
namespace {

pthread_mutex_t g_system_lock = PTHREAD_MUTEX_INITIALIZER;
int g_system_users = 0;
struct sigaction g_system_intr, g_system_quit;

struct SystemChild {
    pid_t pid;
    int pidfd; // ours; -1 if the shell could not be pinned
};

void system_release_signals() {
    pthread_mutex_lock(&g_system_lock);
    if (--g_system_users == 0) {
        sigaction(SIGINT, &g_system_intr, nullptr);
        sigaction(SIGQUIT, &g_system_quit, nullptr);
    }
    pthread_mutex_unlock(&g_system_lock);
}

void system_cancelled(void *arg) {
    auto *child = static_cast<SystemChild *>(arg);
    if (child->pidfd >= 0)
        ::syscall(SYS_pidfd_send_signal, child->pidfd, SIGKILL, nullptr, 0);
    else
        ::syscall(SYS_kill, child->pid, SIGKILL);
    // wait4 through syscall() is not a cancellation point, as glibc's __waitpid_nocancel.
    while (::syscall(SYS_wait4, child->pid, nullptr, 0, nullptr) < 0 && errno == EINTR) {
    }
    if (child->pidfd >= 0)
        ::syscall(SYS_close, child->pidfd);
    system_release_signals();
}

int do_system(const char *line) {
    SpawnFn real_spawn = next(&g_posix_spawn, "posix_spawn");
    if (!real_spawn) {
        errno = ENOSYS;
        return -1;
    }
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);

    pthread_mutex_lock(&g_system_lock);
    if (g_system_users++ == 0) {
        sigaction(SIGINT, &ignore, &g_system_intr);
        sigaction(SIGQUIT, &ignore, &g_system_quit);
    }
    bool reset_intr = g_system_intr.sa_handler != SIG_IGN;
    bool reset_quit = g_system_quit.sa_handler != SIG_IGN;
    pthread_mutex_unlock(&g_system_lock);

    sigset_t block, omask;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &omask);

    sigset_t reset;
    sigemptyset(&reset);
    if (reset_intr)
        sigaddset(&reset, SIGINT);
    if (reset_quit)
        sigaddset(&reset, SIGQUIT);

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &omask);
    posix_spawnattr_setsigdefault(&attr, &reset);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    char sh[] = "sh", dash_c[] = "-c";
    char *const argv[] = {sh, dash_c, const_cast<char *>(line), nullptr};
    pid_t pid = 0;
    int ret = real_spawn(&pid, "/bin/sh", nullptr, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);

    int status = -1;
    if (ret == 0) {
        SystemChild child{pid, open_child_pidfd(pid)};
        if (child.pidfd >= 0)
            register_child_pidfd(pid, child.pidfd);
        // A pthread_cleanup handler (not a C++ destructor): the shim is built without
        // exceptions, and glibc's cancellation unwinds through these setjmp-based frames.
        pthread_cleanup_push(system_cancelled, &child);
        pid_t r;
        do
            r = waitpid(pid, &status, 0);
        while (r < 0 && errno == EINTR);
        if (r != pid)
            status = -1;
        pthread_cleanup_pop(0);
        if (child.pidfd >= 0) {
            int saved = errno;
            ::syscall(SYS_close, child.pidfd);
            errno = saved;
        }
    } else {
        // POSIX: as if the shell had terminated with _exit(127).
        status = 127 << 8;
    }

    int saved = errno;
    system_release_signals();
    sigprocmask(SIG_SETMASK, &omask, nullptr);
    errno = ret != 0 ? ret : saved;
    return status;
}

} // namespace

ORPHAND_EXPORT int system(const char *command) {
    // system(NULL) asks whether a shell is available (it may not be after a chroot).
    if (command == nullptr)
        return do_system("exit 0") == 0;
    return do_system(command);
}

// popen(): glibc also spawns internally here, but returns as soon as the shell runs, and keeps
// the pid right after the FILE in its private struct _IO_proc_file { struct _IO_FILE_plus file;
// pid_t pid; ... }, whose layout has not changed since glibc 2.1. We read it from there instead
// of re-implementing popen/pclose's stream bookkeeping. The value is trusted only after
// register_child confirms it is a living child of ours (waitid on its pidfd), so a different
// layout can at worst skip the binding, never bind a stranger.
#if defined(__GLIBC__)
namespace {
constexpr size_t kProcFilePidOffset = sizeof(FILE) + sizeof(void *);
} // namespace

ORPHAND_EXPORT FILE *popen(const char *command, const char *mode) {
    PopenFn real = next(&g_popen, "popen");
    if (!real) {
        errno = ENOSYS;
        return nullptr;
    }
    FILE *stream = real(command, mode);
    if (stream) {
        pid_t pid;
        ::memcpy(&pid, reinterpret_cast<const char *>(stream) + kProcFilePidOffset, sizeof(pid));
        register_child(pid);
    }
    return stream;
}
#endif
