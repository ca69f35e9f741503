/* SPDX-License-Identifier: MIT */
/* liborphand: the C client library of orphand, and the one definition of its wire format.
 *
 * The first half of this header is the wire format of orphand-protocol(7): every number and
 * every message layout, in C (C99 and later) and C++. protocol/orphand/protocol.hpp, the
 * daemon's C++ view, takes its values from here. The second half is liborphand's API,
 * documented in orphand(3). Link with `pkg-config --cflags --libs orphand`. */
#ifndef ORPHAND_ORPHAND_H
#define ORPHAND_ORPHAND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The wire format (orphand-protocol(7)) ---------------------------------------------- */

/* Actions. 1-3 are the original protocol; the rest are extensions. */
#define ORPHAND_ACTION_REGISTER 1u   /* kill `child` when `parent` is no longer alive */
#define ORPHAND_ACTION_UNREGISTER 2u /* forget the binding (parent, child) */
#define ORPHAND_ACTION_PING 3u       /* legacy: the record echoed back; v1: a reply */
#define ORPHAND_ACTION_HELLO 4u      /* switch the connection to acknowledged mode (v1) */
#define ORPHAND_ACTION_LIST 5u       /* v1 only: a reply, then `count` binding_info records */
#define ORPHAND_ACTION_STATUS 6u     /* v1 only: a reply, then one status_info */

/* HELLO is the legacy record {ORPHAND_HELLO_MAGIC, version, ORPHAND_ACTION_HELLO}. */
#define ORPHAND_HELLO_MAGIC 0x4850524fu /* "ORPH" read as little-endian bytes */
#define ORPHAND_PROTOCOL_VERSION 2u     /* the highest this header describes */
/* Version 2 differs from 1 only in LIST: its records are orphand_binding_info2, which carry
 * the binding's scope. The daemon answers HELLO with the lower of the client's version and
 * its own, and speaks that version on the connection. */

/* Request flags (v1). */
#define ORPHAND_FLAG_SIGNAL 0x1u /* `signal` holds the first signal to send */
#define ORPHAND_FLAG_GRACE 0x2u  /* `grace_ms` holds the grace period */

/* Kill scopes: what a binding signals when its parent dies (orphand_request.scope).
 * Older daemons refuse any scope but PROCESS with ORPHAND_REASON_BAD_POLICY. */
#define ORPHAND_SCOPE_PROCESS 0u /* the child alone (the default) */
#define ORPHAND_SCOPE_PGROUP 1u  /* every process in the child's process group */
#define ORPHAND_SCOPE_TREE 2u    /* the child and all its descendants */
#define ORPHAND_SCOPE_CGROUP 3u  /* every process in the child's cgroup (v2) and below it */
#define ORPHAND_SCOPE_COUNT 4u

/* Grace period meaning "never escalate to SIGKILL". */
#define ORPHAND_GRACE_NEVER 0xffffffffu

