"""The planner's part for templates: build what a new container needs, collect the rest.

Pure. A template is built (or its stale steps re-run) only when this plan creates or
replaces a container from it; one that is ready stays, and so does one any live
sandbox's setup maps to, even outside the plan's scope, so the next sandbox of a repo
is a copy. A template no live sandbox maps to is deleted, unless the runtime or some
sandbox's setup could not be observed: what cannot be told is never collected.
"""

from __future__ import annotations

from collections.abc import Iterable

from locki.reconciler.model import Action, Kind, Observed
from locki.resources.provision import Want
from locki.resources.template import TemplateObs

CREATES = ("container.create", "container.replace")


def address(key: str) -> str:
    return f"template.{key}"


def needed(actions: Iterable[Action]) -> set[str]:
    """The templates this plan's new containers are copied from."""
    return {a.item for a in actions if a.op in CREATES and a.kind is not Kind.NOOP and a.item}


def plan_templates(observed: Observed, creating: set[str], retiring: set[str]) -> list[Action]:
    """`retiring`: sandboxes this plan retires, whose templates are no longer theirs."""
    if not observed.runtime_known:
        return []
    live = {sid: want for sid, want in sorted(observed.wants.items()) if sid not in retiring}
    wants = {want.key: want for want in live.values()}
    users: dict[str, list[str]] = {}
    for sid, want in live.items():
        users.setdefault(want.key, []).append(sid)
    actions = [_one(key, wants[key], observed.templates.get(key), key in creating,
                    users[key]) for key in sorted(wants)]
    for key, obs in sorted(observed.templates.items()):
        if key in wants:
            continue
        if observed.want_problems:
            why = "; ".join(f"sandbox {s}: {p}" for s, p in sorted(observed.want_problems.items()))
            actions.append(Action(address(key), Kind.NOOP, "template.delete",
                                  f"kept while a sandbox's setup cannot be read ({why})"))
        else:
            actions.append(Action(address(key), Kind.DELETE, "template.delete",
                                  f"`{obs.name}`: no sandbox uses this setup any more",
                                  item=key))
    return actions


def _one(key: str, want: Want, obs: TemplateObs | None, creating: bool,
         users: list[str]) -> Action:
    used = f"for {', '.join(users)}"
    if obs is None:
        if not creating:
            return Action(address(key), Kind.NOOP, "template.build",
                          f"built when a new sandbox needs it ({used})", item=key)
        steps = ", ".join(step.name for step in want.steps)
        return Action(address(key), Kind.CREATE, "template.build",
                      f"build from `{want.image}`: {steps} ({used})", item=key)
    stale = obs.stale(want)
    if not stale and obs.ready:
        return Action(address(key), Kind.NOOP, "template.build", f"ready ({used})", item=key)
    why = f"re-run {', '.join(stale)}" if stale else "finish the setup"
    if not creating:
        return Action(address(key), Kind.NOOP, "template.build",
                      f"{why} when a new sandbox needs it ({used})", item=key)
    return Action(address(key), Kind.UPDATE, "template.build",
                  f"{why}: the last build did not complete or the steps changed ({used})",
                  item=key)
