"""Apply: run a plan's actions through the drivers, in order, retrying only the transient.

The project comes first; then each sandbox's actions run in plan order (worktree before
container), different sandboxes concurrently with a bound. A failing sandbox does not
stop the others; all failures are reported together at the end. Each step is written
to the journal before it acts and cleared after (reconciler/journal.py), so a run that
dies is finished by the next. Ctrl-C stops at a step boundary: running steps finish,
children run in their own session so the terminal's SIGINT does not cut them short.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable

import anyio
import structlog

from locki.bridge import client
from locki.core import crash, proc
from locki.core import git as hostgit
from locki.core.errors import Interrupted, LockiError
from locki.core.paths import include_mount
from locki.core.retry import retry_transient
from locki.reconciler import templates
from locki.reconciler.context import Context
from locki.reconciler.journal import Journal
from locki.reconciler.model import SYMBOL, Action, Plan
from locki.resources import (
    bridge,
    container,
    forward,
    hooks,
    project,
    template,
    vm,
    worktree,
)
from locki.state.models import DesiredState

log = structlog.get_logger("locki.reconciler.apply")
CONCURRENCY = 4


def progress(line: str) -> None:
    """One line per step on a terminal, so a first run that takes seconds shows its work.
    Scripts (stderr not a terminal) get the structured log only."""
    if sys.stderr.isatty():
        print(f"locki: {line}", file=sys.stderr, flush=True)


class ApplyFailed(LockiError):
    def __init__(self, failures: list[tuple[Action, LockiError]]) -> None:
        lines = [f"{action.address}: {error.message}" for action, error in failures]
        super().__init__(
            f"{len(failures)} action(s) failed:\n  " + "\n  ".join(lines),
            hint=failures[0][1].hint or "fix the cause, then run `locki apply` again",
        )
        self.failures = failures


class DestroysWork(LockiError):
    """The plan holds actions that destroy work, and --force was not given."""


async def _vm_step(ctx: Context, op: str) -> None:
    limactl = ctx.limactl
    assert limactl is not None, "a VM action is only planned for the Lima runtime"
    spec = ctx.vm_spec
    if op == "vm.replace":
        await vm.delete(limactl, ctx.paths)
    if op in ("vm.create", "vm.replace"):
        await vm.create(limactl, ctx.paths, spec)
    elif op == "vm.start":
        await vm.start(limactl, spec)
    else:
        await vm.ensure_provisioned(limactl, spec)


def _step(ctx: Context, desired: DesiredState, action: Action, force: bool
          ) -> Callable[[], Awaitable[None]]:
    sid = action.sandbox
    spec = desired.sandbox.get(sid) if sid else None

    async def run() -> None:
        match action.op:
            case "vm.create" | "vm.start" | "vm.provision" | "vm.replace":
                await _vm_step(ctx, action.op)
            case "project.ensure":
                await project.ensure(ctx.incus, ctx.project)
            case "bridge.daemon":
                await client.ensure_daemon(ctx.paths)
            case "bridge.inject":
                assert sid
                await bridge.inject(ctx.incus, container.container_name(sid), sid, ctx.paths)
            case "forward.add":
                assert sid and spec
                port = int(action.address.rsplit(".", 1)[1])
                guest = next(f.guest for f in spec.forwards if f.host == port)
                await forward.ensure(ctx.incus, container.container_name(sid), port, guest,
                                     sandbox_id=sid)
            case "forward.remove":
                assert sid
                port = int(action.address.rsplit(".", 1)[1])
                await forward.remove(ctx.incus, container.container_name(sid), port,
                                     sandbox_id=sid)
            case "bridge.revoke":
                assert sid
                await bridge.revoke(ctx.paths, sid)
            case "worktree.create":
                assert sid and spec
                await worktree.create(spec.repo, ctx.worktree(sid, spec), sid, spec.base,
                                      branch=spec.branch)
                await ctx.wire_hooks(sid, spec.repo, ctx.worktree(sid, spec))
            case "worktree.restore_pointer":
                assert sid and spec
                worktree.restore_pointer(await hostgit.common_dir(spec.repo),
                                         ctx.worktree(sid, spec), sid)
                await ctx.wire_hooks(sid, spec.repo, ctx.worktree(sid, spec))
            case "worktree.hooks":
                assert sid and spec
                await ctx.wire_hooks(sid, spec.repo, ctx.worktree(sid, spec))
            case "worktree.remove":
                assert sid and spec
                top = ctx.worktree(sid, spec)
                await worktree.remove(spec.repo, top, sid, force=force)
                hooks.remove(ctx.paths.hooks_for(top), sandbox_id=sid)
                hooks.remove(ctx.paths.hooks_for(top.with_name(top.name + ".include")),
                             sandbox_id=sid)
            case "branches.delete":
                assert sid and spec
                await worktree.delete_branches(spec.repo, sid)
            case "template.build":
                assert action.item
                await templates.build(ctx, desired, action.item)
            case "template.delete":
                assert action.item
                await template.delete(ctx.incus, action.item)
            case "container.create" | "container.replace":
                assert sid and spec and action.item
                if action.op == "container.replace":
                    await container.delete(ctx.incus, container.container_name(sid),
                                           sandbox_id=sid)
                ctx.ensure_cache()
                await container.create(ctx.incus, ctx.container_spec(sid, spec),
                                       start=spec.state == "running",
                                       template=template.template_name(action.item))
            case "container.device":
                assert sid and spec
                await container.ensure_device(ctx.incus, ctx.container_spec(sid, spec))
            case "container.start":
                assert sid
                await container.ensure_running(ctx.incus, container.container_name(sid),
                                               sandbox_id=sid)
            case "container.stop":
                assert sid
                await container.ensure_stopped(ctx.incus, container.container_name(sid),
                                               sandbox_id=sid)
            case "container.delete":
                assert sid
                await container.delete(ctx.incus, container.container_name(sid), sandbox_id=sid)
            case "include.create":
                assert sid and spec and action.item
                include = spec.include[action.item]
                await worktree.create(include.repo, ctx.include(sid, spec, action.item), sid,
                                      include.base, branch=include.branch)
                await ctx.wire_hooks(sid, include.repo, ctx.include(sid, spec, action.item))
            case "include.restore_pointer":
                assert sid and spec and action.item
                include = spec.include[action.item]
                worktree.restore_pointer(await hostgit.common_dir(include.repo),
                                         ctx.include(sid, spec, action.item), sid)
                await ctx.wire_hooks(sid, include.repo, ctx.include(sid, spec, action.item))
            case "include.hooks":
                assert sid and spec and action.item
                await ctx.wire_hooks(sid, spec.include[action.item].repo,
                                     ctx.include(sid, spec, action.item))
            case "include.mount":
                assert sid and spec and action.item
                await container.ensure_include(
                    ctx.incus, ctx.container_spec(sid, spec), action.item,
                    ctx.include(sid, spec, action.item),
                    include_mount(ctx.worktree(sid, spec), action.item))
            case "include.unmount":
                assert sid and action.item
                await container.remove_device(ctx.incus, container.container_name(sid),
                                              action.item, sandbox_id=sid)
            case "include.remove":
                assert sid and spec and action.item
                path = ctx.include(sid, spec, action.item)
                await worktree.remove(spec.include[action.item].repo, path, sid, force=force)
                hooks.remove(ctx.paths.hooks_for(path), sandbox_id=sid)
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # the sandbox's includes folder, once empty
            case "include.branches":
                assert sid and spec and action.item
                await worktree.delete_branches(spec.include[action.item].repo, sid)
            case "include.forget":
                assert sid and spec and action.item
                name = action.item
                with ctx.state.edit() as editor:
                    current = editor.state.sandbox.get(sid)
                    entry = current.include.get(name) if current is not None else None
                    # Re-checked under the lock: someone may have re-included it meanwhile.
                    gone = not ctx.include(sid, spec, name).exists()
                    if entry is not None and (entry.state == "removed" or gone):
                        editor.forget_include(sid, name)
                log.info("include.forgotten", sandbox=sid, include=name, reason=action.reason)
            case "state.forget":
                assert sid and spec
                with ctx.state.edit() as editor:
                    current = editor.state.sandbox.get(sid)
                    # Re-checked under the lock: someone may have revived it meanwhile.
                    gone = not ctx.worktree(sid, spec).exists()
                    if current is not None and (current.state == "removed" or gone):
                        editor.forget(sid)
                log.info("state.forgotten", sandbox=sid, reason=action.reason)
            case other:
                raise LockiError(f"unknown action `{other}` in the plan")

    return run


class _Stop:
    """Ctrl-C during apply: the first stops at the next step boundary (each running step
    finishes, shielded), a second one cancels the running steps too."""

    def __init__(self) -> None:
        self.requested = False
        self.steps: set[anyio.CancelScope] = set()

    async def watch(self, everything: anyio.CancelScope) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; its owner handles Ctrl-C there
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                if not self.requested:
                    self.requested = True
                    log.info("apply.stopping")
                    print("locki: stopping after the running step(s); Ctrl-C again to stop "
                          "at once", file=sys.stderr, flush=True)
                    continue
                for scope in self.steps:
                    scope.shield = False
                everything.cancel()


class _Run:
    """One apply's steps: each journaled around its side effect, shielded from a first
    Ctrl-C, its failure collected (the rest of its sandbox's chain then waits)."""

    def __init__(self, ctx: Context, desired: DesiredState, force: bool) -> None:
        self.ctx = ctx
        self.desired = desired
        self.force = force
        self.journal = Journal(ctx.paths.journal)
        self.stop = _Stop()
        self.failures: list[tuple[Action, LockiError]] = []
        self.done: list[Action] = []

    async def chain(self, actions: list[Action]) -> None:
        for action in actions:
            if self.stop.requested or not await self.step(action):
                return

    async def step(self, action: Action) -> bool:
        log.info("apply.start", address=action.address, op=action.op,
                 action=action.kind.value, sandbox=action.sandbox)
        progress(f"{SYMBOL[action.kind]} {action.address}: {action.reason}")
        force = self.force or action.resumes
        entry = self.journal.begin(action, force=force)
        with anyio.CancelScope(shield=True) as scope:
            self.stop.steps.add(scope)
            try:
                await retry_transient(_step(self.ctx, self.desired, action, force))
            except LockiError as exc:
                # info, not warning: the failure is reported once, at the end.
                log.info("apply.failed", address=action.address, error=exc.message)
                self.journal.failed(entry, exc.message)
                self.failures.append((action, exc))
                return False
            finally:
                self.stop.steps.discard(scope)
        crash.reached(f"step:{action.op}")
        self.journal.done(entry)
        self.done.append(action)
        return True

    async def all(self, changes: list[Action], everything: anyio.CancelScope) -> None:
        """The project's steps first, then each sandbox's chain, a bounded few at once."""
        await self.chain([a for a in changes if a.sandbox is None])
        chains: dict[str, list[Action]] = defaultdict(list)
        for action in changes:
            if action.sandbox is not None:
                chains[action.sandbox].append(action)
        limiter = anyio.CapacityLimiter(CONCURRENCY)

        async def bounded(actions: list[Action]) -> None:
            async with limiter:
                await self.chain(actions)

        if not self.failures:
            async with anyio.create_task_group() as tg:
                for actions in chains.values():
                    tg.start_soon(bounded, actions)
        everything.cancel()  # stops the Ctrl-C watcher

    def interrupted(self, changes: list[Action]) -> Interrupted:
        failed = {action: error for action, error in self.failures}
        left = [a.address for a in changes if a not in self.done and a not in failed]
        return Interrupted(
            f"interrupted: {len(self.done)} of {len(changes)} step(s) done"
            + "".join(f"\n  done: {a.address}" for a in self.done)
            + "".join(f"\n  failed: {a.address}: {e.message}" for a, e in failed.items())
            + "".join(f"\n  not done: {address}" for address in left),
            hint="run `locki apply` to finish (or `locki plan` to see what is left)",
        )


def _resuming(ctx: Context, journal: Journal, plan: Plan) -> None:
    """Say what a dead run left; drop drafts of files whose writer died mid-write."""
    journal.tidy()
    ctx.state.tidy()
    for entry in plan.interrupted:
        log.info("apply.resuming", address=entry.address, op=entry.op,
                    sandbox=entry.sandbox, begun_by=entry.pid, failed=entry.failed)
        print(f"locki: found in the journal: {entry.describe()}; resuming from what exists",
              file=sys.stderr)


async def apply(ctx: Context, desired: DesiredState, plan: Plan, *, force: bool = False) -> None:
    blocked = [a for a in plan.destructive if not force]
    if blocked:
        listing = "\n  ".join(f"{a.address}: {a.reason}" for a in blocked)
        raise DestroysWork(
            f"the plan would destroy work:\n  {listing}",
            hint="look at `locki plan`; rerun with --force if that is what you want",
        )
    if plan.changes:
        ctx.persist_identity()
    run = _Run(ctx, desired, force)
    _resuming(ctx, run.journal, plan)
    changes = list(plan.changes)
    own_session = proc.OWN_SESSION.set(True)
    try:
        async with anyio.create_task_group() as outer:
            outer.start_soon(run.stop.watch, outer.cancel_scope)
            outer.start_soon(run.all, changes, outer.cancel_scope)
    finally:
        proc.OWN_SESSION.reset(own_session)
    if run.stop.requested:
        raise run.interrupted(changes)
    # What the dead run left is converged now, except in a sandbox that failed again:
    # those entries stay for the next run (and keep `locki gc` away).
    failed = {a.sandbox for a, _ in run.failures}
    run.journal.clear(e for e in plan.interrupted
                      if None not in failed and e.sandbox not in failed)
    if run.failures:
        raise ApplyFailed(run.failures)
    if plan.changes:
        log.info("apply.done", changes=len(plan.changes))
