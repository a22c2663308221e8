"""One reconcile pass: read desired state, observe, plan, apply."""

from __future__ import annotations

import structlog

from locki.reconciler.apply import apply
from locki.reconciler.context import Context
from locki.reconciler.model import Observed, Plan
from locki.reconciler.observe import observe
from locki.reconciler.plan import plan
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
    with ctx.writer():
        desired, _, result = await preview(ctx, scope=scope)
        await apply(ctx, desired, result, force=force)
    return result
