/* SPDX-License-Identifier: MIT */
/* liborphand: orphand's client library, in plain C11 over libc (orphand(3)).
 *
 * No global state: everything lives in an orphand_conn, which one thread uses at a time. Every
 * fd is close-on-exec, every send is MSG_NOSIGNAL, and every wait for the daemon is bounded by
 * the connection's timeout, so a stopped daemon cannot hang the caller. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "orphand/orphand.h"
#include "orphand/reason_text.h"
#include "orphand/socket_path.h"

#define ORPHAND_EXPORT __attribute__((visibility("default")))

/* The library's policy flag must never collide with a request flag of the wire. */
_Static_assert((ORPHAND_POLICY_SCOPE & (ORPHAND_FLAG_SIGNAL | ORPHAND_FLAG_GRACE)) == 0,
               "ORPHAND_POLICY_SCOPE is a wire flag");
/* LIST's conversions between the two record layouts move `info` as the first bytes. */
_Static_assert(offsetof(struct orphand_binding_info2, info) == 0, "binding_info2 layout");

struct orphand_conn {
    int fd;           /* owned; SOCK_CLOEXEC | SOCK_NONBLOCK */
    int timeout_ms;   /* bound on each wait for the daemon */
    uint32_t seq;     /* of the last request */
    uint32_t version; /* the protocol version the daemon answered HELLO with */
    uint32_t pending; /* requests sent by orphand_send_request() whose replies are unread */
    int broken;       /* a message was cut short: the stream is out of step, only close remains */
};

/* Sets *reason (if wanted) and returns `error`: every exit of a request goes through here. */
static int fail(uint32_t *reason, int error, uint32_t why) {
    if (reason)
        *reason = why;
    return error;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline passes: 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, int64_t deadline) {
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int r = poll(&p, 1, left > 0x7fffffff ? 0x7fffffff : (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

/* After a send or receive that failed with errno `e`: 0 to try again (it was interrupted, or
 * the socket is ready for `events` again within the deadline), else a negative errno. */
static int try_again(int e, int fd, short events, int64_t deadline) {
    if (e == EINTR)
        return 0;
    if (e != EAGAIN)
        return -e;
    return wait_fd(fd, events, deadline);
}

/* Sends one whole message; the fds (borrowed) travel with its first byte. 0 or -errno. */
static int send_message(orphand_conn *c, const void *data, size_t size, const int *fds,
                        size_t nfds) {
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(ORPHAND_MAX_FDS * sizeof(int))];
    } control;
    const char *p = data;
    int64_t deadline = now_ms() + c->timeout_ms;
    while (size > 0) {
        struct iovec iov = {.iov_base = (void *)p, .iov_len = size};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        if (nfds > 0) {
            memset(&control, 0, sizeof(control));
            msg.msg_control = control.buf;
            msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
            struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
            memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
        }
        /* MSG_NOSIGNAL: a daemon that went away must not SIGPIPE the program. */
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            int r = try_again(errno, c->fd, POLLOUT, deadline);
            if (r < 0)
                return r;
            continue;
        }
        p += n;
        size -= (size_t)n;
        nfds = 0; /* sent with the first byte */
    }
    return 0;
}

