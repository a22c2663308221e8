"""Observation: what exists, in a handful of calls, reported rather than raised.

One API call for the project, one listing of its instances, one `git worktree list`
per repository. A runtime that does not answer makes the containers unknown (never
"absent"), so the planner destroys nothing.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import anyio
import structlog

from locki.bridge import client, server
from locki.core.errors import LockiError, RuntimeUnreachable
from locki.reconciler.context import Context
from locki.reconciler.model import Observed
from locki.resources import bridge, container, project, vm, worktree
from locki.resources.model import ContainerObs, Health, ProjectObs, WorktreeObs
from locki.resources.vm import VmObs
from locki.state.models import DesiredState

log = structlog.get_logger("locki.reconciler.observe")


async def _runtime(ctx: Context, machine: VmObs | None
                   ) -> tuple[Health, str, ProjectObs, dict[str, ContainerObs]]:
    if machine is not None and machine.health is Health.MISSING:
        # No VM, so nothing in it: known to be empty, not unknown (what a deleted VM
        # held went with it). The plan creates the VM first and the rest after it.
        return Health.OK, "no VM yet", ProjectObs(Health.MISSING, "no VM yet"), {}
    if machine is not None and (not machine.running or machine.pending):
        # Incus lives in the VM: until it runs, provisioned, nothing in it can be seen.
        why = (f"the VM waits for provisioning ({', '.join(machine.pending)})"
               if machine.running else f"the VM is not running ({machine.reason})")
        return Health.UNKNOWN, why, ProjectObs(Health.UNKNOWN, why), {}
    try:
        proj = await project.observe(ctx.incus, ctx.project)
        containers: dict[str, ContainerObs] = {}
        if proj.health is Health.OK:
            for instance in await ctx.incus.instances():
                obs = container.parse(instance, ctx.installation_id)
                if obs is not None:
                    containers[obs.sandbox_id] = obs
    except RuntimeUnreachable as exc:
        return Health.UNKNOWN, exc.message, ProjectObs(Health.UNKNOWN, exc.message), {}
    except LockiError as exc:
        return Health.UNKNOWN, exc.message, ProjectObs(Health.UNKNOWN, exc.message), {}
    return Health.OK, "reachable", proj, containers


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
    runtime: list[tuple[Health, str, ProjectObs, dict[str, ContainerObs]]] = []

    async def observe_repo(repo: Path, expected: dict[str, Path]) -> None:
        found = await worktree.observe(repo, expected, check_work=retiring)
        worktrees.update(found)

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
        if live:
            tg.start_soon(observe_daemon)
        for repo, expected in by_repo.items():
            tg.start_soon(observe_repo, repo, expected)

    health, reason, proj, containers = runtime[0]
    if scope is not None:
        containers = {sid: c for sid, c in containers.items() if sid in scope}
    stamps = {sid: bridge.expected_stamp(ctx.paths, sid)
              for sid in {*desired.sandbox, *containers}}
    log.debug("observed", runtime=health.value, containers=len(containers),
              worktrees=len(worktrees), daemon=daemon[0] if daemon else None)
    includes = {key: obs for key, obs in worktrees.items() if "/" in key}
    worktrees = {key: obs for key, obs in worktrees.items() if "/" not in key}
    return Observed(health, reason, proj, containers, worktrees, includes,
                    daemon=daemon[0] if daemon else None,
                    daemon_wanted=server.code_version() if live else "",
                    stamps=stamps, vm=machine[0],
                    vm_wanted=ctx.vm_spec.config_hash if machine[0] else "",
                    vm_detail=_size(ctx) if machine[0] else "")


def _size(ctx: Context) -> str:
    spec = ctx.vm_spec
    return (f"{spec.vm_type}, {spec.cpus} CPUs, {spec.memory_gib} GiB memory, "
            f"{spec.disk_gib} GiB disk")
