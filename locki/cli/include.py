"""`locki include`: another repository's worktree grafted into a sandbox.

An include is desired state (`[sandbox.<id>.include.<name>]`): a worktree of the other
repository on its own `*#locki-<id>` branch, kept beside the sandbox's worktree on the
host and mounted at `.locki/include/<name>/` inside. The bridge lets the sandbox write
only that repository's `*#locki-<id>` branches, and removing it is guarded like
removing a sandbox.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

from locki.cli.select import choose, worktree_sandbox
from locki.core import git
from locki.core.errors import LockiError, UsageError
from locki.core.paths import include_mount
from locki.reconciler.context import Context
from locki.reconciler.converge import converge
from locki.resources import worktree
from locki.resources.model import Health, WorktreeObs
from locki.state.models import Include, SandboxSpec, include_name_problem


async def cmd_include(ctx: Context, *, match: str | None, repo: Path | None, this: bool,
                      remove: str | None, show: bool, force: bool, as_json: bool) -> int:
    chosen_modes = sum([repo is not None, this, remove is not None])
    if chosen_modes > 1:
        raise UsageError("--repo, --this and --remove go one at a time")
    if this and match is None:
        raise UsageError("--this includes the current repository into another sandbox: "
                         "name it with -m SANDBOX")
    if chosen_modes == 0 and not show:
        raise UsageError("say what to include (--repo PATH, or --this -m SANDBOX), "
                         "--remove NAME, or --list")
    cwd = Path.cwd()
    chosen = await choose(ctx, match=match, new=False, cwd=cwd,
                          allow_create=repo is not None)
    sid = chosen.sandbox_id
    if remove is not None:
        await _remove(ctx, sid, remove, force=force)
    elif repo is not None or this:
        source = await _main_repo(ctx, repo if repo is not None else cwd)
        name = await _add(ctx, sid, source)
        await converge(ctx, scope=frozenset({sid}))
        now = ctx.read_desired().sandbox[sid]
        where = include_mount(ctx.worktree(sid, now), name)
        branch = now.include[name].branch or worktree.branch_name(sid)
        if not as_json:
            print(f"included `{source}` in sandbox {sid}\n  inside: {where}\n"
                  f"  branch: {branch}\n  on the host: {ctx.include(sid, now, name)}")
    final = ctx.read_desired().sandbox.get(sid)
    rows = listing(ctx, sid, final) if final is not None else []
    if as_json:
        print(json.dumps(rows, indent=2))
    elif show:
        for row in rows:
            print(f"{row['name']}: {row['repo']} on `{row['branch']}` at {row['inside']}")
        if not rows:
            print(f"sandbox {sid} has no includes", file=sys.stderr)
    return 0


def listing(ctx: Context, sid: str, spec: SandboxSpec,
            live: Mapping[str, WorktreeObs] | None = None) -> list[dict[str, str]]:
    """The sandbox's includes as `locki list --json` and `include --list` show them: the
    live branch when observed (`live`, by `<id>/<name>`), else the one it started on."""
    root = ctx.worktree(sid, spec)
    rows = []
    for name, inc in sorted(spec.include.items()):
        seen = (live or {}).get(f"{sid}/{name}")
        branch = seen.branch if seen is not None and seen.health is Health.OK else None
        rows.append({"name": name, "repo": str(inc.repo), "state": inc.state,
                     "branch": branch or inc.branch or worktree.branch_name(sid),
                     "inside": str(include_mount(root, name)),
                     "worktree": str(ctx.include(sid, spec, name))})
    return rows


async def _main_repo(ctx: Context, path: Path) -> Path:
    """The main checkout of the repository holding `path` (a linked worktree's too).

    A sandbox's worktree is resolved through locki's records, never through its `.git`
    pointer, which the sandbox can rewrite.
    """
    if not path.is_dir():
        raise LockiError(f"`{path}` is not a folder", hint="give the path of a git checkout")
    desired = ctx.read_desired()
    owner = worktree_sandbox(ctx, desired, path)
    if owner is not None:
        return desired.sandbox[owner].repo.resolve()
    if path.resolve().is_relative_to(ctx.paths.worktrees.resolve()):
        raise LockiError(f"`{path}` is inside locki's worktrees folder but belongs to no "
                         "sandbox", hint="give the path of the repository's main checkout")
    try:
        return (await git.primary_repo(path.resolve())).resolve()
    except LockiError as exc:
        if "bare" in exc.message:
            raise
        raise LockiError(f"`{path}` is not inside a git repository",
                         hint="give the path of a git checkout to include") from None


def unique_name(wanted: str, taken: set[str]) -> str:
    """`wanted` made a valid include name that no other include of the sandbox has."""
    base = wanted.lstrip(".") or "repo"
    if include_name_problem(base):
        base = "".join(c if c.isprintable() and c not in "/\\" else "-" for c in base)[:80]
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


async def _free_branch(repo: Path, sid: str) -> str | None:
    """The branch the include starts on: `untitled#locki-<id>`, or a variant of it when
    that one is checked out in another worktree (git allows a branch in one place)."""
    listing = await git.git(repo, "worktree", "list", "--porcelain", "-z")
    busy = {r.branch for r in worktree.parse_porcelain(listing.stdout) if r.branch}
    default = worktree.branch_name(sid)
    if default not in busy:
        return None
    n = 2
    while f"untitled-{n}#locki-{sid}" in busy:
        n += 1
    return f"untitled-{n}#locki-{sid}"


async def _add(ctx: Context, sid: str, source: Path) -> str:
    spec = ctx.read_desired().sandbox[sid]
    if source == spec.repo.resolve():
        raise LockiError(f"`{source}` is sandbox {sid}'s own repository",
                         hint="an include is another repository; `locki x -n` makes a "
                         "second sandbox of this one")
    base = await git.default_branch(source)
    branch = await _free_branch(source, sid)
    with ctx.state.edit() as editor:
        current = editor.state.sandbox.get(sid)
        if current is None or current.state == "removed":
            raise LockiError(f"sandbox {sid} is being removed")
        for name, inc in current.include.items():
            if inc.repo == source and inc.state == "present":
                raise LockiError(f"`{source}` is already included in sandbox {sid} as "
                                 f"`{name}`", hint=f"remove it first: locki include "
                                 f"--remove '{name}' -m {sid}")
        name = unique_name(source.name, set(current.include))
        editor.add_include(sid, name, Include(repo=source, base=base, branch=branch))
    return name


async def work_at_risk(ctx: Context, sid: str, spec: SandboxSpec, name: str, *,
                       branches_go: bool) -> str | None:
    """What removing include `name` would lose (uncommitted changes, commits on no other
    ref; its `*#locki-<id>` branches not counted when `branches_go`), or None."""
    include = spec.include[name]
    path = ctx.include(sid, spec, name)
    key = f"{sid}/{name}"
    found = await worktree.observe(include.repo, {key: path}, check_work={key: branches_go})
    risk = found[key].at_risk if found[key].health is Health.OK else None
    return f"{risk} (worktree `{path}`)" if risk else None


async def _remove(ctx: Context, sid: str, name: str, *, force: bool) -> None:
    spec = ctx.read_desired().sandbox[sid]
    include = spec.include.get(name)
    if include is None:
        known = ", ".join(f"`{n}`" for n in sorted(spec.include)) or "none"
        raise LockiError(f"sandbox {sid} has no include `{name}`",
                         hint=f"its includes: {known}")
    risk = await work_at_risk(ctx, sid, spec, name, branches_go=False)
    if risk and not force:
        raise LockiError(f"include `{name}` would lose work: {risk}",
                         hint="commit and push, or pass --force to remove it anyway")
    with ctx.state.edit() as editor:
        editor.set_include_state(sid, name, "removed")
    await converge(ctx, scope=frozenset({sid}), force=force)
    print(f"removed include `{name}` from sandbox {sid} (its branches are kept)")
