"""`locki vm status|stop|delete`: the Lima VM itself.

Stopping and deleting change the VM, never the desired state: the sandboxes stay
`running` there, so the next `locki apply` (or `locki x`) boots or rebuilds the VM and
re-creates their containers. Worktrees, the shared home and config live on the host.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from locki.core import lima
from locki.core.errors import LockiError
from locki.reconciler.context import Context
from locki.resources import vm


def _limactl(ctx: Context) -> lima.Limactl:
    limactl = ctx.limactl
    if limactl is None:
        raise LockiError(
            f"`locki vm` manages the Lima VM, but the runtime is `{ctx.runtime.name}`",
            hint="choose the Lima runtime (--runtime lima), or manage Incus directly",
        )
    return limactl


async def cmd_status(ctx: Context, *, as_json: bool) -> int:
    limactl = _limactl(ctx)
    spec = ctx.vm_spec
    obs = await vm.observe(limactl, spec)
    info: dict[str, Any] = obs.info
    doc = {
        "name": lima.INSTANCE,
        "status": obs.status.lower() if obs.status else obs.health.value,
        "reason": obs.reason,
        "lima_home": str(ctx.paths.lima_home),
        "dir": info.get("dir"),
        "vm_type": info.get("vmType"),
        "cpus": info.get("cpus"),
        "memory_gib": round(info["memory"] / vm.GIB, 1) if info.get("memory") else None,
        "disk_gib": round(info["disk"] / vm.GIB, 1) if info.get("disk") else None,
        "config_current": obs.config_hash == spec.config_hash if obs.status else None,
        "provisioning_pending": list(obs.pending),
    }
    if as_json:
        print(json.dumps(doc, indent=2))
        return 0
    if obs.status is None:
        print(f"VM: {obs.reason} (`locki apply` creates it; LIMA_HOME={ctx.paths.lima_home})")
        return 0
    print(f"VM `{lima.INSTANCE}`: {doc['status']} ({doc['vm_type']}, {doc['cpus']} CPUs, "
          f"{doc['memory_gib']} GiB memory, {doc['disk_gib']} GiB disk)")
    print(f"  LIMA_HOME: {ctx.paths.lima_home}")
    if not doc["config_current"]:
        print("  config: changed since it was built (`locki plan` shows the replace)")
    if obs.pending:
        print(f"  provisioning: not done: {', '.join(obs.pending)} (`locki apply` runs them)")
    return 0


async def cmd_stop(ctx: Context) -> int:
    limactl = _limactl(ctx)
    with ctx.writer():
        stopped = await vm.stop(limactl)
    print(f"VM `{lima.INSTANCE}`: " + ("stopped" if stopped else "was not running"))
    return 0


def _confirmed(live: list[str]) -> bool:
    """Ask on a terminal; without one, the answer is no."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print(f"Deleting the VM deletes the containers of {', '.join(live)} (what was installed "
          "in them; worktrees stay). Type `yes` to go on: ", end="", file=sys.stderr,
          flush=True)
    return sys.stdin.readline().strip() == "yes"


async def cmd_delete(ctx: Context, *, force: bool) -> int:
    limactl = _limactl(ctx)
    live = sorted(sid for sid, spec in ctx.read_desired().sandbox.items()
                  if spec.state != "removed")
    exists = await limactl.instance() is not None
    if exists and live and not force and not _confirmed(live):
        raise LockiError(
            f"deleting the VM deletes the containers of {len(live)} sandbox(es) "
            f"({', '.join(live)}) and what was installed in them",
            hint="their worktrees, the shared home and the desired state stay; "
            "rerun with --force to delete it",
        )
    with ctx.writer():
        deleted = await vm.delete(limactl, ctx.paths)
    if deleted:
        print(f"VM `{lima.INSTANCE}`: deleted with its containers; worktrees, the shared "
              "home and the desired state are kept (`locki apply` rebuilds)")
    else:
        print(f"VM `{lima.INSTANCE}`: there was none")
    return 0
