"""What every subcommand handler shares: the table entry type and the argv builder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from locki.bridge.model import Caller, Decision, Denied
from locki.bridge.names import check_inside, check_rev
from locki.bridge.options import Opt, emit_options

Handler = Callable[[Sequence[str], Caller], Decision]


@dataclass(frozen=True)
class Command:
    run: Handler
    forms: tuple[str, ...]
    """Short human list of the allowed forms, shown on denial."""


def build(
    sub: Sequence[str],
    options: Sequence[tuple[Opt, str | None]],
    revs: Sequence[str] = (),
    paths: Sequence[str] | None = None,
    *,
    end_of_options: bool = True,
) -> tuple[str, ...]:
    """Canonical argv: options, then `--end-of-options` and revisions, then `-- paths`.

    `end_of_options` is False for the subcommands whose git 2.39 parser rejects it after
    options (grep, reset, checkout, blame); their positionals are still checked not to
    start with `-`, so nothing after the options can be read as one."""
    argv = [*sub, *emit_options(options)]
    if revs and end_of_options:
        argv.append("--end-of-options")
    argv.extend(revs)
    if paths:
        argv.append("--")
        argv.extend(paths)
    return tuple(argv)


def revs(values: Sequence[str], caller: Caller, what: str = "revision") -> tuple[str, ...]:
    return tuple(check_inside(check_rev(v, what), caller, what) for v in values)


def paths(values: Sequence[str], caller: Caller) -> tuple[str, ...]:
    return tuple(check_inside(v, caller) for v in values)


def no_positionals(values: Sequence[str], context: str) -> None:
    if values:
        raise Denied(f"{context} takes no arguments (got `{values[0]}`)")


def count(values: Sequence[str], low: int, high: int, what: str) -> None:
    if not low <= len(values) <= high:
        wanted = str(low) if low == high else f"{low} to {high}"
        raise Denied(f"expected {wanted} {what}, got {len(values)}")