/* Why a request was refused (or, with error 0, a note on how it was accepted). */
#define ORPHAND_REASON_OK 0u
#define ORPHAND_REASON_PARENT_ALREADY_DEAD 1u    /* accepted; the child was killed at once */
#define ORPHAND_REASON_ALREADY_BOUND 2u          /* accepted; the binding existed already */
#define ORPHAND_REASON_UNKNOWN_ACTION 3u         /* EINVAL */
#define ORPHAND_REASON_BAD_PID 4u                /* EINVAL: pid 0, negative or out of range */
#define ORPHAND_REASON_SAME_PROCESS 5u           /* EINVAL: parent and child are one process */
#define ORPHAND_REASON_PROTECTED_TARGET 6u       /* EPERM: pid 1, orphand or a kernel thread */
#define ORPHAND_REASON_NO_SUCH_PROCESS 7u        /* ESRCH: the child does not exist (any more) */
#define ORPHAND_REASON_NOT_PERMITTED 8u          /* EPERM: the client may not signal the child */
#define ORPHAND_REASON_NOT_PIDFD 9u              /* EBADF: a passed fd is not a pidfd */
#define ORPHAND_REASON_PIDFD_MISMATCH 10u        /* EINVAL: a pidfd is not the pid named */
#define ORPHAND_REASON_TOO_MANY_FDS 11u          /* E2BIG: more than two fds passed */
#define ORPHAND_REASON_FOREIGN_PID_NAMESPACE 12u /* EXDEV: raw pids from another pid namespace */
#define ORPHAND_REASON_LIMIT_USER 13u            /* EDQUOT: bindings per uid exhausted */
#define ORPHAND_REASON_LIMIT_PARENT 14u          /* EDQUOT: bindings per parent exhausted */
#define ORPHAND_REASON_LIMIT_CONNECTIONS 15u     /* EUSERS: too many connections */
#define ORPHAND_REASON_OUT_OF_FDS 16u            /* EMFILE/ENFILE: the daemon has no fd left */
#define ORPHAND_REASON_BAD_POLICY 17u            /* EINVAL: bad signal, grace or reserved bits */
#define ORPHAND_REASON_NOT_BOUND 18u             /* accepted (UNREGISTER): no such binding */
#define ORPHAND_REASON_INTERNAL 19u              /* any other errno */
#define ORPHAND_REASON_NOT_A_PROCESS 20u         /* EINVAL: a pid or pidfd names a thread */
#define ORPHAND_REASON_SCOPE_REFUSED 21u         /* EPERM: a cgroup scope that reaches too far */
#define ORPHAND_REASON_SCOPE_UNSUPPORTED 22u     /* EOPNOTSUPP: no cgroup v2 for a cgroup scope */
/* Never on the wire: liborphand's reason for a failure in the client (no socket, no reply,
 * a bad argument), where the errno alone says what happened. */
#define ORPHAND_REASON_CLIENT 0x100u

/* Kernel features in use, as reported by STATUS (orphand_status_info.features). */
#define ORPHAND_FEATURE_PEER_PIDFD 0x01u    /* SO_PEERPIDFD (Linux 6.5) */
#define ORPHAND_FEATURE_PIDFD_INFO 0x02u    /* PIDFD_GET_INFO (Linux 6.13) */
#define ORPHAND_FEATURE_EXIT_INFO 0x04u     /* PIDFD_INFO_EXIT (Linux 6.15) */
#define ORPHAND_FEATURE_PIDFS_INODE 0x08u   /* unique pidfs inode numbers (Linux 6.9) */
#define ORPHAND_FEATURE_DURABLE 0x10u       /* bindings survive restarts and crashes */
#define ORPHAND_FEATURE_JOURNAL 0x20u       /* logging to the journal */
#define ORPHAND_FEATURE_PGROUP_SIGNAL 0x40u /* PIDFD_SIGNAL_PROCESS_GROUP (Linux 6.9) */
#define ORPHAND_FEATURE_CGROUP 0x80u        /* cgroup v2 at /sys/fs/cgroup: the cgroup scope */

/* orphand_status_info.scope: the daemon's figures (root, CAP_KILL) or the client's own. */
#define ORPHAND_STATUS_SCOPE_ALL 0u
#define ORPHAND_STATUS_SCOPE_OWN 1u

#define ORPHAND_COMM_LEN 16u /* TASK_COMM_LEN */
#define ORPHAND_MAX_FDS 2u   /* a REGISTER carries the child's pidfd, then the parent's */

/* The sockets of the system daemon and, under $XDG_RUNTIME_DIR, of a user's daemon. */
#define ORPHAND_SYSTEM_SOCKET "/run/orphand/orphand.sock"
#define ORPHAND_USER_SOCKET_NAME "orphand.sock"
/* Beside each, a datagram socket named like it with this suffix takes legacy REGISTER records,
 * one per datagram, with the child's pidfd (orphand-protocol(7)). */
#define ORPHAND_DATAGRAM_SUFFIX ".dgram"

/* The legacy record: host byte order, no header, no length. */
struct orphand_record {
    uint32_t parent;
    uint32_t child;
    uint32_t action;
};

/* A request in acknowledged mode. The first 12 bytes have the layout of orphand_record. */
struct orphand_request {
    uint32_t parent;
    uint32_t child;
    uint32_t action;
    uint32_t seq; /* echoed in the reply */
    uint32_t flags;
    int32_t signal;    /* with ORPHAND_FLAG_SIGNAL */
    uint32_t grace_ms; /* with ORPHAND_FLAG_GRACE; ORPHAND_GRACE_NEVER disables escalation */
    uint32_t scope;    /* REGISTER: an ORPHAND_SCOPE_*; other actions: 0 */
};

