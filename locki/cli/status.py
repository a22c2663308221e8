"""`locki status`: every sandbox's condition, read-only.

It observes and plans exactly as `locki plan` does and takes no lock: no file is
written, no git index is refreshed (host git reads run with GIT_OPTIONAL_LOCKS=0), and
a runtime that does not answer makes every sandbox Unknown (exit 4), never absent.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio

from locki.cli import include, render
from locki.core import activity
from locki.core.errors import LockiError, RuntimeUnreachable
from locki.reconciler.context import Context
from locki.reconciler.model import Observed
from locki.reconciler.observe import observe
from locki.reconciler.plan import plan
from locki.reconciler.status import Condition, SandboxCondition, conditions
from locki.resources import forward, worktree
from locki.resources.model import Health
from locki.state.models import SandboxSpec


def _when(stamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if stamp else None


def _loop(ctx: Context, observed: Observed) -> dict[str, Any]:
    """The background loop as its last report tells it (only while the daemon answers)."""
    try:
        report = json.loads(activity.loop_report(ctx.paths.state_dir).read_text())
    except (OSError, ValueError):
        report = {}
    running = observed.daemon is not None
    if not running or not isinstance(report, dict):
        report = {}
    at = report.get("at")
    return {"running": running,
            "last_pass": _when(at) if isinstance(at, (int, float)) else None,
            "result": report.get("result"), "error": report.get("error"),
            "interval": report.get("interval")}


def _loop_line(loop: dict[str, Any]) -> str:
    if not loop["running"]:
        return "background loop: not running (the bridge daemon does not answer)"
    if loop["result"] == "off":
        return "background loop: off (`[daemon] reconcile_interval = 0`)"
    if not loop["last_pass"]:
        return "background loop: no pass yet"
    error = f": {loop['error']}" if loop["error"] else ""
    every = loop["interval"]
    period = f", every {every:g}s" if isinstance(every, (int, float)) else ""
    return (f"background loop: last pass {loop['last_pass'].replace('T', ' ')} "
            f"({loop['result']}{error}){period}")


async def _dirty(spec: SandboxSpec, sid: str, observed: Observed) -> bool | None:
    seen = observed.worktrees.get(sid)
    if seen is None or seen.health is not Health.OK:
        return None
    try:
        return await worktree.is_dirty(spec.repo, seen.path)
    except LockiError:
        return None


def _row(ctx: Context, sid: str, spec: SandboxSpec | None, state: SandboxCondition,
         observed: Observed, dirty: bool | None) -> dict[str, Any]:
    box = observed.containers.get(sid)
    seen = observed.worktrees.get(sid)
    live = forward.observed(box.devices) if box is not None else {}
    return {
        "id": sid,
        "condition": state.condition.value,
        "reason": state.reason,
        "message": state.message,
        "pending": list(state.pending),
        "repo": str(spec.repo) if spec else (box.labels.get("repo") if box else None),
        "state": "unknown" if not observed.runtime_known else (box.status if box else "missing"),
        "desired": spec.state if spec else None,
        "branch": seen.branch if seen is not None and seen.health is Health.OK else None,
        "worktree": str(ctx.worktree(sid, spec)) if spec else (
            box.labels.get("worktree") if box else None),
        "dirty": dirty,
        "forwards": [{"host": f.host, "guest": f.guest,
                      "live": None if not observed.runtime_known else live.get(f.host) == f.guest}
                     for f in (spec.forwards if spec else [])],
        "includes": include.listing(ctx, sid, spec, observed.includes) if spec else [],
        "last_used": _when(activity.last_used(ctx.paths.state_dir, sid)),
    }


async def cmd_status(ctx: Context, *, as_json: bool) -> int:
    desired = ctx.read_desired()
    observed = await observe(ctx, desired)
    result = plan(desired, observed)
    found = conditions(desired, observed, result)
    dirty: dict[str, bool | None] = {}

    async def check(sid: str, spec: SandboxSpec) -> None:
        dirty[sid] = await _dirty(spec, sid, observed)

    async with anyio.create_task_group() as tg:  # one `git status` per sandbox, at once
        for sid, spec in desired.sandbox.items():
            tg.start_soon(check, sid, spec)
    rows = [_row(ctx, sid, desired.sandbox.get(sid), state, observed, dirty.get(sid))
            for sid, state in found.items()]
    if as_json:
        print(json.dumps({"runtime": {"reachable": observed.runtime_known,
                                      "reason": observed.runtime_reason},
                          "loop": _loop(ctx, observed), "sandboxes": rows}, indent=2))
    else:
        _print(rows)
        print(_loop_line(_loop(ctx, observed)))
    if not observed.runtime_known:
        raise RuntimeUnreachable(
            f"every sandbox is Unknown: {observed.runtime_reason}",
            hint="check the runtime with `incus info`; nothing was changed",
        )
    return 0


def _print(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("No sandboxes yet: `locki x` in a repository creates one.", file=sys.stderr)
        return
    shown = [{**row, "forwards": " ".join(
                 f"{f['host']}->{f['guest']}{'' if f['live'] in (True, None) else '(down)'}"
                 for f in row["forwards"]),
              "includes": " ".join(i["name"] for i in row["includes"]),
              "last use": (row["last_used"] or "").replace("T", " ").removesuffix("Z"),
              "dirty": {True: "yes", False: "no", None: "?"}[row["dirty"]]}
             for row in rows]
    columns = ["id", "condition", "reason", "state", "branch", "dirty", "forwards", "last use"]
    if any(row["includes"] for row in rows):
        columns.insert(-1, "includes")
    print(render.table(shown, columns))
    for row in rows:
        if row["condition"] != Condition.READY.value:
            print(f"  {row['id']}: {row['message']}")
