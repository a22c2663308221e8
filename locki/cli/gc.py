"""`locki gc`: remove what this installation made that nothing desires any more.

Observed and decided under the writer lock, like `apply` (a dry run takes none). What
the planner already knows how to delete (orphan containers, retired sandboxes, unwanted
forwards) runs through `apply`; folders, branches, images and dead entries through the
drivers here. What would lose work runs only with --force; everything else goes without
asking.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys

import structlog

from locki.cli import render
from locki.core import activity
from locki.core import git as hostgit
from locki.core.errors import LockiError, RuntimeUnreachable
from locki.reconciler import journal
from locki.reconciler.apply import apply
from locki.reconciler.context import Context
from locki.reconciler.gc import Collected, collect, observe_leftovers
from locki.reconciler.model import Action, Plan
from locki.reconciler.observe import observe
from locki.resources import hooks, image, worktree
from locki.state.models import DesiredState

log = structlog.get_logger("locki.cli.gc")


def _pending(ctx: Context) -> frozenset[str]:
    """Addresses of actions an apply began and did not finish: gc leaves their
    sandboxes alone (the next `locki apply` finishes or undoes them first)."""
    return journal.pending_addresses(ctx.paths)


async def _collect(ctx: Context, desired: DesiredState, branches: bool) -> Collected:
    observed = await observe(ctx, desired)
    if not observed.runtime_known:
        raise RuntimeUnreachable(
            f"nothing was collected: the runtime could not be observed "
            f"({observed.runtime_reason})",
            hint="what cannot be seen is never deleted; check `incus info`, then run gc again",
        )
    leftovers = await observe_leftovers(ctx, desired, observed)
    return collect(desired, observed, leftovers, branches=branches, pending=_pending(ctx))


async def _remove(ctx: Context, collected: Collected, action: Action, force: bool) -> None:
    if action.op in ("gc.worktree", "gc.folder"):
        folder = collected.folders[action.address]
        if action.op == "gc.worktree" and folder.repo is not None:
            await worktree.remove(folder.repo, folder.path, folder.sandbox, force=force)
        else:
            shutil.rmtree(folder.path)  # never follows symlinks inside
        hooks.remove(ctx.paths.hooks_for(folder.path), sandbox_id=folder.sandbox)
        if folder.path.parent != ctx.paths.worktrees:
            with contextlib.suppress(OSError):
                folder.path.parent.rmdir()  # an includes folder, once empty
            with contextlib.suppress(OSError):
                ctx.paths.hooks_for(folder.path).parent.rmdir()
        activity.forget(ctx.paths.state_dir, folder.sandbox)
    elif action.op == "gc.image":
        await image.delete(ctx.incus, collected.images[action.address])
    elif action.op == "gc.branch":
        branch = collected.branches[action.address]
        # With the old value: a branch that moved since it was looked at stays.
        await hostgit.git(branch.repo, "update-ref", "-d", branch.ref, branch.oid)
    elif action.op == "gc.entry":
        assert action.sandbox
        with ctx.state.edit() as editor:
            spec = editor.state.sandbox.get(action.sandbox)
            if spec is not None and not spec.repo.exists():  # re-checked under the lock
                editor.forget(action.sandbox)
    log.info("gc.removed", address=action.address, op=action.op, sandbox=action.sandbox,
             reason=action.reason)


async def cmd_gc(ctx: Context, *, dry_run: bool, force: bool, branches: bool,
                 as_json: bool) -> int:
    # A dry run only reads, like `locki status`: it takes no lock.
    with contextlib.nullcontext() if dry_run else ctx.writer():
        desired = ctx.read_desired()
        collected = await _collect(ctx, desired, branches)
        result = collected.plan
        held = [a for a in result.destructive if not force]
        runnable = [a for a in result.changes if not (a.destructive and not force)]
        if as_json:
            print(json.dumps({**json.loads(render.plan_json(result)), "dry_run": dry_run,
                              "held": [a.address for a in held]}, indent=2))
        else:
            print(render.plan_text(result))
        if dry_run or not runnable:
            _held(held)
            return 0
        planned = [a for a in runnable if not a.op.startswith("gc.")]
        await apply(ctx, desired, Plan(tuple(planned)), force=force)
        failures = []
        for action in runnable:
            if action.op.startswith("gc."):
                try:
                    await _remove(ctx, collected, action, force)
                except (LockiError, OSError) as exc:
                    failures.append(f"{action.address}: {exc}")
    if not as_json:
        print(f"Removed {len(runnable) - len(failures)} of {len(result.changes)}.")
    _held(held)
    if failures:
        raise LockiError("gc could not remove everything:\n  " + "\n  ".join(failures),
                         hint="fix the cause, then run `locki gc` again")
    return 0


def _held(held: list[Action]) -> None:
    if held:
        print(f"Held back (they would lose work; rerun with --force): "
              f"{', '.join(a.address for a in held)}", file=sys.stderr)