/* The reply to a v1 request (and to HELLO). */
struct orphand_reply {
    uint32_t seq;    /* the request's seq */
    uint32_t action; /* the request's action */
    int32_t error;   /* 0 or a negative errno */
    uint32_t reason; /* an ORPHAND_REASON_* */
    uint32_t count;  /* HELLO: version; LIST: binding_info records that follow; STATUS: 1 */
    uint32_t reserved[3];
};

/* One live binding, as listed by LIST. */
struct orphand_binding_info {
    uint32_t parent_pid;
    uint32_t child_pid;
    uint32_t registrant_uid;
    uint32_t registrant_pid;
    int32_t signal;
    uint32_t grace_ms;
    uint64_t age_ms;
    char parent_comm[ORPHAND_COMM_LEN]; /* NUL-terminated */
    char child_comm[ORPHAND_COMM_LEN];  /* NUL-terminated */
};

/* One live binding, as listed by LIST on a version 2 connection. */
struct orphand_binding_info2 {
    struct orphand_binding_info info;
    uint32_t scope; /* ORPHAND_SCOPE_* */
    uint32_t reserved[3];
};

/* The daemon's state, as reported by STATUS. */
struct orphand_status_info {
    char version[16]; /* NUL-terminated */
    uint64_t uptime_ms;
    uint64_t kills;
    uint32_t parents;
    uint32_t children;
    uint32_t bindings;
    uint32_t connections;
    uint32_t features; /* ORPHAND_FEATURE_* bits */
    uint32_t daemon_pid;
    uint32_t default_signal;
    uint32_t default_grace_ms;
    uint32_t scope; /* ORPHAND_STATUS_SCOPE_* */
    uint32_t reserved[3];
};

#if defined(__cplusplus)
#define ORPHAND_LAYOUT_(cond, what) static_assert(cond, what)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define ORPHAND_LAYOUT_(cond, what) _Static_assert(cond, what)
#else /* C99: a negative array size fails the build */
#define ORPHAND_CAT2_(a, b) a##b
#define ORPHAND_CAT_(a, b) ORPHAND_CAT2_(a, b)
#define ORPHAND_LAYOUT_(cond, what)                                                                \
    typedef char ORPHAND_CAT_(orphand_layout_, __LINE__)[(cond) ? 1 : -1]
#endif
ORPHAND_LAYOUT_(sizeof(struct orphand_record) == 12, "record is 12 bytes");
ORPHAND_LAYOUT_(offsetof(struct orphand_record, action) == 8, "record layout");
ORPHAND_LAYOUT_(sizeof(struct orphand_request) == 32, "request is 32 bytes");
ORPHAND_LAYOUT_(offsetof(struct orphand_request, seq) == 12 &&
                    offsetof(struct orphand_request, flags) == 16 &&
                    offsetof(struct orphand_request, signal) == 20 &&
                    offsetof(struct orphand_request, grace_ms) == 24 &&
                    offsetof(struct orphand_request, scope) == 28,
                "request layout");
ORPHAND_LAYOUT_(sizeof(struct orphand_reply) == 32, "reply is 32 bytes");
ORPHAND_LAYOUT_(offsetof(struct orphand_reply, error) == 8 &&
                    offsetof(struct orphand_reply, count) == 16,
                "reply layout");
ORPHAND_LAYOUT_(sizeof(struct orphand_binding_info) == 64, "binding_info is 64 bytes");
ORPHAND_LAYOUT_(offsetof(struct orphand_binding_info, age_ms) == 24 &&
                    offsetof(struct orphand_binding_info, parent_comm) == 32 &&
                    offsetof(struct orphand_binding_info, child_comm) == 48,
                "binding_info layout");
ORPHAND_LAYOUT_(sizeof(struct orphand_binding_info2) == 80, "binding_info2 is 80 bytes");
ORPHAND_LAYOUT_(offsetof(struct orphand_binding_info2, scope) == 64, "binding_info2 layout");
ORPHAND_LAYOUT_(sizeof(struct orphand_status_info) == 80, "status_info is 80 bytes");
ORPHAND_LAYOUT_(offsetof(struct orphand_status_info, uptime_ms) == 16 &&
                    offsetof(struct orphand_status_info, features) == 48 &&
                    offsetof(struct orphand_status_info, scope) == 64,
                "status_info layout");

