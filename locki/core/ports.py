"""Host ports: whether one is free on the loopback addresses, and who holds it if not.

A forward listens on 127.0.0.1 and ::1 only, so those are the addresses checked (by
binding, the only check that cannot be fooled); the holder is looked up in the kernel's
socket tables, best effort, for the message.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

LOOPBACK = (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6))
FIRST_LEASED = 20000
LAST_LEASED = 29999


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def free(port: int) -> bool:
    """Whether `port` can be listened on at every loopback address this host has."""
    for address, family in LOOPBACK:
        if family == socket.AF_INET6 and not ipv6_loopback():
            continue
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the proxy binds (Go sets it): connections a just-removed forward
            # served linger in TIME_WAIT for a minute and must not make the port taken.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


def lease(taken: set[int]) -> int:
    """A free port from locki's range that no sandbox has recorded."""
    for port in range(FIRST_LEASED, LAST_LEASED + 1):
        if port not in taken and free(port):
            return port
    raise OSError(f"no free port in {FIRST_LEASED}-{LAST_LEASED}")


def holder(port: int) -> str | None:
    """`pid N (name)` of a process listening on `port`, when the kernel tells us."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            listening = len(fields) > 9 and fields[3] == "0A"  # TCP_LISTEN
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    name = (proc / "comm").read_text().strip()
                    return f"pid {proc.name} ({name})"
        except OSError:
            continue
    return "another process"
