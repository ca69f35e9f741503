// SPDX-License-Identifier: MIT
// A test program that creates children through one libc entry point, for the shim's tests.
//
// Usage: spawner MODE [ARGS]. In the "keep" modes it prints "pid N" for each child it wants
// checked, then "ready", then blocks reading stdin until EOF, so the test can SIGKILL it while
// the children live. "failopen" prints a deterministic report of what libc returned, to be
// compared with and without the shim. Written in C on purpose: this is the kind of unmodified
// program the shim is preloaded into.
#include <dirent.h>
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

extern char **environ;

static void say_pid(pid_t pid) {
    printf("pid %d\n", (int)pid);
    fflush(stdout);
}

static void block_until_eof(void) {
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    while (read(STDIN_FILENO, buf, sizeof(buf)) != 0) {
    }
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void exec_sleep(void) {
    execlp("sleep", "sleep", "600", (char *)NULL);
    _exit(127);
}

static pid_t child_with(const char *mode) {
    char *argv[] = {"sleep", "600", NULL};
    pid_t pid = -1;
    if (strcmp(mode, "fork") == 0) {
        pid = fork();
        if (pid == 0)
            exec_sleep();
    } else if (strcmp(mode, "vfork") == 0) {
        pid = vfork();
        if (pid == 0)
            exec_sleep();
    } else if (strcmp(mode, "_Fork") == 0) {
        pid = _Fork();
        if (pid == 0)
            exec_sleep();
    } else if (strcmp(mode, "posix_spawn") == 0) {
        int r = posix_spawn(&pid, "/bin/sleep", NULL, NULL, argv, environ);
        if (r != 0)
            pid = -1;
    } else if (strcmp(mode, "posix_spawnp") == 0) {
        int r = posix_spawnp(&pid, "sleep", NULL, NULL, argv, environ);
        if (r != 0)
            pid = -1;
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        exit(2);
    }
    if (pid < 0)
        die(mode);
    return pid;
}

struct thread_arg {
    int forks;
    pid_t *pids;
};

static void *fork_many(void *p) {
    struct thread_arg *arg = p;
    for (int i = 0; i < arg->forks; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            pause();
            _exit(0);
        }
        arg->pids[i] = pid;
    }
    return NULL;
}

// Eight threads forking at once: every child must be bound.
static int threads(int nthreads, int forks) {
    pthread_t tid[64];
    struct thread_arg args[64];
    if (nthreads > 64)
        nthreads = 64;
    for (int t = 0; t < nthreads; t++) {
        args[t].forks = forks;
        args[t].pids = calloc((size_t)forks, sizeof(pid_t));
        if (pthread_create(&tid[t], NULL, fork_many, &args[t]) != 0)
            die("pthread_create");
    }
    for (int t = 0; t < nthreads; t++)
        pthread_join(tid[t], NULL);
    for (int t = 0; t < nthreads; t++)
        for (int i = 0; i < forks; i++) {
            if (args[t].pids[i] <= 0)
                die("fork");
            printf("pid %d\n", (int)args[t].pids[i]);
        }
    block_until_eof();
    return 0;
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; // the directory's own fd
}

static int status_of(pid_t pid) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return status;
}

// What a program can observe of libc's process creation; identical with and without the shim
// when no daemon answers (and, but for pids, when one does).
static int failopen(void) {
    char *argv[] = {"sh", "-c", "exit 7", NULL};
    int fds = count_fds();

    errno = 4242;
    pid_t pid = fork();
    if (pid == 0)
        _exit(3);
    printf("fork: errno %d, status %d\n", errno, status_of(pid));

    errno = 4242;
    pid = vfork();
    if (pid == 0)
        _exit(4);
    printf("vfork: errno %d, status %d\n", errno, status_of(pid));

    errno = 4242;
    pid = _Fork();
    if (pid == 0)
        _exit(5);
    printf("_Fork: errno %d, status %d\n", errno, status_of(pid));

    errno = 4242;
    int r = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
    printf("posix_spawn: %d, errno %d, status %d\n", r, errno, status_of(pid));
    r = posix_spawnp(NULL, "/nonexistent/program", NULL, NULL, argv, environ);
    printf("posix_spawnp missing: %d\n", r);

    errno = 4242;
    r = system("echo system says hi; exit 3");
    printf("system: %d, errno %d\n", r, errno);
    printf("system(NULL): %d\n", system(NULL) != 0);

    errno = 4242;
    FILE *f = popen("echo popen says hi; exit 2", "r");
    char line[128] = "";
    if (!f || !fgets(line, sizeof(line), f))
        die("popen");
    printf("popen: %s", line);
    printf("pclose: %d\n", pclose(f));

    printf("fds: %d before, %d after\n", fds, count_fds());
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: spawner MODE [ARGS]\n");
        return 2;
    }
    const char *mode = argv[1];
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);

    if (strcmp(mode, "failopen") == 0)
        return failopen();
    if (strcmp(mode, "threads") == 0)
        return threads(argc > 2 ? atoi(argv[2]) : 8, argc > 3 ? atoi(argv[3]) : 1000);
    if (strcmp(mode, "system") == 0) {
        // The shell prints its own pid and becomes the sleep: the child system() made is
        // the process that must die. system() blocks, so the test kills us meanwhile.
        return system("echo pid $$; echo ready; exec sleep 600");
    }
    if (strcmp(mode, "popen") == 0) {
        FILE *f = popen("echo $$; exec sleep 600", "r");
        int pid = 0;
        if (!f || fscanf(f, "%d", &pid) != 1)
            die("popen");
        say_pid(pid);
        block_until_eof();
        return 0;
    }
    if (strcmp(mode, "fork-and-exit") == 0) {
        // Dies as soon as fork returns: the shim's record is still in the daemon's queue.
        say_pid(child_with("fork"));
        _exit(0);
    }
    if (strcmp(mode, "sigchld-ignored") == 0) {
        // Children reaped by the kernel at once: some vanish before the shim can look at them.
        signal(SIGCHLD, SIG_IGN);
        for (int i = 0; i < 50; i++)
            if (fork() == 0)
                _exit(0);
        say_pid(child_with("fork"));
        say_pid(child_with("posix_spawn"));
        block_until_eof();
        return 0;
    }
    if (strcmp(mode, "close-fds") == 0) {
        // A program that closes everything above stderr (as daemons do) and then forks.
        if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
            for (int fd = 3; fd < 65536; fd++)
                close(fd);
        say_pid(child_with("fork"));
        say_pid(child_with("vfork"));
        block_until_eof();
        return 0;
    }
    say_pid(child_with(mode));
    say_pid(child_with(mode));
    block_until_eof();
    return 0;
}
