"""Carrying out a sandbox's `StashPlan` with host git, on its own stash ref.

git's own `stash` knows only `refs/stash`, which the user and every sandbox share; so a
stash is made with `git stash create` (the same stash commit, stored nowhere) and kept
in the reflog of the sandbox's ref, and `apply`/`show` are git's own, given that ref's
entry. `drop` is what git's does (`reflog delete --updateref --rewrite`), on that ref.
The daemon calls `run` under the sandbox's writer lock, with the sandbox frozen; each
step is host git with the daemon's hardening (`GitStep`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from locki.bridge.model import StashPlan


@dataclass(frozen=True)
class Step:
    code: int
    out: bytes = b""
    err: bytes = b""

    def then(self, other: Step) -> Step:
        return Step(other.code, self.out + other.out, self.err + other.err)


GitStep = Callable[[Sequence[str]], Awaitable[Step]]
NONE_FOUND = Step(1, err=b"No stash entries found.\n")


async def run(plan: StashPlan, git: GitStep) -> Step:
    """What the agent sees: exit code, stdout and stderr of the whole plan."""
    exists = (await git(["rev-parse", "-q", "--verify", plan.ref])).code == 0
    if plan.op == "push":
        return await _push(plan, git)
    if plan.op == "list":
        return await _list(plan, git) if exists else Step(0)
    if not exists:
        return Step(0) if plan.op == "clear" else NONE_FOUND
    if plan.op == "clear":
        return await git(["update-ref", "-d", plan.ref])
    entry = f"{plan.ref}@{{{plan.entry}}}"
    found = await git(["rev-parse", "-q", "--verify", entry])
    if found.code != 0:
        return Step(1, err=f"error: stash@{{{plan.entry}}} is not a valid reference\n"
                    .encode())
    if plan.op == "show":
        return _named(plan, await git(["stash", "show", *plan.options, entry]))
    if plan.op == "drop":
        return await _drop(plan, git, found.out.strip())
    applied = _named(plan, await git(["stash", "apply", *plan.options, entry]))
    if plan.op == "apply" or applied.code != 0:
        return applied  # git keeps the entry when a pop does not apply cleanly
    return applied.then(await _drop(plan, git, found.out.strip()))


async def _push(plan: StashPlan, git: GitStep) -> Step:
    made = await git(["stash", "create", *([plan.message] if plan.message else [])])
    commit = made.out.decode().strip()
    if made.code != 0 or not commit:
        quiet = "--quiet" in plan.options
        return made if made.code else Step(0, b"" if quiet else b"No local changes to save\n")
    subject = (await git(["log", "-1", "--format=%s", commit, "--"])).out.decode().strip()
    stored = await git(["update-ref", "--create-reflog", "-m", subject, plan.ref, commit])
    if stored.code != 0:
        return stored
    reset = await git(["reset", "--hard", "-q"])
    if reset.code != 0 or "--quiet" in plan.options:
        return reset
    return Step(0, f"Saved working directory and index state {subject}\n".encode())


async def _list(plan: StashPlan, git: GitStep) -> Step:
    listed = await git(["log", "--format=%gd: %gs", "-g", "--first-parent", "-m",
                        *plan.options, "--end-of-options", plan.ref, "--"])
    return _named(plan, listed)


async def _drop(plan: StashPlan, git: GitStep, commit: bytes) -> Step:
    entry = f"{plan.ref}@{{{plan.entry}}}"
    dropped = await git(["reflog", "delete", "--updateref", "--rewrite", entry])
    if dropped.code != 0:
        return dropped
    left = await git(["log", "-g", "--format=%H", "--end-of-options", plan.ref, "--"])
    if not left.out.strip():
        # The last entry went: git leaves the ref with an empty log; drop it, as
        # `git stash drop` does for refs/stash.
        await git(["update-ref", "-d", plan.ref])
    if "--quiet" in plan.options:
        return Step(0)
    return Step(0, f"Dropped stash@{{{plan.entry}}} ({commit.decode()})\n".encode())


def _named(plan: StashPlan, step: Step) -> Step:
    """Output with the sandbox's ref shown as `stash@{N}`, the name the agent uses."""
    full = f"{plan.ref}@{{".encode()
    short = f"{plan.ref.removeprefix('refs/')}@{{".encode()

    def rename(text: bytes) -> bytes:
        return text.replace(full, b"stash@{").replace(short, b"stash@{")

    return Step(step.code, rename(step.out), rename(step.err))
