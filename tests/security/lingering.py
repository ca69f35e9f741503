# SPDX-License-Identifier: MIT
"""A TCP socket whose last close() blocks, for the helper scripts that pass one to orphand.

Imported by client.py, dgram_attack.py and dgram_flood.py, beside which it is copied
(sectest.SHARED_FILES).
"""

import fcntl
import resource
import socket
import struct
import termios
import time


def lingering_tcp(seconds, keep):
    """A connected TCP socket on 127.0.0.1 with SO_LINGER {1, seconds} whose peer never reads
    and whose send queue is full, so that its last close() waits up to `seconds` for a FIN that
    cannot be sent. Returns (its fd, owned by the caller; the bytes stuck in its send queue).
    The peer is appended to `keep`: the caller holds it, unread, for as long as the close is to
    block (closing it resets the connection, which ends the close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        a.connect(listener.getsockname())
        b, _ = listener.accept()
    keep.append(b)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, seconds))
    a.setblocking(False)
    chunk = bytes(1 << 16)
    # Until the peer's window is shut and the send queue full: send() fails at once twice.
    refused = 0
    while refused < 2:
        try:
            a.send(chunk)
            refused = 0
        except BlockingIOError:
            refused += 1
            time.sleep(0.01)
    queued = bytearray(4)
    fcntl.ioctl(a.fileno(), termios.TIOCOUTQ, queued)  # SIOCOUTQ: bytes not yet acknowledged
    return a.detach(), struct.unpack("i", queued)[0]


def raise_fd_limit():
    """The kernel counts the fds a user has in flight in Unix sockets against the sender's
    RLIMIT_NOFILE (beyond it, sendmsg fails with ETOOMANYREFS): an attacker that queues
    datagrams of 253 fds raises its soft limit to the hard one first, as anyone may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
