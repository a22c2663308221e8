"""A thin client for one Incus project, spoken through the `incus` command line.

The runtime decides how `incus` is reached (directly on a Linux host, or inside the
Lima VM); this client adds the project and turns failures into locki's error classes:
a daemon that is down or busy is transient, anything else is permanent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from locki.core import proc
from locki.core.errors import CommandFailed, LockiError, RuntimeUnreachable, TransientError

_TRANSIENT = (
    "database is locked",
    "instance is busy",
    "is currently being",
    "resource temporarily unavailable",
    "context deadline exceeded",
    "try again",
    # `incus exec` right after a start, while the container's init is still settling.
    "failed to retrieve pid of executing child process",
)
_UNREACHABLE = (
    "connection refused",
    "failed to connect",
    "unix.socket",
    "doesn't appear to be started",
)


class Incus:
    def __init__(self, prefix: Sequence[str], project: str) -> None:
        self.prefix = list(prefix)
        self.project = project

    def argv(self, *args: str, project: str | None = None) -> list[str]:
        return [*self.prefix, "--project", project or self.project, *args]

    async def run(self, *args: str, project: str | None = None, check: bool = True,
                  stdin: bytes | None = None) -> proc.Completed:
        result = await proc.run(self.argv(*args, project=project), stdin=stdin, check=False)
        if check and not result.ok:
            raise classify(result)
        return result

    async def query(self, path: str, *, method: str = "GET", data: Any = None,
                    missing_ok: bool = False) -> Any:
        """Call the REST API; with `missing_ok`, a 404 answers None instead of raising."""
        args = ["query", "-X", method, path]
        if data is not None:
            args += ["--data", json.dumps(data)]
        result = await proc.run([*self.prefix, *args], check=False)
        if not result.ok:
            if missing_ok and "not found" in result.stderr.lower():
                return None
            raise classify(result)
        return json.loads(result.stdout) if result.stdout.strip() else None

    async def instances(self) -> list[dict[str, Any]]:
        """Every instance of the project with its config, devices and state: one call."""
        result = await self.run("list", "--format", "json")
        data = json.loads(result.stdout)
        if not isinstance(data, list):
            raise LockiError("`incus list` returned something other than a list")
        return data


def classify(result: proc.Completed) -> LockiError:
    text = result.stderr.strip() or result.stdout.strip()
    low = text.lower()
    if any(marker in low for marker in _UNREACHABLE):
        return RuntimeUnreachable(
            f"the Incus daemon did not answer: {text.splitlines()[-1] if text else 'no output'}",
            hint="check that incusd runs (`incus info`), or run `locki doctor`",
        )
    if any(marker in low for marker in _TRANSIENT):
        return TransientError(f"Incus is busy: {text}")
    return CommandFailed(result.argv, result.returncode, text)
