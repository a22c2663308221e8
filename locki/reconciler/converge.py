"""One reconcile pass: read desired state, observe, plan, apply."""

from __future__ import annotations

from contextlib import ExitStack

import structlog

from locki.core.lock import LockTimeout
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
    """Converge after a command edited the desired state (the edit stays if this fails)."""
    with ExitStack() as held:
        try:
            held.enter_context(ctx.writer())
        except LockTimeout as exc:
            raise LockTimeout(exc.message, hint="the change is saved in the desired state; "
                              "`locki apply` makes it so once that command is done") from exc
        desired, _, result = await preview(ctx, scope=scope)
        await apply(ctx, desired, result, force=force)
    return result
