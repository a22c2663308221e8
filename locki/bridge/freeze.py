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
from locki.core.files import incus_socket


async def _request(method: str, path: str, body: dict[str, Any] | None = None,
                   *, socket: str | None = None) -> dict[str, Any]:
    """One HTTP/1.0 request to the Incus API on its unix socket."""
    reader, writer = await asyncio.open_unix_connection(socket or incus_socket())
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


def _cgroup(name: str, project: str) -> tuple[str, str, str, str] | None:
    """The container's freezer file (cgroup v1 or v2) if this process may write it:
    (path, frozen value, thawed value, file that reports the state)."""
    payload = f"lxc.payload.{name if project == 'default' else f'{project}_{name}'}"
    v1 = f"/sys/fs/cgroup/freezer/{payload}/freezer.state"
    if os.access(v1, os.W_OK):
        return v1, "FROZEN", "THAWED", v1
    v2 = f"/sys/fs/cgroup/{payload}"
    if os.access(f"{v2}/cgroup.freeze", os.W_OK):
        return f"{v2}/cgroup.freeze", "1", "0", f"{v2}/cgroup.events"
    return None


async def _cgroup_state(found: tuple[str, str, str, str], frozen: bool) -> None:
    """Write the freezer directly: well under a millisecond, where the API path polls
    LXC's freezer once a second and so often takes a whole second."""
    path, on, off, report = found
    want = on if frozen else off
    with open(path, "w") as handle:
        handle.write(want)
    for _ in range(5000):
        with open(report) as handle:
            text = handle.read()
        if (text.strip() == want) if report == path else (f"frozen {want}" in text):
            return
        await asyncio.sleep(0.001)
    raise LockiError(f"the container's freezer did not reach {want} (`{path}`)")


async def _state(name: str, project: str, action: str, socket: str | None) -> None:
    found = _cgroup(name, project)
    if found is not None:
        await _cgroup_state(found, action == "freeze")
        return
    answer = await _request("PUT", f"/1.0/instances/{name}/state?project={project}",
                            {"action": action, "timeout": 30}, socket=socket)
    operation = answer.get("operation")
    if operation:
        done = await _request("GET", f"{operation}/wait?timeout=30", socket=socket)
        meta = done.get("metadata") or {}
        if meta.get("status") != "Success":
            raise LockiError(f"could not {action} `{name}`: {meta.get('err') or meta}")


class Held:
    """One command's share of a container's freeze. A hook that git runs inside the
    container needs it running: `suspend` gives the share back for as long as the hook
    runs (the container thaws unless another command holds it) and `resume` takes it
    again, so a git the hook itself calls through the bridge still freezes it.

    Each change runs as a task of its own that a cancelled caller does not stop, and
    the command's end waits for it (`settled`): the share is then given back exactly
    once, however the command ended."""

    def __init__(self, freezer: Freezer, name: str, project: str) -> None:
        self._freezer, self._name, self._project = freezer, name, project
        self.suspended = False
        self._change: asyncio.Task[None] | None = None

    async def suspend(self) -> None:
        await self._run(suspend=True)

    async def resume(self) -> None:
        await self._run(suspend=False)

    async def _run(self, *, suspend: bool) -> None:
        await self.settled()
        if self.suspended == suspend:
            return
        self._change = asyncio.ensure_future(self._flip(suspend))
        await asyncio.shield(self._change)

    async def _flip(self, suspend: bool) -> None:
        if suspend:
            await self._freezer._release(self._name, self._project)
        else:
            await self._freezer._acquire(self._name, self._project)
        self.suspended = suspend

    async def settled(self) -> None:
        """Wait (uncancelled) until no change is in flight."""
        if self._change is not None and not self._change.done():
            await asyncio.wait([self._change])


class Freezer:
    """Counted freezes: the first command of a sandbox freezes it, the last one thaws it,
    so concurrent commands of one sandbox never thaw it under each other."""

    def __init__(self, socket: str | None = None) -> None:
        self.socket = socket  # the Incus API (None: where the `incus` client looks)
        self._count: dict[str, int] = {}
        self._lock: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def frozen(self, name: str, project: str) -> AsyncIterator[Held]:
        await self._acquire(name, project)
        held = Held(self, name, project)
        try:
            yield held
        finally:
            await asyncio.shield(self._give_back(held))

    async def _give_back(self, held: Held) -> None:
        await held.settled()
        if not held.suspended:
            await self._release(held._name, held._project)

    async def _acquire(self, name: str, project: str) -> None:
        async with self._lock.setdefault(name, asyncio.Lock()):
            if not self._count.get(name):
                await _state(name, project, "freeze", self.socket)
            self._count[name] = self._count.get(name, 0) + 1

    async def _release(self, name: str, project: str) -> None:
        async with self._lock.setdefault(name, asyncio.Lock()):
            self._count[name] -= 1
            if not self._count[name]:
                await _state(name, project, "unfreeze", self.socket)
