"""Observation: what exists, in a handful of calls, reported rather than raised.

One API call for the project, one listing of its instances, one `git worktree list`
per repository. A runtime that does not answer makes the containers unknown (never
"absent"), so the planner destroys nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
import structlog

from locki.bridge import client, server
from locki.core import git as hostgit
from locki.core import lock
from locki.core.errors import LockiError
from locki.reconciler import templates
from locki.reconciler.context import Context
from locki.reconciler.journal import Entry, Journal
from locki.reconciler.model import Observed
from locki.resources import bridge, container, hooks, project, template, vm, worktree
from locki.resources.model import ContainerObs, Health, ProjectObs, WorktreeObs
from locki.resources.provision import Want
from locki.resources.template import TemplateObs
from locki.resources.vm import VmObs
from locki.state.models import DesiredState

log = structlog.get_logger("locki.reconciler.observe")


@dataclass
class _Runtime:
    health: Health
    reason: str
    project: ProjectObs
    containers: dict[str, ContainerObs] = field(default_factory=dict)
    templates: dict[str, TemplateObs] = field(default_factory=dict)


async def _runtime(ctx: Context, machine: VmObs | None) -> _Runtime:
    if machine is not None and machine.health is Health.MISSING:
        # No VM, so nothing in it: known to be empty, not unknown (what a deleted VM
        # held went with it). The plan creates the VM first and the rest after it.
        return _Runtime(Health.OK, "no VM yet", ProjectObs(Health.MISSING, "no VM yet"))
    if machine is not None and (not machine.running or machine.pending):
        # Incus lives in the VM: until it runs, provisioned, nothing in it can be seen.
        why = (f"the VM waits for provisioning ({', '.join(machine.pending)})"
               if machine.running else f"the VM is not running ({machine.reason})")
        return _Runtime(Health.UNKNOWN, why, ProjectObs(Health.UNKNOWN, why))
    try:
        proj = await project.observe(ctx.incus, ctx.project)
        seen = _Runtime(Health.OK, "reachable", proj)
        if proj.health is Health.OK:
            for instance in await ctx.incus.instances():
                obs = container.parse(instance, ctx.installation_id)
                if obs is not None:
                    seen.containers[obs.sandbox_id] = obs
                made = template.parse(instance, ctx.installation_id)
                if made is not None:
                    seen.templates[made.key] = made
    except LockiError as exc:  # RuntimeUnreachable included
        return _Runtime(Health.UNKNOWN, exc.message, ProjectObs(Health.UNKNOWN, exc.message))
    return seen


async def observe(
    ctx: Context, desired: DesiredState, *, scope: frozenset[str] | None = None
) -> Observed:
    """Observe the sandboxes in `scope` (all when None) and the runtime."""
    by_repo: dict[Path, dict[str, Path]] = defaultdict(dict)
    retiring: dict[str, bool] = {}
    for sid, spec in desired.sandbox.items():
        if scope is None or sid in scope:
            by_repo[spec.repo][sid] = ctx.worktree(sid, spec)
            if spec.state == "removed":
                retiring[sid] = spec.delete_branches
            for name, include in spec.include.items():
                key = f"{sid}/{name}"
                by_repo[include.repo][key] = ctx.include(sid, spec, name)
                if spec.state == "removed" or include.state == "removed":
                    retiring[key] = spec.delete_branches

    worktrees: dict[str, WorktreeObs] = {}
    runtime: list[_Runtime] = []
    wanted: list[tuple[dict[str, Want], dict[str, str]]] = []

    async def observe_wants() -> None:
        # Every live sandbox's, in scope or not: a template one of them uses is kept.
        everything = ctx.read_desired() if scope is not None else desired
        wanted.append(await templates.wants(ctx, everything))

    async def observe_repo(repo: Path, expected: dict[str, Path]) -> None:
        found = await worktree.observe(repo, expected, check_work=retiring)
        worktrees.update(_with_hooks(ctx, found, await _hook_facts(repo)))

    machine: list[VmObs | None] = []

    async def observe_runtime() -> None:
        limactl = ctx.limactl
        machine.append(await vm.observe(limactl, ctx.vm_spec) if limactl else None)
        runtime.append(await _runtime(ctx, machine[0]))

    daemon: list[str | None] = []

    async def observe_daemon() -> None:
        daemon.append(await client.ping(ctx.paths))

    live = any(s.state != "removed" for s in desired.sandbox.values())
    async with anyio.create_task_group() as tg:
        tg.start_soon(observe_runtime)
        # Always: a scope of only removed sandboxes must still keep the others' templates.
        tg.start_soon(observe_wants)
        if live:
            tg.start_soon(observe_daemon)
        for repo, expected in by_repo.items():
            tg.start_soon(observe_repo, repo, expected)

    seen = runtime[0]
    health, reason, proj, containers = seen.health, seen.reason, seen.project, seen.containers
    if scope is not None:
        containers = {sid: c for sid, c in containers.items() if sid in scope}
    stamps = {sid: bridge.expected_stamp(ctx.paths, sid)
              for sid in {*desired.sandbox, *containers}}
    log.debug("observed", runtime=health.value, containers=len(containers),
              worktrees=len(worktrees), daemon=daemon[0] if daemon else None)
    includes = {key: obs for key, obs in worktrees.items() if "/" in key}
    worktrees = {key: obs for key, obs in worktrees.items() if "/" not in key}
    interrupted, in_flight = _journal(ctx, scope)
    return Observed(health, reason, proj, containers, worktrees, includes,
                    daemon=daemon[0] if daemon else None,
                    daemon_wanted=server.code_version() if live else "",
                    stamps=stamps, templates=seen.templates,
                    wants=wanted[0][0], want_problems=wanted[0][1],
                    interrupted=interrupted, in_flight=in_flight, vm=machine[0],
                    vm_wanted=ctx.vm_spec.config_hash if machine[0] else "",
                    vm_detail=_size(ctx) if machine[0] else "")


async def _hook_facts(repo: Path) -> tuple[Path, bool] | None:
    """`repo`'s git dir and whether it reads per-worktree config (None: no repository)."""
    try:
        common = await hostgit.common_dir(repo)
        return common, await hooks.enabled(common)
    except LockiError:
        return None


