// SPDX-License-Identifier: MIT
// The floor under orphand's datagram path: a receiver that takes the shim's datagrams exactly as
// orphand does (credentials and the sender's pidfd attached, one datagram per readiness report,
// the passed fds closed) and registers nothing. Its CPU per datagram and the shim's fork+exec+wait
// time against it are what one wakeup per fork costs on this machine, whatever the daemon does.
//
// Usage: datagram-sink PATH. Binds PATH, prints "ready", and serves until its standard input
// closes; then prints how many datagrams it received and exits.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76 // Linux 6.5
#endif
#ifndef SCM_PIDFD
#define SCM_PIDFD 4
#endif

// Closes every fd a datagram carried: SCM_RIGHTS, and the sender's pidfd.
static void close_passed(struct msghdr *msg) {
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET ||
            (cm->cmsg_type != SCM_RIGHTS && cm->cmsg_type != SCM_PIDFD))
            continue;
        size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
            close(fd);
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: datagram-sink PATH\n");
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "datagram-sink: path too long\n");
        return 2;
    }
    strcpy(addr.sun_path, argv[1]);
    int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sock < 0 || bind(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "datagram-sink: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int one = 1;
    setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
    setsockopt(sock, SOL_SOCKET, SO_PASSPIDFD, &one, sizeof(one)); // absent before 6.5
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = sock};
    epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev);
    ev.data.fd = STDIN_FILENO;
    epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
    printf("ready\n");
    fflush(stdout);

    unsigned long received = 0;
    for (;;) {
        struct epoll_event events[2];
        int n = epoll_wait(ep, events, 2, -1);
        if (n < 0 && errno != EINTR)
            return 1;
        for (int i = 0; i < n; ++i) {
            if (events[i].data.fd == STDIN_FILENO) {
                char c;
                if (read(STDIN_FILENO, &c, 1) <= 0) {
                    printf("%lu\n", received);
                    return 0;
                }
                continue;
            }
            unsigned char buf[64];
            union {
                struct cmsghdr align;
                char data[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int)) +
                          CMSG_SPACE(sizeof(int) * 253)];
            } control;
            struct iovec iov = {buf, sizeof(buf)};
            struct msghdr msg = {.msg_iov = &iov,
                                 .msg_iovlen = 1,
                                 .msg_control = control.data,
                                 .msg_controllen = sizeof(control.data)};
            if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT) < 0)
                continue;
            ++received;
            close_passed(&msg);
        }
    }
}
