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
    base: str = Field(description="The ref its branch was created from.")
    branch: str | None = Field(
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
    base: str = Field(description="The ref the sandbox branch was created from.")
    image: str = Field(description="Incus image: a remote reference or a local alias.")
    state: RunState = Field(
        default="running",
        description="running or stopped; `removed` marks a sandbox being torn down.",
    )
    branch: str | None = Field(
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
    vm: VmSettings = Field(default_factory=VmSettings)


class RepoConfig(_Strict):
    """A repository's committed `locki.toml`. It cannot grant itself privileges."""

    forwards: list[str] = Field(
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
