"""What drivers report about the world: observations with a closed health and a reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Health(StrEnum):
    OK = "ok"
    MISSING = "missing"
    BROKEN = "broken"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ProjectObs:
    health: Health
    reason: str
    profile_ok: bool = False


@dataclass(frozen=True)
class WorktreeObs:
    path: Path
    health: Health
    reason: str
    branch: str | None = None
    head: str | None = None
    dirty: bool | None = None
    lost_commits: int | None = None
    recorded: bool = False
    tampered: str | None = None  # what is wrong with its `.git` pointer, if anything
    hooks: str | None = None  # what is missing from its hook wiring (`resources.hooks`)

    @property
    def at_risk(self) -> str | None:
        """Why deleting this worktree would lose work, or None when it would not."""
        if self.dirty is None:
            return "its changes could not be checked"
        if self.dirty:
            return "it has uncommitted changes"
        if self.lost_commits:
            return f"{self.lost_commits} commit(s) exist on no other branch or remote"
        return None


@dataclass(frozen=True)
class ContainerObs:
    name: str
    sandbox_id: str
    running: bool
    status: str
    image: str | None
    worktree_source: str | None
    labels: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    last_started: str | None = None  # Incus' `last_used_at`: when it last started
