"""Freezing a sandbox's container while host git works in its worktree.

Host git resolves paths in the worktree by name, and the sandbox can rename and swap
folders and symlinks there at any moment: a folder swapped for a symlink between git's
check and its open sends a read or a write outside the worktree (a race no argv check
can see). So while host git runs for a sandbox, every process of that sandbox is frozen
(the cgroup freezer, through the Incus API): the worktree holds still, and git's own
"beyond a symbolic link" checks hold. The daemon spools the command's stdin before and
its output after, since the sandbox's SSH client is frozen too.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from locki.core.errors import LockiError


def incus_socket() -> str:
    if os.environ.get("INCUS_SOCKET"):
        return os.environ["INCUS_SOCKET"]
    return os.path.join(os.environ.get("INCUS_DIR", "/var/lib/incus"), "unix.socket")


async def _request(method: str, path: str, body: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """One HTTP/1.0 request to the Incus API on its unix socket."""
    reader, writer = await asyncio.open_unix_connection(incus_socket())
    try:
        data = json.dumps(body).encode() if body is not None else b""
        writer.write(f"{method} {path} HTTP/1.0\r\nHost: incus\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                     .encode() + data)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    _, _, payload = raw.partition(b"\r\n\r\n")
    answer: dict[str, Any] = json.loads(payload)
    if answer.get("type") == "error":
        raise LockiError(f"Incus refused `{method} {path}`: {answer.get('error')}")
    return answer


async def _state(name: str, project: str, action: str) -> None:
    answer = await _request("PUT", f"/1.0/instances/{name}/state?project={project}",
                            {"action": action, "timeout": 30})
    operation = answer.get("operation")
    if operation:
        done = await _request("GET", f"{operation}/wait?timeout=30")
        meta = done.get("metadata") or {}
        if meta.get("status") != "Success":
            raise LockiError(f"could not {action} `{name}`: {meta.get('err') or meta}")


class Freezer:
    """Counted freezes: the first command of a sandbox freezes it, the last one thaws it,
    so concurrent commands of one sandbox never thaw it under each other."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._lock: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def frozen(self, name: str, project: str) -> AsyncIterator[None]:
        lock = self._lock.setdefault(name, asyncio.Lock())
        async with lock:
            if not self._count.get(name):
                await _state(name, project, "freeze")
            self._count[name] = self._count.get(name, 0) + 1
        try:
            yield
        finally:
            await asyncio.shield(self._release(name, project, lock))

    async def _release(self, name: str, project: str, lock: asyncio.Lock) -> None:
        async with lock:
            self._count[name] -= 1
            if not self._count[name]:
                await _state(name, project, "unfreeze")
