"""Runtimes: where the Incus daemon that holds the sandboxes lives.

`incus` is the host's own daemon (Linux, an explicit choice: a weaker boundary than a
VM). `lima` runs Incus inside one Lima VM and is the default for users. The planner does
not know which one is in use; it only sees what the runtime reports.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Literal, Protocol

from locki.core.errors import LockiError, UsageError

RuntimeName = Literal["lima", "incus"]
RUNTIMES: tuple[RuntimeName, ...] = ("lima", "incus")


class Runtime(Protocol):
    @property
    def name(self) -> RuntimeName: ...

    def incus_prefix(self) -> list[str]:
        """The argv that reaches the `incus` client of this runtime."""
        ...


@dataclass(frozen=True)
class HostIncus:
    name: RuntimeName = "incus"

    def incus_prefix(self) -> list[str]:
        found = shutil.which("incus")
        if found is None:
            raise LockiError(
                "the `incus` runtime needs the `incus` client on PATH",
                hint="install Incus (Debian: apt install incus-base incus-client), "
                "or use the default `lima` runtime",
            )
        return [found]


def choose(flag: str | None, configured: str | None) -> Runtime:
    """`--runtime`, then LOCKI_RUNTIME, then the user config, then `lima`."""
    name = flag or os.environ.get("LOCKI_RUNTIME") or configured or "lima"
    if name == "incus":
        return HostIncus()
    if name == "lima":
        # Shortcoming: the Lima runtime is the next piece of work (its own issue); until
        # it lands the host's Incus must be chosen explicitly, and this says so plainly.
        raise LockiError(
            "the `lima` runtime is not available in this version of locki",
            hint="on Linux with Incus installed, choose the host runtime: "
            "LOCKI_RUNTIME=incus, --runtime incus, or runtime = \"incus\" in config.toml",
        )
    raise UsageError(
        f"unknown runtime `{name}`", hint=f"choose one of: {', '.join(RUNTIMES)}"
    )