/* ---- liborphand (orphand(3)) ------------------------------------------------------------ */

/* Every call that can fail returns 0 or a negative errno. Calls that send a request take
 * `reason` (may be NULL), set to the daemon's ORPHAND_REASON_* for its reply (also when the
 * request was accepted: ORPHAND_REASON_ALREADY_BOUND, ...) or to ORPHAND_REASON_CLIENT when
 * the request failed without a reply. No call raises SIGPIPE, every fd is close-on-exec, and
 * there is no global state: a connection is used by one thread at a time. */

/* An acknowledged-mode connection to orphand. It belongs to the process that opened it (the
 * daemon knows the caller as the connection's peer): after fork(), a child opens its own. */
typedef struct orphand_conn orphand_conn;

/* How long a call waits for the daemon by default, in milliseconds. */
#define ORPHAND_DEFAULT_TIMEOUT_MS 10000

/* The socket path by the one rule orphanctl and orphand-forkwait.so follow: `path` if not
 * NULL or empty, else $ORPHAND_SOCKET if not empty, else, for a user other than root,
 * $XDG_RUNTIME_DIR/orphand.sock if it exists, else ORPHAND_SYSTEM_SOCKET. Writes it to `buf`
 * (NUL-terminated). Returns its length, or -ENAMETOOLONG if it does not fit in `size` bytes. */
int orphand_socket_path(const char *path, char *buf, size_t size);

/* Connects to the socket orphand_socket_path(path) names and switches the connection to
 * acknowledged mode. `timeout_ms` (<= 0: ORPHAND_DEFAULT_TIMEOUT_MS) bounds each wait for the
 * daemon on this connection. On success *conn is a new connection, closed with
 * orphand_close(). Errors: those of socket(2) and connect(2) (-ENOENT, -ECONNREFUSED,
 * -EAGAIN when the daemon's backlog is full), -ENAMETOOLONG, -ETIMEDOUT (no reply to HELLO: a
 * daemon too old for acknowledged mode), -EPROTO (an unexpected reply), -ENOMEM. The
 * connection speaks the lower of ORPHAND_PROTOCOL_VERSION and the daemon's version. */
int orphand_connect(orphand_conn **conn, const char *path, int timeout_ms);

/* Closes the connection and frees it. NULL is ignored. */
void orphand_close(orphand_conn *conn);

/* The first signal, grace period and kill scope of a binding; a NULL policy means the daemon's
 * defaults (scope ORPHAND_SCOPE_PROCESS). `scope` was added in liborphand 0.2: the library
 * reads it only when `flags` has ORPHAND_POLICY_SCOPE, so a program built with the older,
 * 12-byte struct (whose flags never have that bit) keeps working. */
struct orphand_policy {
    uint32_t flags;    /* ORPHAND_FLAG_SIGNAL, ORPHAND_FLAG_GRACE, ORPHAND_POLICY_SCOPE */
    int signal;        /* first signal, 1 to 64 */
    uint32_t grace_ms; /* time to SIGKILL, or ORPHAND_GRACE_NEVER */
    uint32_t scope;    /* with ORPHAND_POLICY_SCOPE: an ORPHAND_SCOPE_* */
};

/* orphand_policy.flags: `scope` is set. The library's own bit, never sent to the daemon; the
 * wire's request flags will never use it. */
#define ORPHAND_POLICY_SCOPE 0x80000000u

/* Binds `child` to `parent` (0: the calling process): orphand signals the child when the
 * parent dies. Both are opened as pidfds and passed with the request, so the daemon holds the
 * processes named here even if one exits before it reads the request; a parent that no longer
 * exists is sent by pid and the daemon kills the child at once (error 0, reason
 * ORPHAND_REASON_PARENT_ALREADY_DEAD). Errors: the daemon's (see orphand-protocol(7), REASONS),
 * and -ESRCH (reason ORPHAND_REASON_NO_SUCH_PROCESS) for a child that does not exist. A scope
 * the daemon does not know, and on a daemon older than protocol version 2 any scope but
 * ORPHAND_SCOPE_PROCESS, is refused with -EINVAL (ORPHAND_REASON_BAD_POLICY). */