/* Receives exactly `size` bytes. 0, -ETIMEDOUT, -ECONNRESET (the daemon closed) or -errno. */
static int recv_exact(orphand_conn *c, void *data, size_t size) {
    char *p = data;
    int64_t deadline = now_ms() + c->timeout_ms;
    while (size > 0) {
        ssize_t n = recv(c->fd, p, size, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0) {
            int r = try_again(errno, c->fd, POLLIN, deadline);
            if (r < 0)
                return r;
            continue;
        }
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Sends `q` (with the fds) and reads its reply into *r. Returns the reply's error (0 or a
 * negative errno) with *reason its reason, or a client-side -errno. A transport failure leaves
 * the connection broken: what comes next on the stream is unknown. */
static int call(orphand_conn *c, struct orphand_request q, const int *fds, size_t nfds,
                struct orphand_reply *r, uint32_t *reason) {
    if (!c)
        return fail(reason, -EINVAL, ORPHAND_REASON_CLIENT);
    if (c->broken)
        return fail(reason, -ENOTCONN, ORPHAND_REASON_CLIENT);
    /* Replies come in order: this one would come after those still owed. */
    if (c->pending)
        return fail(reason, -EBUSY, ORPHAND_REASON_CLIENT);
    q.seq = ++c->seq;
    int e = send_message(c, &q, sizeof(q), fds, nfds);
    if (e == 0)
        e = recv_exact(c, r, sizeof(*r));
    if (e == 0 && (r->seq != q.seq || r->action != q.action || r->error > 0))
        e = -EPROTO;
    if (e < 0) {
        c->broken = 1;
        return fail(reason, e, ORPHAND_REASON_CLIENT);
    }
    return fail(reason, r->error, r->reason);
}

static int pidfd_open_cloexec(pid_t pid) {
    /* pidfds are always close-on-exec. */
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* The pid behind a pidfd, from /proc/self/fdinfo: > 0, or -EBADF (not a pidfd), -ESRCH (the
 * process was reaped), -EXDEV (not in our pid namespace), -errno. */
static int pidfd_pid(int pidfd) {
    if (pidfd < 0)
        return -EBADF;
    char path[48];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[1024];
    ssize_t got = read(fd, buf, sizeof(buf) - 1);
    int e = errno;
    close(fd);
    if (got < 0)
        return -e;
    buf[got] = '\0';
    const char *line = strstr(buf, "\nPid:");
    if (!line)
        return -EBADF;
    long pid = strtol(line + 5, NULL, 10);
    if (pid == -1)
        return -ESRCH;
    if (pid == 0)
        return -EXDEV;
    return pid > 0 && pid <= 0x7fffffff ? (int)pid : -EBADF;
}

/* Fills a request's policy fields. 0, or -EINVAL for unknown flags. `scope` is read only with
 * ORPHAND_POLICY_SCOPE: a program built before it existed passes a struct without the field.
 * The scope's value is the daemon's to judge, so that a scope newer than this library works
 * with a daemon that knows it. */
static int set_policy(struct orphand_request *q, const struct orphand_policy *policy) {
    if (!policy)
        return 0;
    uint32_t wire = policy->flags & ~ORPHAND_POLICY_SCOPE;
    if (wire & ~(ORPHAND_FLAG_SIGNAL | ORPHAND_FLAG_GRACE))
        return -EINVAL;
    q->flags = wire;
    if (wire & ORPHAND_FLAG_SIGNAL)
        q->signal = policy->signal;
    if (wire & ORPHAND_FLAG_GRACE)
        q->grace_ms = policy->grace_ms;
    if (policy->flags & ORPHAND_POLICY_SCOPE)
        q->scope = policy->scope;
    return 0;
}

/* REGISTER (parent, child) with fds[0..nfds) (borrowed). */
static int bind_request(orphand_conn *conn, pid_t parent, pid_t child, const int *fds, size_t nfds,
                        const struct orphand_policy *policy, uint32_t *reason) {
    struct orphand_request q = {
        .parent = (uint32_t)parent, .child = (uint32_t)child, .action = ORPHAND_ACTION_REGISTER};
    if (set_policy(&q, policy) < 0)
        return fail(reason, -EINVAL, ORPHAND_REASON_BAD_POLICY);
    struct orphand_reply r;
    return call(conn, q, fds, nfds, &r, reason);
}

ORPHAND_EXPORT int orphand_socket_path(const char *path, char *buf, size_t size) {
    if (!buf)
        return -EINVAL;
    return orphand_socket_path_resolve(path, buf, size);
}

ORPHAND_EXPORT int orphand_connect(orphand_conn **conn, const char *path, int timeout_ms) {
    if (!conn)
        return -EINVAL;
    *conn = NULL;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int len = orphand_socket_path_resolve(path, addr.sun_path, sizeof(addr.sun_path));
    if (len < 0)
        return len;
    orphand_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : ORPHAND_DEFAULT_TIMEOUT_MS;
    /* Non-blocking, so that a stopped or overloaded daemon cannot hang the caller. */
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        int e = -errno;
        free(c);
        return e;
    }
    int e = 0;
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)len + 1);
    if (connect(c->fd, (const struct sockaddr *)&addr, addr_len) < 0) {
        e = -errno;
        if (e == -EINPROGRESS || e == -EINTR) {
            e = wait_fd(c->fd, POLLOUT, now_ms() + c->timeout_ms);
            int so_error = 0;
            socklen_t so_len = sizeof(so_error);
            if (e == 0 && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so_error, &so_len) < 0)
                e = -errno;
            else if (e == 0)
                e = -so_error;
        }
    }
    if (e == 0) {
        /* A daemon that does not know HELLO sends nothing: the reply is awaited with a
         * timeout (orphand-protocol(7)). */
        struct orphand_record hello = {ORPHAND_HELLO_MAGIC, ORPHAND_PROTOCOL_VERSION,
                                       ORPHAND_ACTION_HELLO};
        struct orphand_reply r;
        e = send_message(c, &hello, sizeof(hello), NULL, 0);
        if (e == 0)
            e = recv_exact(c, &r, sizeof(r));
        /* The daemon speaks the lower of its version and ours: a higher one is out of step. */
        if (e == 0 && (r.action != ORPHAND_ACTION_HELLO || r.error != 0 || r.count < 1 ||
                       r.count > ORPHAND_PROTOCOL_VERSION))
            e = -EPROTO;
        if (e == 0)
            c->version = r.count;
    }
    if (e < 0) {
        orphand_close(c);
        return e;
    }
    *conn = c;
    return 0;
}

