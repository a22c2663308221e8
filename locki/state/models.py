"""What the user decided, as validated models.

`DesiredState` is `sandboxes.toml`; `UserConfig` is `config.toml`; `RepoConfig` is a
repo's committed `locki.toml`. Unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from locki.core.refs import base_problem, refname_problem


def _branch(value: str | None) -> str | None:
    problem = refname_problem(value) if value is not None else None
    if problem:
        raise ValueError(f"branch `{value}` {problem} (git's rules for branch names; "
                         "and it may not start with `-`)")
    return value


def _base(value: str) -> str:
    problem = base_problem(value)
    if problem:
        raise ValueError(f"base `{value}` {problem}: give a branch, remote-tracking branch, "
                         "tag or commit id (it may not start with `-`)")
    return value


# Both reach host git's command line: a value starting with `-` would be an option.
BranchName = Annotated[str | None, AfterValidator(_branch)]
BaseRef = Annotated[str, AfterValidator(_base)]


def _absolute(value: Path) -> Path:
    if not value.is_absolute():
        raise ValueError("must be an absolute path")
    return value


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]
SandboxId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{8}$")]
RunState = Literal["running", "stopped", "removed"]
DEFAULT_IMAGE = "images:fedora/43"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Forward(_Strict):
    """Host loopback port `host` -> port `guest` inside the sandbox."""

    host: int = Field(ge=1024, le=65535, description="Port on 127.0.0.1 and ::1 (>= 1024).")
    guest: int = Field(ge=1, le=65535, description="Port inside the sandbox.")


IncludeState = Literal["present", "removed"]
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def include_name_problem(name: str) -> str | None:
    """Why `name` cannot name an include folder (`.locki/include/<name>`), or None."""
    if not name or name in (".", "..") or name.startswith("."):
        return "it must be a plain folder name not starting with `.`"
    if _BAD_NAME.search(name):
        return "it may not contain `/`, `\\` or control characters"
    if len(name.encode()) > 100:
        return "it is longer than 100 bytes"
    return None


class Include(_Strict):
    """Another repository's worktree grafted at `.locki/include/<name>/` in the sandbox."""

    repo: AbsolutePath = Field(
        description="Absolute path of the included repository's main checkout.")
    base: BaseRef = Field(description="The ref its branch was created from.")
    branch: BranchName = Field(
        default=None,
        description="The branch its worktree starts on (default `untitled#locki-<id>`, "
        "another `<stem>#locki-<id>` when that one is checked out elsewhere).",
    )
    state: IncludeState = Field(
        default="present", description="`removed` marks an include being taken out."
    )


class SandboxSpec(_Strict):
    """One sandbox: a worktree of `repo` on its own branch, and a container."""

    repo: AbsolutePath = Field(description="Absolute path of the primary checkout.")
    base: BaseRef = Field(description="The ref the sandbox branch was created from.")
    image: str = Field(description="Incus image: a remote reference or a local alias.")
    state: RunState = Field(
        default="running",
        description="running or stopped; `removed` marks a sandbox being torn down.",
    )
    branch: BranchName = Field(
        default=None,
        description="The branch the worktree starts on (default `untitled#locki-<id>`). "
        "The live branch is observed: the agent may rename it to any `*#locki-<id>`.",
    )
    forwards: list[Forward] = Field(
        default_factory=list, description="Port forwards, host loopback -> sandbox."
    )
    delete_branches: bool = Field(
        default=False,
        description="With state `removed`: also delete the sandbox's `*#locki-<id>` branches.",
    )
    discard_work: bool = Field(
        default=False,
        description="With state `removed`: `locki remove --force` asked for it, so the "
        "removal goes on (after an interruption too) without asking again, even over "
        "uncommitted or unpushed work.",
    )
    include: dict[str, Include] = Field(
        default_factory=dict,
        description="Other repositories' worktrees, by folder name under `.locki/include/`.",
    )

    @field_validator("include")
    @classmethod
    def _include_names(cls, value: dict[str, Include]) -> dict[str, Include]:
        for name in value:
            problem = include_name_problem(name)
            if problem:
                raise ValueError(f"include name `{name}`: {problem}")
        return value