int orphand_bind(orphand_conn *conn, pid_t parent, pid_t child, const struct orphand_policy *policy,
                 uint32_t *reason);

/* As orphand_bind, with the processes given as pidfds (borrowed, not closed), which the
 * daemon checks against their pids: no pid race at all. parent_pidfd -1 means the calling
 * process. -ESRCH (reason ORPHAND_REASON_NO_SUCH_PROCESS) for a pidfd whose process has been
 * reaped, parent or child: nothing is bound. -EBADF (ORPHAND_REASON_NOT_PIDFD) for an fd that
 * is not a pidfd. */
int orphand_bind_pidfd(orphand_conn *conn, int parent_pidfd, int child_pidfd,
                       const struct orphand_policy *policy, uint32_t *reason);

/* Forgets the binding (parent, child); parent 0 is the calling process. Error 0 with
 * ORPHAND_REASON_NOT_BOUND when there was none. Once this returns the binding is gone. */
int orphand_unbind(orphand_conn *conn, pid_t parent, pid_t child, uint32_t *reason);

/* The live bindings the caller may see. On success *bindings is an array of *count records
 * (NULL when there are none), freed with orphand_list_free(). -ENOMEM, and the errors of a
 * request; on failure *bindings is NULL and *count 0. */
int orphand_list(orphand_conn *conn, struct orphand_binding_info **bindings, size_t *count,
                 uint32_t *reason);

/* Frees an array from orphand_list(). NULL is ignored. */
void orphand_list_free(struct orphand_binding_info *bindings);

/* As orphand_list(), with each binding's scope (liborphand 0.2). From a daemon older than
 * protocol version 2, which has no scopes, every scope is ORPHAND_SCOPE_PROCESS. The array is
 * freed with orphand_list2_free(). */
int orphand_list2(orphand_conn *conn, struct orphand_binding_info2 **bindings, size_t *count,
                  uint32_t *reason);

/* Frees an array from orphand_list2(). NULL is ignored. */
void orphand_list2_free(struct orphand_binding_info2 *bindings);

/* The daemon's state into *status. */
int orphand_status(orphand_conn *conn, struct orphand_status_info *status, uint32_t *reason);

/* Checks that the daemon answers. */
int orphand_ping(orphand_conn *conn, uint32_t *reason);

/* For a program that has just created `child`: connects to the daemon (the socket rule of
 * orphand_socket_path(NULL)), binds the child to the calling process with the daemon's
 * default policy, and closes. Returns what orphand_connect() or orphand_bind() returned. */
int orphand_bind_child(pid_t child, uint32_t *reason);

/* The protocol version the connection speaks (liborphand 0.3): the lower of
 * ORPHAND_PROTOCOL_VERSION and the daemon's, 1 or more; 0 for a NULL connection. A scope other
 * than ORPHAND_SCOPE_PROCESS needs version 2. */
uint32_t orphand_protocol_version(const orphand_conn *conn);

/* Pipelining (liborphand 0.3): orphand_send_request() sends a REGISTER, UNREGISTER or PING
 * built by the caller (with its flags, signal, grace_ms and scope as the wire has them) and
 * returns without waiting for the reply; orphand_receive_reply() reads the next reply, in the
 * order the requests were sent. A program that registers many children at once sends a batch,
 * then reads its replies, and pays one round trip for all. The library sets request->seq; `fds`
 * (borrowed, at most ORPHAND_MAX_FDS, the child's pidfd first) travel with the request. While
 * replies are owed, the other calls on the connection fail with -EBUSY. Errors of the send:
 * -EINVAL (another action, too many fds), -ENOTCONN, and those of a request's transport; of
 * the receive: the reply's error with its reason, -ENOMSG (no reply owed), -EPROTO (a reply
 * out of order) and the transport's. A transport failure leaves the connection broken. */
int orphand_send_request(orphand_conn *conn, struct orphand_request *request, const int *fds,
                         size_t nfds);
int orphand_receive_reply(orphand_conn *conn, struct orphand_reply *reply, uint32_t *reason);

/* Human-readable text for an ORPHAND_REASON_*; never NULL. With strerror(-error) it says why a
 * call failed. */
const char *orphand_reason_text(uint32_t reason);

#ifdef __cplusplus
}
#endif

#endif /* ORPHAND_ORPHAND_H */
