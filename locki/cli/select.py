"""Choosing the sandbox a command acts on (shared by every such command).

Inside a worktree folder: that sandbox. `-m`: an id prefix, else a branch substring.
`-n`: a new one. Otherwise, in a repository: its only sandbox, a new one when it has
none, and with several a picker on a TTY or an error naming the candidates.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from locki.cli import forwards
from locki.core import git
from locki.core.errors import LockiError, RuntimeUnreachable, UsageError
from locki.core.ids import is_sandbox_id, new_id
from locki.reconciler.context import Context
from locki.reconciler.observe import observe
from locki.resources import image as images
from locki.resources import vm
from locki.resources.model import Health
from locki.state.models import DEFAULT_IMAGE, DesiredState, RepoConfig, SandboxSpec, UserConfig
from locki.state.store import load


@dataclass(frozen=True)
class Chosen:
    sandbox_id: str
    spec: SandboxSpec
    created: bool = False


def worktree_sandbox(ctx: Context, desired: DesiredState, cwd: Path) -> str | None:
    """The sandbox whose worktree folder holds `cwd`, if any."""
    try:
        rel = cwd.resolve().relative_to(ctx.paths.worktrees.resolve())
    except ValueError:
        return None
    if not rel.parts:
        return None
    folder = rel.parts[0].removesuffix(".include")  # an include's folder: its sandbox
    _, sep, sid = folder.rpartition("-locki-")
    if sep and is_sandbox_id(sid) and sid in desired.sandbox:
        return sid
    return None


def resolve_image(repo: Path, config: UserConfig) -> str:
    """LOCKI_IMAGE, then the repo's `incus_image`, then the user's default, then Fedora."""
    from_env = os.environ.get("LOCKI_IMAGE")
    if from_env:
        return from_env
    repo_config = load(repo / "locki.toml", RepoConfig)
    return repo_config.incus_image or config.image or DEFAULT_IMAGE


async def create(ctx: Context, cwd: Path, *, branch_stem: str | None = None,
                 unless_one_exists: bool = False, stopped: bool = False) -> Chosen:
    """Add a new sandbox of the repository holding `cwd` to the desired state.

    With `unless_one_exists`, a sandbox of the repo that another command added meanwhile
    (checked under the lock) is returned instead: two `locki x` at once make one sandbox.
    """
    repo = await git.primary_repo(cwd)
    base = await git.default_branch(repo)
    image = resolve_image(repo, ctx.config)
    # A bad path, glob or image name fails here, before anything is written.
    resolved = images.resolve(repo, image)
    if isinstance(resolved, str):
        await _check_image(ctx, resolved)
    with ctx.state.edit() as editor:
        if unless_one_exists:
            mine = {k: v for k, v in _live(editor.state).items() if v.repo == repo}
            if len(mine) == 1:
                return Chosen(*next(iter(mine.items())))
        sandbox_id = new_id()
        while sandbox_id in editor.state.sandbox:
            sandbox_id = new_id()
        branch = None
        if branch_stem is not None:
            branch = f"{branch_stem}#locki-{sandbox_id}"
            if not await git.valid_branch_name(branch):
                raise LockiError(
                    f"`{branch_stem}` cannot start a branch name: `{branch}` breaks git's "
                    "rules for branch names",
                    hint="use letters, digits, `-`, `_`, `/` and `.` (no `..`, spaces or `~^:?*[`)",
                )
        spec = SandboxSpec(repo=repo, base=base, image=image, branch=branch,
                           state="stopped" if stopped else "running")
        defaults = load(repo / "locki.toml", RepoConfig).forwards
        if defaults:
            spec = spec.model_copy(update={"forwards": forwards.merge(
                editor.state, sandbox_id, [], defaults, lease_if_taken=True)})
        editor.add(sandbox_id, spec)
        if spec.forwards:
            editor.set_forwards(sandbox_id, spec.forwards)
    return Chosen(sandbox_id, spec, created=True)


async def _check_image(ctx: Context, reference: str) -> None:
    """Refuse an image Incus does not have, when Incus can be asked.

    # Shortcoming: while the runtime (or locki's VM) is down nobody can be asked: the
    # sandbox is then recorded and `locki apply` names a bad image when it creates it.
    # It can go once images are checked by the plan itself.
    """
    limactl = ctx.limactl
    if limactl is not None:
        machine = await vm.observe(limactl, ctx.vm_spec)
        if not machine.running or machine.pending:
            return
    try:
        await images.check_known(ctx.incus, reference)
    except RuntimeUnreachable:
        return


def _live(desired: DesiredState) -> dict[str, SandboxSpec]:
    return {k: v for k, v in desired.sandbox.items() if v.state != "removed"}


async def _by_branch(ctx: Context, desired: DesiredState, text: str,
                     candidates: dict[str, SandboxSpec]) -> list[str]:
    observed = await observe(ctx, DesiredState(sandbox=candidates),
                             scope=frozenset(candidates))
    # The `#locki-<id>` suffix every branch shares is not matched: `-m locki` would
    # otherwise match them all.
    return [
        sid for sid, obs in observed.worktrees.items()
        if obs.health is Health.OK and obs.branch
        and text in obs.branch.rsplit("#locki-", 1)[0]
    ]


async def _current_repo(cwd: Path) -> Path | None:
    try:
        return await git.primary_repo(cwd)
    except LockiError:
        return None


NEW = "(a new sandbox)"


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


async def pick(ctx: Context, candidates: dict[str, SandboxSpec], *, cwd: Path,
               allow_create: bool) -> Chosen:
    """Ask on the terminal which sandbox (or a new one); never called without a TTY."""
    import questionary  # only here: a picker is rare, and its import is not free

    observed = await observe(ctx, DesiredState(sandbox=candidates), scope=frozenset(candidates))
    choices = []
    for sid, spec in sorted(candidates.items()):
        obs = observed.worktrees.get(sid)
        branch = obs.branch if obs and obs.branch else (obs.reason if obs else "?")
        choices.append(questionary.Choice(f"{sid}  {branch}  ({spec.repo.name})", value=sid))
    if allow_create:
        choices.append(questionary.Choice(NEW, value=NEW))
    if not choices:
        raise LockiError("there are no sandboxes to choose from",
                         hint="`locki x` in a repository creates one")
    answer = await questionary.select("Which sandbox?", choices=choices).ask_async()
    if answer is None:
        raise KeyboardInterrupt
    if answer == NEW:
        return await create(ctx, cwd)
    return Chosen(answer, candidates[answer])


async def choose(
    ctx: Context, *, match: str | None, new: bool, cwd: Path, allow_create: bool = True,
    interactive: bool = False, removing_too: bool = False,
) -> Chosen:
    if match is not None and not match.strip():
        raise UsageError("-m needs an id prefix or part of a branch name, not nothing")
    if new and (match is not None or interactive):
        raise UsageError("-n makes a new sandbox: it goes with neither -m nor -i")
    desired = ctx.read_desired()
    # `remove` may finish a removal that was interrupted; nothing else acts on those.
    live = dict(desired.sandbox) if removing_too else _live(desired)
    if new:
        return await create(ctx, cwd)
    if interactive:
        if not _tty():
            raise LockiError("-i needs a terminal to ask on",
                             hint="pick the sandbox with -m ID instead")
        repo = await _current_repo(cwd)
        mine = {k: v for k, v in live.items() if v.repo == repo} if repo else live
        return await pick(ctx, mine, cwd=cwd, allow_create=allow_create and repo is not None)
    if match is None:
        here = worktree_sandbox(ctx, desired, cwd)
        if here is not None and here in live:
            return Chosen(here, live[here])
    if match is not None:
        return await _match(ctx, desired, live, match, cwd)
    repo = await _current_repo(cwd)
    if repo is None:
        raise LockiError(
            f"`{cwd}` is not inside a git repository or a locki worktree",
            hint="cd into a repository, or pick a sandbox with -m ID",
        )
    mine = {sid: s for sid, s in live.items() if s.repo == repo}
    if not mine:
        if not allow_create:
            raise LockiError(f"`{repo}` has no sandbox", hint="create one with `locki new`")
        chosen = await create(ctx, cwd, unless_one_exists=True)
        if chosen.created:
            print(f"locki: created sandbox {chosen.sandbox_id} for {repo}", file=sys.stderr)
        return chosen
    if len(mine) == 1:
        sid, spec = next(iter(mine.items()))
        return Chosen(sid, spec)
    if _tty():
        return await pick(ctx, mine, cwd=cwd, allow_create=allow_create)
    listing = ", ".join(sorted(mine))
    raise LockiError(
        f"`{repo}` has {len(mine)} sandboxes: {listing}",
        hint="pick one with -m ID (an id prefix or part of its branch)"
        + (", or -n for a new one" if allow_create else ""),
    )


async def _match(ctx: Context, desired: DesiredState, live: dict[str, SandboxSpec],
                 text: str, cwd: Path) -> Chosen:
    by_id = [sid for sid in live if sid.startswith(text)]
    if len(by_id) == 1:
        return Chosen(by_id[0], live[by_id[0]])
    hits = by_id
    if not hits:
        repo = await _current_repo(cwd)
        mine = {k: v for k, v in live.items() if v.repo == repo}
        hits = await _by_branch(ctx, desired, text, mine) if mine else []
        if not hits:
            hits = await _by_branch(ctx, desired, text, live)
    if len(hits) == 1:
        return Chosen(hits[0], live[hits[0]])
    if not hits:
        raise LockiError(
            f"no sandbox matches `{text}` (by id prefix or branch)",
            hint="`locki list` shows the sandboxes and their branches",
        )
    raise LockiError(
        f"`{text}` matches {len(hits)} sandboxes: {', '.join(sorted(hits))}",
        hint="give more of the id or the branch name",
    )