ORPHAND_EXPORT void orphand_close(orphand_conn *conn) {
    if (!conn)
        return;
    close(conn->fd);
    free(conn);
}

ORPHAND_EXPORT int orphand_bind(orphand_conn *conn, pid_t parent, pid_t child,
                                const struct orphand_policy *policy, uint32_t *reason) {
    if (child <= 0 || parent < 0)
        return fail(reason, -EINVAL, ORPHAND_REASON_BAD_PID);
    pid_t self = getpid();
    if (parent == 0)
        parent = self;
    /* Pidfds make the daemon hold exactly the processes named here, even if one exits and its
     * pid is reused before the request is read. */
    int fds[2] = {pidfd_open_cloexec(child), -1};
    if (fds[0] < 0) {
        int e = errno;
        return fail(reason, -e,
                    e == ESRCH ? ORPHAND_REASON_NO_SUCH_PROCESS : ORPHAND_REASON_CLIENT);
    }
    /* The caller as parent needs no fd: the daemon knows its peer (SO_PEERPIDFD). A parent that
     * cannot be opened is sent as a bare pid; one that is gone counts as already dead. */
    if (parent != self)
        fds[1] = pidfd_open_cloexec(parent);
    int r = bind_request(conn, parent, child, fds, fds[1] >= 0 ? 2 : 1, policy, reason);
    close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    return r;
}

ORPHAND_EXPORT int orphand_bind_pidfd(orphand_conn *conn, int parent_pidfd, int child_pidfd,
                                      const struct orphand_policy *policy, uint32_t *reason) {
    int child = pidfd_pid(child_pidfd);
    if (child < 0)
        return fail(reason, child,
                    child == -ESRCH   ? ORPHAND_REASON_NO_SUCH_PROCESS
                    : child == -EBADF ? ORPHAND_REASON_NOT_PIDFD
                                      : ORPHAND_REASON_CLIENT);
    if (parent_pidfd < 0)
        return bind_request(conn, getpid(), child, &child_pidfd, 1, policy, reason);
    /* A parent reaped already has no pid left to name in the request: -ESRCH, nothing bound
     * (the caller, holding its pidfd, knows that it is gone). */
    int parent = pidfd_pid(parent_pidfd);
    if (parent < 0)
        return fail(reason, parent,
                    parent == -ESRCH   ? ORPHAND_REASON_NO_SUCH_PROCESS
                    : parent == -EBADF ? ORPHAND_REASON_NOT_PIDFD
                                       : ORPHAND_REASON_CLIENT);
    int fds[2] = {child_pidfd, parent_pidfd};
    return bind_request(conn, parent, child, fds, 2, policy, reason);
}

