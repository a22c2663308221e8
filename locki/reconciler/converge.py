"""One reconcile pass: read desired state, observe, plan, apply."""

from __future__ import annotations

from contextlib import ExitStack

import structlog

from locki.core.errors import LockiError
from locki.core.lock import LockTimeout
from locki.reconciler.apply import apply
from locki.reconciler.context import Context
from locki.reconciler.model import Observed, Plan
from locki.reconciler.observe import observe
from locki.reconciler.plan import VM, plan
from locki.state.models import DesiredState

log = structlog.get_logger("locki.reconciler")


def scoped(desired: DesiredState, scope: frozenset[str] | None) -> DesiredState:
    if scope is None:
        return desired
    return DesiredState(sandbox={k: v for k, v in desired.sandbox.items() if k in scope})


async def preview(
    ctx: Context, *, scope: frozenset[str] | None = None
) -> tuple[DesiredState, Observed, Plan]:
    desired = scoped(ctx.read_desired(), scope)
    observed = await observe(ctx, desired, scope=scope)
    return desired, observed, plan(desired, observed)


async def converge(
    ctx: Context, *, scope: frozenset[str] | None = None, force: bool = False
) -> Plan:
    """Converge after a command edited the desired state (the edit stays if this fails)."""
    with ExitStack() as held:
        try:
            held.enter_context(ctx.writer())
        except LockTimeout as exc:
            raise LockTimeout(exc.message, hint="the change is saved in the desired state; "
                              "`locki apply` makes it so once that command is done") from exc
        desired, _, result = await preview(ctx, scope=scope)
        await apply(ctx, desired, result, force=force)
        return await after_vm(ctx, result, scope=scope, force=force)


async def after_vm(ctx: Context, result: Plan, *, scope: frozenset[str] | None = None,
                   force: bool = False) -> Plan:
    """What lives in the VM cannot be seen before the VM runs: once a pass changed the
    VM, a second pass (under the same lock) plans and applies the rest."""
    if not any(a.address == VM for a in result.changes):
        return result
    desired, observed, second = await preview(ctx, scope=scope)
    if not observed.runtime_known and observed.vm is not None and observed.vm.running:
        raise LockiError(
            f"the VM runs, but its Incus cannot be reached: {observed.runtime_reason}",
            hint="run `locki doctor`",
        )
    await apply(ctx, desired, second, force=force)
    return Plan(result.changes + second.actions, second.unknown)
