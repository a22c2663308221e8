"""Garbage: what this installation made that nothing desires any more.

`observe_leftovers` looks where locki leaves things that the regular observation does
not cover (folders in locki's worktrees folder, `*#locki-<id>` branches, desired entries
whose repository is gone); `collect` is pure and turns that, with the planner's own
deletions (orphan containers, retired sandboxes, unwanted forwards and mounts: the very
actions `plan` makes), into one plan. Only things carrying this installation's marks are
considered: containers with its labels (the observation skips all others), folders
named `<repo>-locki-<id>` in its own worktrees folder, branches ending `#locki-<id>`
whose id is in its ledger of sandboxes it created (`Paths.sandbox_ledger`): a branch
someone named so by hand, or another installation's sandbox branch, is never touched.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from locki.core import git
from locki.core.errors import LockiError
from locki.core.ids import is_sandbox_id
from locki.core.paths import Paths
from locki.reconciler.context import Context
from locki.reconciler.journal import sandbox_pending
from locki.reconciler.model import Action, Kind, Observed, Plan
from locki.reconciler.plan import plan
from locki.resources import image, worktree
from locki.resources.model import Health, WorktreeObs
from locki.state.models import DesiredState
from locki.state.store import ledger_repos, read_ledger

INCLUDES = ".include"


@dataclass(frozen=True)
class Folder:
    """A folder in locki's worktrees folder that no desired sandbox owns."""

    sandbox: str
    path: Path
    repo: Path | None  # the repository git records it in, when one does
    seen: WorktreeObs | None  # with what removing it would lose


@dataclass(frozen=True)
class Branch:
    repo: Path
    ref: str  # refs/heads/<name>#locki-<id>
    oid: str
    sandbox: str
    merged_into: str | None  # the default branch it is merged into, or None
    lost: int  # commits on no other branch, tag or remote


@dataclass(frozen=True)
class Leftovers:
    folders: tuple[Folder, ...] = ()
    branches: tuple[Branch, ...] = ()
    vanished: dict[str, str] = field(default_factory=dict)  # sandbox id -> why
    images: tuple[str, ...] = ()  # fingerprints this installation imported, now unused
    images_unknown: str | None = None  # why image use could not be told, if it could not


@dataclass(frozen=True)
class Collected:
    plan: Plan
    folders: dict[str, Folder]  # by action address
    branches: dict[str, Branch]
    images: dict[str, str] = field(default_factory=dict)  # address -> fingerprint


def collect(desired: DesiredState, observed: Observed, leftovers: Leftovers, *,
            branches: bool, pending: frozenset[str]) -> Collected:
    """The garbage plan. Pure. Anything with a pending journal entry is left alone."""
    actions = [a for a in plan(desired, observed).changes if a.kind is Kind.DELETE]
    for sid, why in sorted(leftovers.vanished.items()):
        actions += _vanished(sid, why, observed, leftovers)
    folders: dict[str, Folder] = {}
    for folder in leftovers.folders:
        action = _folder(folder, boxed=folder.sandbox in observed.containers)
        folders[action.address] = folder
        actions.append(action)
    found: dict[str, Branch] = {}
    for branch in leftovers.branches:
        action = _branch(branch, branches)
        found[action.address] = branch
        actions.append(action)
    images = {f"image.{fp[:12]}": fp for fp in leftovers.images}
    actions += [Action(address, Kind.DELETE, "gc.image", "imported by this installation "
                       "from an archive; no sandbox uses it") for address in images]
    if leftovers.images_unknown:
        actions.append(Action("image", Kind.NOOP, "gc.image",
                              f"imported images kept: {leftovers.images_unknown}"))
    held = {a.sandbox for a in actions if a.address in pending and a.sandbox is not None}
    held |= {a.sandbox for a in actions
             if a.sandbox is not None and sandbox_pending(pending, a.sandbox)}
    actions = [Action(a.address, Kind.NOOP, a.op, "an interrupted apply has a pending "
                      "journal entry for it; `locki apply` resumes it first", a.sandbox)
               if a.address in pending or a.sandbox in held else a for a in actions]
    return Collected(Plan(tuple(actions)), folders, found, images)


