// SPDX-License-Identifier: MIT
// The benchmark's inner loop: N times fork + exec /bin/true + wait; prints the elapsed ns.
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    char *const args[] = {"true", NULL};
    long long start = now_ns();
    for (int i = 0; i < n; i++) {
        // fork, not vfork or posix_spawn: the path most programs (shells, make) take.
        pid_t pid = fork();
        if (pid == 0) {
            execve("/bin/true", args, environ);
            _exit(127);
        }
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || status != 0) {
            perror("fork_exec_true");
            return 1;
        }
    }
    printf("%lld\n", now_ns() - start);
    return 0;
}