ORPHAND_EXPORT int orphand_unbind(orphand_conn *conn, pid_t parent, pid_t child, uint32_t *reason) {
    if (child <= 0 || parent < 0)
        return fail(reason, -EINVAL, ORPHAND_REASON_BAD_PID);
    struct orphand_request q = {.parent = (uint32_t)(parent ? parent : getpid()),
                                .child = (uint32_t)child,
                                .action = ORPHAND_ACTION_UNREGISTER};
    struct orphand_reply r;
    return call(conn, q, NULL, 0, &r, reason);
}

/* LIST, with the records in the version 2 layout whatever the connection's version: on success
 * *out is a malloc'ed array of *count records (NULL when there are none). */
static int list_records(orphand_conn *conn, struct orphand_binding_info2 **out, size_t *count,
                        uint32_t *reason) {
    *out = NULL;
    *count = 0;
    struct orphand_request q = {.action = ORPHAND_ACTION_LIST};
    struct orphand_reply r;
    int e = call(conn, q, NULL, 0, &r, reason);
    if (e < 0 || r.count == 0)
        return e;
    /* A version 1 daemon sends the 64-byte orphand_binding_info. */
    size_t wire = conn->version >= 2 ? sizeof(struct orphand_binding_info2)
                                     : sizeof(struct orphand_binding_info);
    size_t n = r.count;
    struct orphand_binding_info2 *records =
        n <= SIZE_MAX / sizeof(*records) ? malloc(n * sizeof(*records)) : NULL;
    if (!records) {
        /* Read the records anyway, so that the connection stays in step. */
        struct orphand_binding_info2 skip;
        for (size_t i = 0; i < n && e == 0; ++i)
            e = recv_exact(conn, &skip, wire);
        if (e < 0)
            conn->broken = 1;
        return fail(reason, e < 0 ? e : -ENOMEM, ORPHAND_REASON_CLIENT);
    }
    e = recv_exact(conn, records, n * wire);
    if (e < 0) {
        conn->broken = 1;
        free(records);
        return fail(reason, e, ORPHAND_REASON_CLIENT);
    }
    if (wire < sizeof(*records)) {
        /* v1 records, packed at the front: spread out in place, last first, so that none is
         * overwritten before it has moved. `info` is the first member of a v2 record. */
        char *bytes = (char *)records;
        for (size_t i = n; i-- > 0;) {
            memmove(bytes + i * sizeof(*records), bytes + i * wire, wire);
            memset(bytes + i * sizeof(*records) + wire, 0, sizeof(*records) - wire);
            records[i].scope = ORPHAND_SCOPE_PROCESS;
        }
    }
    *out = records;
    *count = n;
    return 0;
}

ORPHAND_EXPORT int orphand_list(orphand_conn *conn, struct orphand_binding_info **bindings,
                                size_t *count, uint32_t *reason) {
    if (!bindings || !count)
        return fail(reason, -EINVAL, ORPHAND_REASON_CLIENT);
    struct orphand_binding_info2 *records;
    size_t n;
    *bindings = NULL;
    *count = 0;
    int e = list_records(conn, &records, &n, reason);
    if (e < 0 || n == 0)
        return e;
    /* Packed in place into the v1 layout, first first: each record moves towards the front.
     * `info` is the first member of a v2 record. */
    char *bytes = (char *)records;
    for (size_t i = 0; i < n; ++i)
        memmove(bytes + i * sizeof(struct orphand_binding_info), bytes + i * sizeof(*records),
                sizeof(struct orphand_binding_info));
    *bindings = (struct orphand_binding_info *)records;
    *count = n;
    return 0;
}

ORPHAND_EXPORT void orphand_list_free(struct orphand_binding_info *bindings) {
    free(bindings);
}

ORPHAND_EXPORT int orphand_list2(orphand_conn *conn, struct orphand_binding_info2 **bindings,
                                 size_t *count, uint32_t *reason) {
    if (!bindings || !count)
        return fail(reason, -EINVAL, ORPHAND_REASON_CLIENT);
    return list_records(conn, bindings, count, reason);
}

