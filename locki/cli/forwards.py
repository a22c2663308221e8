"""Port-forward specs (`N`, `HOST:GUEST`, `:GUEST`) turned into desired forwards.

Runs under the desired-state lock, so two commands never lease the same port. A host
port another sandbox records, or that any process listens on, is refused before
anything changes, naming the holder when known.
"""

from __future__ import annotations

from collections.abc import Sequence

from locki.core import ports
from locki.core.errors import LockiError, UsageError
from locki.state.models import DesiredState, Forward

MAX_FORWARDS = 32


def parse(spec: str) -> tuple[int | None, int]:
    host, sep, guest = spec.rpartition(":")
    try:
        if not sep:
            return int(guest), int(guest)
        return (int(host) if host else None), int(guest)
    except ValueError:
        raise UsageError(
            f"`{spec}` is not a port forward",
            hint="use N (the same port on both sides), HOST:GUEST, or :GUEST (locki picks "
            "a free host port)",
        ) from None


def drop(current: Sequence[Forward], specs: Sequence[str]) -> list[Forward]:
    """`current` without the forwards `specs` name: `HOST` by its host port, `HOST:GUEST`
    exactly, `:GUEST` by the port inside (its host port was leased, so that is the one
    the user knows). A spec that names no forward is refused: nothing is changed."""
    kept = list(current)
    for spec in specs:
        host, guest = parse(spec)
        if host is None:
            named = [f for f in kept if f.guest == guest]
        elif ":" in spec:
            named = [f for f in kept if (f.host, f.guest) == (host, guest)]
        else:
            named = [f for f in kept if f.host == host]
        if not named:
            have = ", ".join(f"{f.host}:{f.guest}" for f in current) or "none"
            raise LockiError(f"`{spec}` names no forward of this sandbox (its forwards: "
                             f"{have})", hint="`locki port-forward --list` shows them")
        kept = [f for f in kept if f not in named]
    return kept


def merge(state: DesiredState, sandbox_id: str, current: Sequence[Forward],
          specs: Sequence[str], *, lease_if_taken: bool = False) -> list[Forward]:
    """`current` plus the forwards `specs` ask for, each host port checked or leased.

    `:GUEST` for a guest port that already has a forward keeps that one (idempotent: run
    twice, it leases nothing new).

    With `lease_if_taken` (a repo's default forwards, shared by all its sandboxes), a
    host port already in use is replaced by a leased one instead of refused.
    """
    others = {f.host: sid for sid, s in state.sandbox.items() if sid != sandbox_id
              for f in s.forwards}
    result = list(current)
    for spec in specs:
        host, guest = parse(spec)
        if not 1 <= guest <= 65535:
            raise LockiError(f"`{spec}`: port {guest} inside the sandbox is out of range")
        mine = {f.host for f in result}
        if host is None and any(f.guest == guest for f in result):
            continue  # `:GUEST` again: the forward it already has is the answer
        if lease_if_taken and host is not None and (
                host in others or (host not in mine and not ports.free(host))):
            host = None
        if host is None:
            # Shortcoming: a port taken between this check and Incus binding it fails the
            # apply with Incus's error instead of leasing another; a retry needs the apply
            # to report which device failed to bind. Rare (the window is one converge).
            host = ports.lease(set(others) | mine)
        elif host < 1024:
            raise LockiError(f"`{spec}`: host ports below 1024 are refused",
                             hint="pick a host port from 1024 to 65535, or use :GUEST")
        elif host > 65535:
            raise LockiError(f"`{spec}`: host port {host} is out of range")
        elif host in others:
            raise LockiError(f"`{spec}`: host port {host} is forwarded by sandbox "
                             f"{others[host]}", hint="pick another port, or use :GUEST")
        if host in mine:
            result = [f for f in result if f.host != host]
        elif not ports.free(host):
            who = ports.holder(host) or "another process"
            raise LockiError(f"`{spec}`: host port {host} is taken by {who}",
                             hint="stop it, pick another port, or use :GUEST")
        result.append(Forward(host=host, guest=guest))
    if len(result) > MAX_FORWARDS:
        raise LockiError(f"a sandbox may have at most {MAX_FORWARDS} forwards",
                         hint="remove some with `locki port-forward --remove HOST` (or `:GUEST`)")
    return result
