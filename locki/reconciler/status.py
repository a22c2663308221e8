"""Each sandbox's condition, derived from the observation and the plan. No I/O.

There is no second model of the world here: a sandbox is Drifted exactly when the plan
has changes for it, Orphaned when the plan retires it (or nothing desired owns its
container), Unknown when what it depends on could not be observed. Degraded marks what
the plan cannot simply converge (a folder that is not a worktree, a container in error)
or what someone tampered with. Ready is everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from locki.reconciler.model import Action, Kind, Observed, Plan
from locki.resources.model import Health
from locki.state.models import DesiredState, SandboxSpec


class Condition(StrEnum):
    READY = "Ready"
    DRIFTED = "Drifted"
    DEGRADED = "Degraded"
    ORPHANED = "Orphaned"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class SandboxCondition:
    sandbox: str
    condition: Condition
    reason: str  # one CamelCase word, for scripts
    message: str  # a sentence, for people
    pending: tuple[str, ...] = ()  # addresses of the plan's changes for this sandbox


def conditions(desired: DesiredState, observed: Observed,
               result: Plan) -> dict[str, SandboxCondition]:
    """The condition of every desired sandbox and of every container nobody desires."""
    changes: dict[str | None, list[Action]] = {}
    for action in result.changes:
        changes.setdefault(action.sandbox, []).append(action)
    shared = changes.get(None, [])
    out = {sid: _desired(sid, spec, observed, changes.get(sid, []), shared)
           for sid, spec in sorted(desired.sandbox.items())}
    for sid in sorted(set(observed.containers) - set(desired.sandbox)):
        out[sid] = SandboxCondition(
            sid, Condition.ORPHANED, "NotDesired",
            f"container `{observed.containers[sid].name}` has no entry in the desired "
            "state; `locki gc --force` removes it",
            tuple(a.address for a in changes.get(sid, [])))
    return out


def _desired(sid: str, spec: SandboxSpec, observed: Observed, own: list[Action],
             shared: list[Action]) -> SandboxCondition:
    pending = tuple(a.address for a in own)

    def made(condition: Condition, reason: str, message: str) -> SandboxCondition:
        return SandboxCondition(sid, condition, reason, message, pending)

    worktree = observed.worktrees.get(sid)
    if not observed.runtime_known:
        return made(Condition.UNKNOWN, "RuntimeUnreachable", observed.runtime_reason)
    if worktree is not None and worktree.health is Health.UNKNOWN:
        return made(Condition.UNKNOWN, "WorktreeUnobservable", worktree.reason)
    if spec.state == "removed":
        return made(Condition.ORPHANED, "BeingRemoved",
                    "removal was interrupted or waits; `locki apply` finishes it")
    if any(a.op == "state.forget" for a in own) or _retiring(own):
        return made(Condition.ORPHANED, "WorktreeDeleted",
                    "its worktree folder was deleted; the next reconcile retires it")
    if worktree is not None and worktree.health is Health.BROKEN:
        return made(Condition.DEGRADED, "WorktreeBroken", worktree.reason)
    tampered = [(f"include `{key.partition('/')[2]}`: ", seen.tampered)
                for key, seen in sorted(observed.includes.items())
                if key.partition("/")[0] == sid and seen.tampered]
    if worktree is not None and worktree.tampered:
        tampered.insert(0, ("", worktree.tampered))
    if tampered:
        return made(Condition.DEGRADED, "PointerTampered",
                    "; ".join(where + what for where, what in tampered)
                    + "; `locki apply` (or the background loop) restores it")
    box = observed.containers.get(sid)
    if box is not None and box.status == "error":
        return made(Condition.DEGRADED, "ContainerError",
                    f"container `{box.name}` is in error; see `incus info {box.name}`")
    if observed.project.health is Health.BROKEN:
        return made(Condition.DEGRADED, "ProjectUnusable", observed.project.reason)
    # A template's action concerns the sandboxes copied from it, not every sandbox.
    want = observed.wants.get(sid)
    shared = [a for a in shared if not a.op.startswith("template.")
              or (want is not None and a.op == "template.build" and a.item == want.key)]
    if own or shared:
        first = (own or shared)[0]
        listing = "; ".join(f"{a.address}: {a.kind.value} ({a.reason})" for a in own + shared)
        return made(Condition.DRIFTED, _camel(first.op), listing)
    where = f"container {box.status}" if box is not None else "no container"
    on = f", {worktree.reason}" if worktree is not None else ""
    return made(Condition.READY, "Converged", f"{where}{on}")


def _retiring(own: list[Action]) -> bool:
    return any(a.op == "container.delete" and a.kind is Kind.DELETE for a in own)


def _camel(op: str) -> str:
    """`container.start` -> `ContainerStart`."""
    return "".join(part[:1].upper() + part[1:] for part in op.replace("_", ".").split("."))
