"""The planner's vocabulary: the observed world, and typed actions with addresses."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from locki.reconciler.journal import Entry
from locki.resources.model import ContainerObs, Health, ProjectObs, WorktreeObs
from locki.resources.provision import Want
from locki.resources.template import TemplateObs
from locki.resources.vm import VmObs


@dataclass(frozen=True)
class Observed:
    runtime: Health
    runtime_reason: str
    project: ProjectObs
    containers: dict[str, ContainerObs] = field(default_factory=dict)
    worktrees: dict[str, WorktreeObs] = field(default_factory=dict)
    # Include worktrees, by `<sandbox id>/<include name>`.
    includes: dict[str, WorktreeObs] = field(default_factory=dict)
    # The bridge daemon: the version it answers (None: silent) and the one wanted.
    daemon: str | None = None
    daemon_wanted: str = ""
    # Per sandbox, the stamp a container with its current credential carries (None:
    # no credential issued yet).
    stamps: dict[str, str | None] = field(default_factory=dict)
    # Journal entries of the sandboxes observed: left by a run that died (or failed), or
    # (read without the writer lock) belonging to an apply running right now.
    interrupted: tuple[Entry, ...] = ()
    in_flight: tuple[Entry, ...] = ()
    # Templates of this installation, by key; per live sandbox (in scope or not), the
    # template it is copied from, or why that could not be told.
    templates: dict[str, TemplateObs] = field(default_factory=dict)
    wants: dict[str, Want] = field(default_factory=dict)
    want_problems: dict[str, str] = field(default_factory=dict)
    # The Lima VM (None: the runtime is the host's Incus) and the config hash wanted.
    vm: VmObs | None = None
    vm_wanted: str = ""
    vm_detail: str = ""  # the wanted size, for the plan's reason

    @property
    def runtime_known(self) -> bool:
        return self.runtime is Health.OK


class Kind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "noop"


SYMBOL = {
    Kind.CREATE: "+",
    Kind.UPDATE: "~",
    Kind.REPLACE: "-/+",
    Kind.DELETE: "-",
    Kind.NOOP: " ",
}


@dataclass(frozen=True)
class Action:
    address: str
    kind: Kind
    op: str
    reason: str
    sandbox: str | None = None
    destructive: bool = False
    item: str | None = None  # the sub-resource acted on: an include's name, a device's
    # Finishes an action the journal shows interrupted (its guard passed when it began),
    # or part of a removal forced with --force: run with --force, never asked again.
    resumes: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.kind.value,
            "op": self.op,
            "reason": self.reason,
            "sandbox": self.sandbox,
            "destructive": self.destructive,
            **({"item": self.item} if self.item is not None else {}),
            **({"resumes": True} if self.resumes else {}),
        }


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    unknown: tuple[str, ...] = ()  # what could not be observed, so was left alone
    interrupted: tuple[Entry, ...] = ()  # begun by a run that died; this plan finishes them
    in_flight: tuple[Entry, ...] = ()  # being applied by another command right now

    @property
    def changes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind is not Kind.NOOP)

    @property
    def runtime_unreachable(self) -> str | None:
        """Why the runtime could not be observed, when it could not (see plan.py)."""
        return next((u.removeprefix("runtime: ") for u in self.unknown
                     if u.startswith("runtime: ")), None)

    @property
    def destructive(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.destructive)

    def summary(self) -> str:
        counts = {k: sum(1 for a in self.changes if a.kind is k) for k in Kind}
        if not self.changes:
            text = "No changes: what exists matches the desired state."
        else:
            text = (
                f"Plan: {counts[Kind.CREATE]} to create, {counts[Kind.UPDATE]} to update, "
                f"{counts[Kind.REPLACE]} to replace, {counts[Kind.DELETE]} to delete."
            )
        if self.unknown:
            if not self.changes:
                text = "No changes planned."
            text += (" Not everything could be observed (" + "; ".join(self.unknown)
                     + "): nothing is destroyed until it can be.")
        if self.interrupted:
            text += (f" {len(self.interrupted)} interrupted action(s) found in the journal: "
                     "re-observed, and finished by this plan.")
        return text