def _vanished(sid: str, why: str, observed: Observed, leftovers: Leftovers) -> list[Action]:
    """A desired entry whose repository is gone: its container, folder, then the entry."""
    actions = []
    box = observed.containers.get(sid)
    if box is not None:
        actions.append(Action(f"sandbox.{sid}.container", Kind.DELETE, "container.delete",
                              f"{why}; what was installed inside is lost", sid,
                              destructive=True))
    if box is not None or any(f.sandbox == sid for f in leftovers.folders):
        actions.append(Action(f"sandbox.{sid}", Kind.NOOP, "gc.entry",
                              "kept while its container or folder remain", sid))
    else:
        actions.append(Action(f"sandbox.{sid}", Kind.DELETE, "gc.entry",
                              f"{why}; nothing of it is left", sid))
    return actions


def _folder(folder: Folder, *, boxed: bool) -> Action:
    """A folder goes after its container (which mounts it): held with it when it is."""
    name = folder.path.name
    address = f"sandbox.{folder.sandbox}.folder.{name}"
    seen = folder.seen
    if seen is None or seen.health is not Health.OK:
        why = seen.reason if seen is not None else "no repository records it"
        return Action(address, Kind.DELETE, "gc.folder",
                      f"no sandbox owns it and {why}: its files would be deleted",
                      folder.sandbox, destructive=True)
    risk = seen.at_risk or ("it goes with its container" if boxed else None)
    return Action(address, Kind.DELETE, "gc.worktree",
                  f"a worktree of `{folder.repo}` no sandbox owns" + (f"; {risk}" if risk else ""),
                  folder.sandbox, destructive=risk is not None)


def _branch(branch: Branch, unmerged_too: bool) -> Action:
    name = branch.ref.removeprefix("refs/heads/")
    address = f"sandbox.{branch.sandbox}.branch.{name}"
    if branch.merged_into is not None:
        return Action(address, Kind.DELETE, "gc.branch",
                      f"`{name}` of `{branch.repo}` is merged into `{branch.merged_into}`",
                      branch.sandbox)
    if not unmerged_too:
        return Action(address, Kind.NOOP, "gc.branch",
                      f"kept: `{name}` is not merged (--branches removes it)", branch.sandbox)
    lost = f"; {branch.lost} commit(s) exist on no other branch or remote" if branch.lost else ""
    return Action(address, Kind.DELETE, "gc.branch", f"`{name}` of `{branch.repo}` is not "
                  f"merged{lost}", branch.sandbox, destructive=branch.lost > 0)


# What follows looks at the world (read-only); `collect` above decides.


def _pointer_repo(paths: Paths, path: Path) -> Path | None:
    """The repository a folder's `.git` pointer names, if that repository agrees.

    The pointer is the sandbox's to write, so it is only a hint: the named admin folder
    must record this very folder, and it must lie outside locki's data folder (where a
    sandbox can write: its worktree, includes and the shared home).
    """
    try:
        fd = os.open(path / ".git", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, 4096).decode(errors="replace").strip()
    finally:
        os.close(fd)
    admin = Path(text.removeprefix("gitdir: "))
    if not text.startswith("gitdir: /") or admin.parent.name != "worktrees":
        return None
    common = admin.parent.parent
    if common.resolve().is_relative_to(paths.data_dir.resolve()) or common.name != ".git":
        return None
    try:
        recorded = (admin / "gitdir").read_text().strip()
    except OSError:
        return None
    return common.parent if recorded == str(path / ".git") else None


