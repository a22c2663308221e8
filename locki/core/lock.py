"""One writer at a time: an OS-level lock that dies with its holder.

`filelock` takes a `flock` on the file, which the kernel drops when the holder exits,
however it exits. Who holds it (pid, host, command, since when) is written beside the
lock for the message a waiting command prints; a pid alone proves nothing here, since a
dead process can linger as an unreaped zombie, so liveness is the lock's, not the pid's.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from locki.core.errors import LockiError


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return "another locki command"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"`{info.get('command', 'locki')}` (pid {info.get('pid')} on {info.get('host')}, " \
           f"since {since})"


@contextmanager
def exclusive(path: Path, *, timeout: float, purpose: str) -> Iterator[None]:
    lock = FileLock(path)
    holder = path.with_name(path.name + ".holder")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"locki: waiting for {_holder(holder)} to finish {purpose}", file=sys.stderr)
        try:
            lock.acquire(timeout=timeout)
        except Timeout as exc:
            raise LockiError(
                f"{_holder(holder)} has been {purpose} for over {timeout:.0f}s",
                hint="wait for it to finish, or raise --lock-timeout",
            ) from exc
    try:
        _claim(holder)
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _claim(holder: Path, command: str | None = None) -> None:
    holder.write_text(json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(),
        "command": command or " ".join(["locki", *sys.argv[1:]])[:200], "since": time.time(),
    }))


@contextmanager
def try_exclusive(path: Path, *, command: str) -> Iterator[bool]:
    """Take the lock only if it is free at once; yields whether it was taken. `command`
    names the holder in the messages of commands that wait for it."""
    lock = FileLock(path)
    holder = path.with_name(path.name + ".holder")
    try:
        lock.acquire(blocking=False)
    except Timeout:
        yield False
        return
    try:
        _claim(holder, command)
        yield True
    finally:
        holder.unlink(missing_ok=True)
        lock.release()
