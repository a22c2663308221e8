"""Runtimes: where the Incus daemon that holds the sandboxes lives.

`lima` (the default) runs Incus inside one Lima VM, the security boundary: the VM sees
only the worktrees root and the shared home. `incus` is the host's own daemon (Linux, an
explicit choice: a weaker boundary); it is never chosen silently, so a Linux host without
Lima gets an error with the install hint rather than a quiet fall back to host Incus.
The planner does not know which one is in use; it only sees what the runtime reports.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from locki.core import lima
from locki.core.errors import LockiError, UsageError
from locki.core.paths import Paths

RuntimeName = Literal["lima", "incus"]
RUNTIMES: tuple[RuntimeName, ...] = ("lima", "incus")
BRIDGE_SOCKET = "bridge.sock"
VM_CACHE = "/var/cache/locki-sandboxes"  # in the Lima VM


class Runtime(Protocol):
    @property
    def name(self) -> RuntimeName: ...

    def incus_prefix(self) -> list[str]:
        """The argv that reaches the `incus` client of this runtime."""
        ...

    def bridge_socket(self, paths: Paths) -> str:
        """Where the Incus host (this machine, or the VM) reaches the bridge daemon."""
        ...

    def client_on_host(self) -> bool:
        """Whether the `incus` client runs here, so it can read (and upload) host files."""
        ...

    def cache_source(self, paths: Paths) -> str:
        """The folder, on the Incus host, that every sandbox shares as its package cache."""
        ...

    def staging_dir(self, paths: Paths) -> Path:
        """A host folder whose files the `incus` client can read, to push them from."""
        ...


def _incus_client() -> str:
    found = shutil.which("incus")
    if found is None:
        raise LockiError(
            "the `incus` runtime needs the `incus` client on PATH",
            hint="install Incus (Debian: apt install incus-base incus-client), "
            "or use the default `lima` runtime",
        )
    return found


@dataclass(frozen=True)
class HostIncus:
    name: RuntimeName = "incus"

    def incus_prefix(self) -> list[str]:
        return [_incus_client()]

    def bridge_socket(self, paths: Paths) -> str:
        return str(paths.runtime_dir / BRIDGE_SOCKET)

    def client_on_host(self) -> bool:
        return True

    def cache_source(self, paths: Paths) -> str:
        return str(paths.sandbox_cache)

    def staging_dir(self, paths: Paths) -> Path:
        return paths.cache


@dataclass(frozen=True)
class LimaVM:
    """Incus in the `locki` VM. With an `incus` client on the host, it talks to the VM's
    daemon through the socket Lima forwards (no `limactl shell` per call), under a
    private client config so the user's default remote can never be picked up instead.
    Without one, every call goes through `limactl shell` into the VM's own client."""

    paths: Paths
    name: RuntimeName = "lima"

    def incus_prefix(self) -> list[str]:
        limactl = lima.limactl()
        client = shutil.which("incus")
        if client is None:
            return [*lima.env_prefix(self.paths), limactl, "shell", "--workdir", "/",
                    lima.INSTANCE, "--", "incus"]
        return ["env", f"INCUS_SOCKET={lima.incus_socket(self.paths)}",
                f"INCUS_CONF={self.paths.lima_home / 'incus-client'}", client]

    def bridge_socket(self, paths: Paths) -> str:
        # Lima forwards the host's socket here (a reverse socket forward, see the VM
        # config): the Lima user's runtime folder exists in the guest while Lima runs.
        return f"/run/user/{os.getuid()}/locki-{BRIDGE_SOCKET}"

    def client_on_host(self) -> bool:
        return shutil.which("incus") is not None

    def cache_source(self, paths: Paths) -> str:
        # On the VM's own disk: the VM sees only the worktrees root and the shared home
        # of the host, and the caches need neither. Provisioning creates it.
        return VM_CACHE

    def staging_dir(self, paths: Paths) -> Path:
        # The VM's own client sees the host through the VM's two mounts only: stage in
        # the worktrees root (at the same path there), never in the cache folder.
        return paths.cache if self.client_on_host() else paths.worktrees


def selected(flag: str | None, configured: str | None) -> str:
    """`--runtime`, then LOCKI_RUNTIME, then the user config, then `lima`."""
    return flag or os.environ.get("LOCKI_RUNTIME") or configured or "lima"


def choose(flag: str | None, configured: str | None, paths: Paths | None = None) -> Runtime:
    name = selected(flag, configured)
    if name == "incus":
        return HostIncus()
    if name == "lima":
        lima.limactl()  # a missing limactl is named at once, with the install hint
        return LimaVM(paths or Paths.from_env())
    raise UsageError(
        f"unknown runtime `{name}`", hint=f"choose one of: {', '.join(RUNTIMES)}"
    )


def incus_api(paths: Paths, configured: str | None) -> str | None:
    """The Incus API socket the runtime answers on, for code that speaks to it directly
    (the bridge daemon's freezer): Lima's forwarded one, or None for the host's usual."""
    return str(lima.incus_socket(paths)) if selected(None, configured) == "lima" else None