ORPHAND_EXPORT void orphand_list2_free(struct orphand_binding_info2 *bindings) {
    free(bindings);
}

ORPHAND_EXPORT int orphand_status(orphand_conn *conn, struct orphand_status_info *status,
                                  uint32_t *reason) {
    if (!status)
        return fail(reason, -EINVAL, ORPHAND_REASON_CLIENT);
    struct orphand_request q = {.action = ORPHAND_ACTION_STATUS};
    struct orphand_reply r;
    int e = call(conn, q, NULL, 0, &r, reason);
    if (e < 0)
        return e;
    if (r.count != 1) {
        conn->broken = 1;
        return fail(reason, -EPROTO, ORPHAND_REASON_CLIENT);
    }
    e = recv_exact(conn, status, sizeof(*status));
    if (e < 0) {
        conn->broken = 1;
        return fail(reason, e, ORPHAND_REASON_CLIENT);
    }
    return 0;
}

ORPHAND_EXPORT int orphand_ping(orphand_conn *conn, uint32_t *reason) {
    struct orphand_request q = {.action = ORPHAND_ACTION_PING};
    struct orphand_reply r;
    return call(conn, q, NULL, 0, &r, reason);
}

ORPHAND_EXPORT uint32_t orphand_protocol_version(const orphand_conn *conn) {
    return conn ? conn->version : 0;
}

ORPHAND_EXPORT int orphand_send_request(orphand_conn *conn, struct orphand_request *request,
                                        const int *fds, size_t nfds) {
    if (!conn || !request || nfds > ORPHAND_MAX_FDS || (nfds > 0 && !fds))
        return -EINVAL;
    /* Only the requests whose whole answer is one reply: LIST and STATUS have their calls. */
    if (request->action != ORPHAND_ACTION_REGISTER &&
        request->action != ORPHAND_ACTION_UNREGISTER && request->action != ORPHAND_ACTION_PING)
        return -EINVAL;
    if (conn->broken)
        return -ENOTCONN;
    if (conn->pending == UINT32_MAX)
        return -EBUSY;
    request->seq = conn->seq + 1;
    int e = send_message(conn, request, sizeof(*request), fds, nfds);
    if (e < 0) {
        /* Perhaps a part was sent: what the daemon reads next is unknown. */
        conn->broken = 1;
        return e;
    }
    ++conn->seq;
    ++conn->pending;
    return 0;
}

ORPHAND_EXPORT int orphand_receive_reply(orphand_conn *conn, struct orphand_reply *reply,
                                         uint32_t *reason) {
    if (!conn || !reply)
        return fail(reason, -EINVAL, ORPHAND_REASON_CLIENT);
    if (conn->broken)
        return fail(reason, -ENOTCONN, ORPHAND_REASON_CLIENT);
    if (conn->pending == 0)
        return fail(reason, -ENOMSG, ORPHAND_REASON_CLIENT);
    int e = recv_exact(conn, reply, sizeof(*reply));
    /* The oldest request still owed a reply. */
    if (e == 0 && (reply->seq != conn->seq - conn->pending + 1 || reply->error > 0))
        e = -EPROTO;
    if (e < 0) {
        conn->broken = 1;
        return fail(reason, e, ORPHAND_REASON_CLIENT);
    }
    --conn->pending;
    return fail(reason, reply->error, reply->reason);
}

ORPHAND_EXPORT int orphand_bind_child(pid_t child, uint32_t *reason) {
    orphand_conn *conn;
    int e = orphand_connect(&conn, NULL, 0);
    if (e < 0)
        return fail(reason, e, ORPHAND_REASON_CLIENT);
    e = orphand_bind(conn, 0, child, NULL, reason);
    orphand_close(conn);
    return e;
}

ORPHAND_EXPORT const char *orphand_reason_text(uint32_t reason) {
    if (reason == ORPHAND_REASON_CLIENT)
        return "failed in the client, without a reply from the daemon";
    return orphand_reason_text_(reason);
}
