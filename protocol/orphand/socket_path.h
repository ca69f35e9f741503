/* SPDX-License-Identifier: MIT */
/* The one rule by which every client finds orphand's socket: liborphand, orphanctl and the
 * preload shim include this header (it is not installed).
 *
 * The shim runs it inside other people's processes, between fork() and its return, possibly in
 * a signal handler: so no allocation, no stdio, no locks. getenv() only reads environ;
 * geteuid() and access() are async-signal-safe (POSIX). Valid C and C++. */
#ifndef ORPHAND_SOCKET_PATH_H
#define ORPHAND_SOCKET_PATH_H

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "orphand/orphand.h"

/* Copies `src` then `suffix` (may be NULL) into buf; the total length, or -ENAMETOOLONG. */
static inline int orphand_path_join_(char *buf, size_t size, const char *src, const char *suffix) {
    size_t n = 0;
    for (; *src; ++src, ++n) {
        if (n + 1 >= size)
            return -ENAMETOOLONG;
        buf[n] = *src;
    }
    for (; suffix && *suffix; ++suffix, ++n) {
        if (n + 1 >= size)
            return -ENAMETOOLONG;
        buf[n] = *suffix;
    }
    if (size == 0)
        return -ENAMETOOLONG;
    buf[n] = '\0';
    return (int)n;
}

/* The socket path: `path` if not NULL or empty, else $ORPHAND_SOCKET if not empty, else, for a
 * user other than root, $XDG_RUNTIME_DIR/orphand.sock if XDG_RUNTIME_DIR is absolute and that
 * socket exists (the user runs their own daemon), else ORPHAND_SYSTEM_SOCKET. Writes it
 * NUL-terminated into buf; returns its length, or -ENAMETOOLONG if it needs more than `size`
 * bytes (buf then holds no path). Documented in orphand(3) and orphanctl(1). */
static inline int orphand_socket_path_resolve(const char *path, char *buf, size_t size) {
    if (path && path[0])
        return orphand_path_join_(buf, size, path, NULL);
    const char *env = getenv("ORPHAND_SOCKET");
    if (env && env[0])
        return orphand_path_join_(buf, size, env, NULL);
    if (geteuid() != 0) {
        const char *runtime = getenv("XDG_RUNTIME_DIR");
        if (runtime && runtime[0] == '/') {
            int n = orphand_path_join_(buf, size, runtime, "/" ORPHAND_USER_SOCKET_NAME);
            if (n >= 0 && access(buf, F_OK) == 0)
                return n;
        }
    }
    return orphand_path_join_(buf, size, ORPHAND_SYSTEM_SOCKET, NULL);
}

/* The datagram socket beside the stream socket `stream_path`: its path with
 * ORPHAND_DATAGRAM_SUFFIX. Into buf as orphand_socket_path_resolve does. */
static inline int orphand_datagram_path(const char *stream_path, char *buf, size_t size) {
    return orphand_path_join_(buf, size, stream_path, ORPHAND_DATAGRAM_SUFFIX);
}

#endif /* ORPHAND_SOCKET_PATH_H */
