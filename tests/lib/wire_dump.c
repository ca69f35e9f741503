/* SPDX-License-Identifier: MIT */
/* Prints what <orphand/orphand.h> defines: each ORPHAND_* constant, each struct's size and each
 * member's offset, and liborphand's text for each reason, one per line, for
 * test_python_wire.py to compare with the Python module. */
#include <stddef.h>
#include <stdio.h>

#include "orphand/orphand.h"

#define NUMBER(m) printf("macro %s %llu\n", #m, (unsigned long long)(m))
#define STRING(m) printf("string %s %s\n", #m, m)
#define SIZE(s) printf("size %s %zu\n", #s, sizeof(struct orphand_##s))
#define OFFSET(s, f) printf("offset %s %s %zu\n", #s, #f, offsetof(struct orphand_##s, f))

int main(void) {
    NUMBER(ORPHAND_ACTION_REGISTER);
    NUMBER(ORPHAND_ACTION_UNREGISTER);
    NUMBER(ORPHAND_ACTION_PING);
    NUMBER(ORPHAND_ACTION_HELLO);
    NUMBER(ORPHAND_ACTION_LIST);
    NUMBER(ORPHAND_ACTION_STATUS);
    NUMBER(ORPHAND_HELLO_MAGIC);
    NUMBER(ORPHAND_PROTOCOL_VERSION);
    NUMBER(ORPHAND_FLAG_SIGNAL);
    NUMBER(ORPHAND_FLAG_GRACE);
    NUMBER(ORPHAND_SCOPE_PROCESS);
    NUMBER(ORPHAND_SCOPE_PGROUP);
    NUMBER(ORPHAND_SCOPE_TREE);
    NUMBER(ORPHAND_SCOPE_CGROUP);
    NUMBER(ORPHAND_SCOPE_COUNT);
    NUMBER(ORPHAND_GRACE_NEVER);
    NUMBER(ORPHAND_REASON_OK);
    NUMBER(ORPHAND_REASON_PARENT_ALREADY_DEAD);
    NUMBER(ORPHAND_REASON_ALREADY_BOUND);
    NUMBER(ORPHAND_REASON_UNKNOWN_ACTION);
    NUMBER(ORPHAND_REASON_BAD_PID);
    NUMBER(ORPHAND_REASON_SAME_PROCESS);
    NUMBER(ORPHAND_REASON_PROTECTED_TARGET);
    NUMBER(ORPHAND_REASON_NO_SUCH_PROCESS);
    NUMBER(ORPHAND_REASON_NOT_PERMITTED);
    NUMBER(ORPHAND_REASON_NOT_PIDFD);
    NUMBER(ORPHAND_REASON_PIDFD_MISMATCH);
    NUMBER(ORPHAND_REASON_TOO_MANY_FDS);
    NUMBER(ORPHAND_REASON_FOREIGN_PID_NAMESPACE);
    NUMBER(ORPHAND_REASON_LIMIT_USER);
    NUMBER(ORPHAND_REASON_LIMIT_PARENT);
    NUMBER(ORPHAND_REASON_LIMIT_CONNECTIONS);
    NUMBER(ORPHAND_REASON_OUT_OF_FDS);
    NUMBER(ORPHAND_REASON_BAD_POLICY);
    NUMBER(ORPHAND_REASON_NOT_BOUND);
    NUMBER(ORPHAND_REASON_INTERNAL);
    NUMBER(ORPHAND_REASON_NOT_A_PROCESS);
    NUMBER(ORPHAND_REASON_SCOPE_REFUSED);
    NUMBER(ORPHAND_REASON_SCOPE_UNSUPPORTED);
    NUMBER(ORPHAND_REASON_CLIENT);
    NUMBER(ORPHAND_FEATURE_PEER_PIDFD);
    NUMBER(ORPHAND_FEATURE_PIDFD_INFO);
    NUMBER(ORPHAND_FEATURE_EXIT_INFO);
    NUMBER(ORPHAND_FEATURE_PIDFS_INODE);
    NUMBER(ORPHAND_FEATURE_DURABLE);
    NUMBER(ORPHAND_FEATURE_JOURNAL);
    NUMBER(ORPHAND_FEATURE_PGROUP_SIGNAL);
    NUMBER(ORPHAND_FEATURE_CGROUP);
    NUMBER(ORPHAND_STATUS_SCOPE_ALL);
    NUMBER(ORPHAND_STATUS_SCOPE_OWN);
    NUMBER(ORPHAND_COMM_LEN);
    NUMBER(ORPHAND_MAX_FDS);
    STRING(ORPHAND_SYSTEM_SOCKET);
    STRING(ORPHAND_USER_SOCKET_NAME);
    STRING(ORPHAND_DATAGRAM_SUFFIX);
    NUMBER(ORPHAND_DEFAULT_TIMEOUT_MS);
    NUMBER(ORPHAND_POLICY_SCOPE);

    SIZE(record);
    OFFSET(record, parent);
    OFFSET(record, child);
    OFFSET(record, action);

    SIZE(request);
    OFFSET(request, parent);
    OFFSET(request, child);
    OFFSET(request, action);
    OFFSET(request, seq);
    OFFSET(request, flags);
    OFFSET(request, signal);
    OFFSET(request, grace_ms);
    OFFSET(request, scope);

    SIZE(reply);
    OFFSET(reply, seq);
    OFFSET(reply, action);
    OFFSET(reply, error);
    OFFSET(reply, reason);
    OFFSET(reply, count);
    OFFSET(reply, reserved);

    SIZE(binding_info);
    OFFSET(binding_info, parent_pid);
    OFFSET(binding_info, child_pid);
    OFFSET(binding_info, registrant_uid);
    OFFSET(binding_info, registrant_pid);
    OFFSET(binding_info, signal);
    OFFSET(binding_info, grace_ms);
    OFFSET(binding_info, age_ms);
    OFFSET(binding_info, parent_comm);
    OFFSET(binding_info, child_comm);

    SIZE(binding_info2);
    OFFSET(binding_info2, info);
    OFFSET(binding_info2, scope);
    OFFSET(binding_info2, reserved);

    SIZE(status_info);
    OFFSET(status_info, version);
    OFFSET(status_info, uptime_ms);
    OFFSET(status_info, kills);
    OFFSET(status_info, parents);
    OFFSET(status_info, children);
    OFFSET(status_info, bindings);
    OFFSET(status_info, connections);
    OFFSET(status_info, features);
    OFFSET(status_info, daemon_pid);
    OFFSET(status_info, default_signal);
    OFFSET(status_info, default_grace_ms);
    OFFSET(status_info, scope);
    OFFSET(status_info, reserved);

    SIZE(policy);
    OFFSET(policy, flags);
    OFFSET(policy, signal);
    OFFSET(policy, grace_ms);
    OFFSET(policy, scope);

    /* Every reason the header names, the first few it does not, and the client's. */
    for (uint32_t r = 0; r <= ORPHAND_REASON_SCOPE_UNSUPPORTED + 3; ++r)
        printf("reason %u %s\n", (unsigned)r, orphand_reason_text(r));
    printf("reason %u %s\n", (unsigned)ORPHAND_REASON_CLIENT,
           orphand_reason_text(ORPHAND_REASON_CLIENT));
    return 0;
}
