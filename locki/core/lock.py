"""One writer at a time: an OS-level lock that dies with its holder.

`filelock` takes a `flock` on the file, which the kernel drops when the holder exits,
however it exits (kill -9 included). Who holds it (pid, host, command, since when) is
written beside the lock, atomically, for the message a waiting command prints. That
record only informs: a pid proves nothing here, since a dead process can linger as an
unreaped zombie (PID 1 does not reap) and pids are reused, so liveness is the lock's.
A record left by a killed holder is simply overwritten by the next one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
from filelock import FileLock, Timeout

from locki.core.errors import LockiError
from locki.core.files import remove_stale_temporaries, write_atomically

log = structlog.get_logger("locki.lock")


class LockTimeout(LockiError):
    """Another command held the lock for longer than --lock-timeout."""


def command_line() -> str:
    """This process as a person would name it: `locki apply --force`."""
    return " ".join(["locki", *sys.argv[1:]])[:200]


def holder_path(path: Path) -> Path:
    return path.with_name(path.name + ".holder")


def describe(path: Path) -> str:
    """`locki apply (pid 12 on host, started 10:04:05)`, from the holder's record."""
    try:
        info = json.loads(holder_path(path).read_text())
        since = time.strftime("%H:%M:%S", time.localtime(float(info["since"])))
        return f"{info['command']} (pid {info['pid']} on {info['host']}, started {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another locki command"  # it took the lock and has not written its record yet


def held(path: Path) -> bool:
    """Whether some process holds the lock now, asked of the kernel, not of a pid.

    Takes a shared lock for an instant when it is free (a writer starting at that very
    moment then waits a few milliseconds), so read-only commands never block anyone.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock, if it was taken
    return False


@contextmanager
def exclusive(path: Path, *, timeout: float, purpose: str) -> Iterator[None]:
    """Hold the lock at `path`; wait up to `timeout` seconds, naming who holds it."""
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = describe(path)
        log.info("lock.waiting", lock=str(path), holder=holder, timeout=timeout)
        print(f"locki: waiting for {holder}, which is {purpose}", file=sys.stderr, flush=True)
        try:
            lock.acquire(timeout=timeout)
        except Timeout as exc:
            raise LockTimeout(
                f"gave up after {timeout:g}s waiting for {describe(path)}, which is {purpose}",
                hint="wait for it to finish, or give more time with --lock-timeout SECONDS",
            ) from exc
    try:
        _claim(path)
        yield
    finally:
        holder_path(path).unlink(missing_ok=True)
        lock.release()


def _claim(path: Path, command: str | None = None) -> None:
    """Write the holder's record beside the lock, for the messages of those who wait."""
    remove_stale_temporaries(holder_path(path))  # a holder killed mid-write left one
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "command": command or command_line(), "since": time.time()}
    write_atomically(holder_path(path), json.dumps(record).encode(), mode=0o600)


@contextmanager
def try_exclusive(path: Path, *, command: str) -> Iterator[bool]:
    """Take the lock only if it is free at once; yields whether it was taken. `command`
    names the holder in the messages of commands that wait for it."""
    lock = FileLock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        yield False
        return
    try:
        _claim(path, command)
        yield True
    finally:
        holder_path(path).unlink(missing_ok=True)
        lock.release()