class DesiredState(_Strict):
    """locki's desired state (`sandboxes.toml`): one `[sandbox.<id>]` table per sandbox."""

    sandbox: dict[SandboxId, SandboxSpec] = Field(default_factory=dict)


class AiSettings(_Strict):
    harness: str | None = None


class IncusSettings(_Strict):
    network: str | None = Field(default=None, description="Bridge for the sandboxes' NIC.")
    storage_pool: str | None = Field(default=None, description="Pool for their root disks.")
    privileged: bool = Field(
        default=False,
        description="Run sandboxes as privileged containers (needed by k3s and the like). "
        "Container root is then root of the machine Incus runs on: only in the user's "
        "config, never from a repository's locki.toml.",
    )


class DaemonSettings(_Strict):
    """The host daemon's background reconcile loop."""

    reconcile_interval: float = Field(
        default=60.0, ge=0, le=86400,
        description="Seconds between passes (LOCKI_RECONCILE_INTERVAL wins); a change in "
        "the worktrees folder starts one sooner. 0 turns the background loop off.")
    idle_stop_after: float = Field(
        default=3600.0, ge=0,
        description="Stop a sandbox's container after this many seconds without use "
        "(`locki x`, bridged git, an open `incus exec`); 0 never stops one. "
        "LOCKI_IDLE_STOP_AFTER wins.")
    services_count: bool = Field(
        default=False,
        description="Count a process listening on one of the sandbox's forwarded ports "
        "inside as use, so a dev server behind a forward keeps its container running.")


class VmSettings(_Strict):
    """Size of the Lima VM (default: sized from the host). Changing it is VM drift."""

    cpus: int | None = Field(default=None, ge=1, description="CPUs of the VM.")
    memory_gib: int | None = Field(default=None, ge=1, description="Memory in GiB.")
    disk_gib: int | None = Field(default=None, ge=10, description="Disk in GiB.")


class UserConfig(_Strict):
    """The user's `config.toml`."""

    runtime: Literal["lima", "incus"] | None = Field(
        default=None, description="Where sandboxes run (LOCKI_RUNTIME and --runtime win)."
    )
    image: str | None = Field(default=None, description="Default image for new sandboxes.")
    ai: AiSettings = Field(default_factory=AiSettings)
    incus: IncusSettings = Field(default_factory=IncusSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    vm: VmSettings = Field(default_factory=VmSettings)


_FORWARD_SPEC = re.compile(r"^(?:(\d{1,5})?:)?(\d{1,5})$")


def _forward_spec(value: str) -> str:
    """`N`, `HOST:GUEST` or `:GUEST`, with ports in range (a host port >= 1024)."""
    found = _FORWARD_SPEC.fullmatch(value)
    if found is None:
        raise ValueError(f"`{value}` is not N, HOST:GUEST or :GUEST")
    host, guest = found.group(1), int(found.group(2))
    if value.count(":") == 0:
        host = found.group(2)
    if not 1 <= guest <= 65535 or (host is not None and not 1024 <= int(host) <= 65535):
        raise ValueError(f"`{value}`: ports go up to 65535, and host ports start at 1024")
    return value


ForwardSpec = Annotated[str, AfterValidator(_forward_spec)]


class RepoConfig(_Strict):
    """A repository's committed `locki.toml`. It cannot grant itself privileges."""

    forwards: list[ForwardSpec] = Field(
        default_factory=list,
        description="Default port forwards for new sandboxes: `N`, `HOST:GUEST` or `:GUEST` "
        "(a free host port is leased).",
    )
    incus_image: str | None = Field(
        default=None,
        description="Image for this repo's sandboxes: a reference (`images:debian/12`), the "
        "alias of an image in Incus, or a path/glob of a local Incus image archive relative "
        "to the repo root (the match naming the host architecture wins).",
    )
    setup: list[str] = Field(
        default_factory=list,
        description="Shell commands run once, as root, in the template this repo's sandboxes "
        "are copied from (without the worktree, which a template does not have). Changing "
        "them builds a new template for new sandboxes; existing sandboxes keep theirs.",
    )
