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


@dataclass(frozen=True)
class ContainerObs:
    name: str
    sandbox_id: str
    running: bool
    status: str
    image: str | None
    worktree_source: str | None
    labels: dict[str, str] = field(default_factory=dict)