def _with_hooks(ctx: Context, found: dict[str, WorktreeObs],
                facts: tuple[Path, bool] | None) -> dict[str, WorktreeObs]:
    """Each intact worktree with what its hook wiring lacks, if anything."""
    if facts is None:
        return found
    common, worktree_config = facts
    out = {}
    for key, obs in found.items():
        if obs.health is Health.OK and obs.tampered is None:
            sid = key.partition("/")[0]
            problem = hooks.problem(common, obs.path, ctx.paths.hooks_for(obs.path),
                                    ctx.hook_trampoline(sid, common, obs.path),
                                    worktree_config=worktree_config)
            obs = replace(obs, hooks=problem)
        out[key] = obs
    return out


def _journal(ctx: Context, scope: frozenset[str] | None
             ) -> tuple[tuple[Entry, ...], tuple[Entry, ...]]:
    """(interrupted, in flight): entries are another apply's while it holds the lock."""
    entries = tuple(e for e in Journal(ctx.paths.journal).entries()
                    if scope is None or e.sandbox is None or e.sandbox in scope)
    if entries and not ctx.writing and lock.held(ctx.writer_lock):
        return (), entries
    if entries:
        log.info("journal.interrupted", actions=[e.address for e in entries])
    return entries, ()


def _size(ctx: Context) -> str:
    spec = ctx.vm_spec
    return (f"{spec.vm_type}, {spec.cpus} CPUs, {spec.memory_gib} GiB memory, "
            f"{spec.disk_gib} GiB disk")