def _candidates(paths: Paths, desired: DesiredState,
                observed: Observed) -> list[tuple[str, Path, Path | None]]:
    """(sandbox, folder, repo hint) for every folder of no desired sandbox."""
    out: list[tuple[str, Path, Path | None]] = []
    try:
        entries = sorted(paths.worktrees.iterdir())
    except FileNotFoundError:
        return out
    for entry in entries:
        sid = entry.name.removesuffix(INCLUDES).rpartition("-locki-")[2]
        if not is_sandbox_id(sid) or sid in desired.sandbox or entry.is_symlink():
            continue
        box = observed.containers.get(sid)
        label = box.labels.get("repo") if box is not None else None
        if entry.name.endswith(INCLUDES) and entry.is_dir():
            out += [(sid, child, _pointer_repo(paths, child))
                    for child in sorted(entry.iterdir()) if child.is_dir()]
        elif entry.is_dir():
            out.append((sid, entry, Path(label) if label else _pointer_repo(paths, entry)))
    return out


async def _images(ctx: Context, desired: DesiredState) -> tuple[tuple[str, ...], str | None]:
    """Unused images this installation imported, or why that cannot be told."""
    cache = image.FingerprintCache(ctx.paths.image_cache)
    wanted = set()
    for sid, spec in sorted(desired.sandbox.items()):
        try:
            resolved = image.resolve(spec.repo, spec.image)
            if isinstance(resolved, image.Archive):
                wanted.add(cache.get(resolved))
        except (LockiError, OSError) as exc:
            why = exc.message if isinstance(exc, LockiError) else str(exc)
            return (), f"the image of sandbox {sid} cannot be told ({why})"
    try:
        return tuple(await image.unused_own(ctx.incus, ctx.installation_id, wanted)), None
    except LockiError as exc:
        return (), exc.message


async def observe_leftovers(ctx: Context, desired: DesiredState,
                            observed: Observed) -> Leftovers:
    paths = ctx.paths
    folders = []
    for sid, path, repo in _candidates(paths, desired, observed):
        seen = None
        if repo is not None and repo.is_dir():
            seen = (await worktree.observe(repo, {sid: path}, check_work={sid: False}))[sid]
        folders.append(Folder(sid, path, repo, seen))
    vanished = {sid: f"its repository `{spec.repo}` no longer exists"
                for sid, spec in desired.sandbox.items() if not spec.repo.exists()}
    repos = {spec.repo for spec in desired.sandbox.values()} | {
        f.repo for f in folders if f.repo is not None} | {
        Path(c.labels["repo"]) for c in observed.containers.values() if "repo" in c.labels} | \
        ledger_repos(paths.sandbox_ledger)  # where removed sandboxes left their branches
    own = read_ledger(paths.sandbox_ledger) - set(desired.sandbox)
    found: list[Branch] = []
    for repo in sorted(r for r in repos if (r / ".git").is_dir()):
        found += await _branches(repo, own)
    images, images_unknown = await _images(ctx, desired)
    return Leftovers(tuple(folders), tuple(found), vanished, images, images_unknown)


async def _branches(repo: Path, own: frozenset[str]) -> list[Branch]:
    """The branches of `repo` ending `#locki-<id>` for an id in `own` (none checked out)."""
    listing = await git.git(repo, "for-each-ref", "--format=%(refname)%00%(objectname)",
                            "refs/heads/", check=False)
    trees = await git.git(repo, "worktree", "list", "--porcelain", "-z", check=False)
    checked_out = {f"refs/heads/{r.branch}" for r in worktree.parse_porcelain(trees.stdout)
                   if r.branch}
    try:
        default = await git.default_branch(repo)
    except LockiError:
        default = None  # no default branch: nothing counts as merged
    out = []
    for line in listing.stdout.splitlines():
        ref, _, oid = line.partition("\0")
        sid = ref.rpartition("#locki-")[2]
        if "#locki-" not in ref or sid not in own or ref in checked_out:
            continue
        merged = default is not None and (await git.git(
            repo, "merge-base", "--is-ancestor", oid, default, check=False)).ok
        lost = await git.git(repo, "rev-list", "--count", oid, "--not",
                             f"--exclude={ref.removeprefix('refs/heads/')}", "--branches",
                             "--remotes", "--tags", check=False)
        out.append(Branch(repo, ref, oid, sid, default if merged else None,
                          int(lost.stdout.strip() or 0) if lost.ok else 1))
    return out
