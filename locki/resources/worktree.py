"""The sandbox's git worktree, on branch `untitled#locki-<id>` until the agent renames it.

Observed from the repository side (`git worktree list --porcelain -z`), never from the
worktree's own `.git` pointer, which the sandbox can rewrite. The live branch is
observed, not desired: any `*#locki-<id>` name the agent picks is fine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from locki.core import crash, git
from locki.core.errors import LockiError, TimedOut
from locki.core.files import write_atomically
from locki.resources.model import Health, WorktreeObs

log = structlog.get_logger("locki.resources.worktree")
PARTIAL = ".partial"  # beside the worktrees: where one is built before it moves in place
STATUS_SECONDS = 120.0  # a `git status` of a worktree; generous for a big checkout


@dataclass(frozen=True)
class Record:
    path: Path
    head: str | None = None
    branch: str | None = None
    prunable: bool = False


def branch_name(sandbox_id: str) -> str:
    return f"untitled#locki-{sandbox_id}"


def parse_porcelain(output: str) -> list[Record]:
    """Records of `git worktree list --porcelain -z` (fields NUL-separated, blank between)."""
    records: list[Record] = []
    fields: dict[str, str] = {}
    for item in [*output.split("\0"), ""]:
        if item:
            key, _, value = item.partition(" ")
            fields[key] = value
            continue
        if "worktree" in fields:
            branch = fields.get("branch")
            records.append(
                Record(
                    path=Path(fields["worktree"]),
                    head=fields.get("HEAD"),
                    branch=branch.removeprefix("refs/heads/") if branch else None,
                    prunable="prunable" in fields,
                )
            )
        fields = {}
    return records


async def observe(
    repo: Path, expected: Mapping[str, Path], *, check_work: Mapping[str, bool] | None = None
) -> dict[str, WorktreeObs]:
    """The worktrees `expected` (key -> path) as the repository records them.

    A key is a sandbox id, or `<sandbox id>/<include name>` for an include's worktree
    (whose own branches are the same `*#locki-<id>`).

    For the ids in `check_work`, also what removing them would lose: uncommitted changes
    and commits on no other ref (the sandbox's own branches excluded when the flag says
    they will be deleted too).
    """
    check_work = check_work or {}
    if not repo.is_dir():
        why = f"the repository folder `{repo}` does not exist"
        return {sid: WorktreeObs(path, Health.UNKNOWN, why) for sid, path in expected.items()}
    listing = await git.git(repo, "worktree", "list", "--porcelain", "-z", check=False)
    if not listing.ok:
        why = f"cannot list worktrees of `{repo}`: {listing.stderr.strip() or 'git failed'}"
        return {sid: WorktreeObs(path, Health.UNKNOWN, why) for sid, path in expected.items()}
    records = {r.path: r for r in parse_porcelain(listing.stdout)}
    common = await git.common_dir(repo)
    result: dict[str, WorktreeObs] = {}
    for sandbox_id, path in expected.items():
        record = records.get(path)
        if record is None:
            if path.exists():
                result[sandbox_id] = WorktreeObs(
                    path, Health.BROKEN, f"`{path}` exists but is not a worktree of `{repo}`"
                )
            else:
                result[sandbox_id] = WorktreeObs(path, Health.MISSING, "no worktree yet")
            continue
        if not path.is_dir():
            result[sandbox_id] = WorktreeObs(
                path, Health.MISSING, "the folder was deleted; git still records it",
                recorded=True,
            )
            continue
        dirty = lost = None
        if sandbox_id in check_work:
            dirty = await is_dirty(repo, path)
            lost = await lost_commits(repo, record.head, sandbox_id.partition("/")[0],
                                      own_branches_go=check_work[sandbox_id])
        where = f"on branch `{record.branch}`" if record.branch else "detached HEAD"
        result[sandbox_id] = WorktreeObs(
            path, Health.OK, where, branch=record.branch, head=record.head, dirty=dirty,
            lost_commits=lost, recorded=True, tampered=pointer_problem(common, path),
        )
    return result


def pointer_problem(common: Path, path: Path) -> str | None:
    """What is wrong with the worktree's `.git` pointer, or None when it is intact.

    The sandbox can rewrite `.git` to point host git (an IDE, a shell) at a repository
    of its own making, whose config runs programs (`core.fsmonitor`). Read without
    following a symlink, and compared with what git's own records say it must be.
    """
    admin = git.admin_dir(common, path)
    if admin is None:
        return "git has no record of it"
    try:
        fd = os.open(path / ".git", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return "its `.git` pointer was removed"
    except OSError:
        return "its `.git` was replaced by a symlink or something unreadable"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "its `.git` is no longer a file"
        content = os.read(fd, 4096)
    finally:
        os.close(fd)
    if content.strip() != f"gitdir: {admin}".encode():
        return "its `.git` pointer was rewritten"
    return None


def restore_pointer(common: Path, path: Path, sandbox_id: str) -> None:
    """Put the `.git` pointer back; whatever stood there is kept aside, not deleted."""
    problem = pointer_problem(common, path)
    admin = git.admin_dir(common, path)
    if problem is None or admin is None or not path.is_dir():
        return
    target = path / ".git"
    if target.is_dir() and not target.is_symlink():
        # A name the sandbox cannot guess (a predictable one could be planted to block us).
        aside = path / f".git.locki-tampered-{secrets.token_hex(8)}"
        try:
            os.rename(target, aside)
        except OSError as exc:
            raise LockiError(f"cannot move the sandbox's `.git` folder aside in `{path}`: "
                             f"{exc.strerror}", hint="move it away by hand, then apply") from exc
    write_atomically(target, f"gitdir: {admin}\n".encode())  # a rename: never follows
    log.warning("worktree.pointer_restored", sandbox=sandbox_id, worktree=str(path),
                problem=problem)


async def lost_commits(repo: Path, head: str | None, sandbox_id: str, *,
                       own_branches_go: bool) -> int:
    """Commits reachable from `head` and from no other branch, tag or remote-tracking ref."""
    if not head:
        return 0
    exclude = [f"--exclude=*#locki-{sandbox_id}"] if own_branches_go else []
    counted = await git.git(repo, "rev-list", "--count", head, "--not", *exclude,
                            "--branches", "--remotes", "--tags")
    return int(counted.stdout.strip() or 0)


async def own_branches(repo: Path, sandbox_id: str) -> list[str]:
    """Every local branch this sandbox may write: `*#locki-<id>`."""
    listing = await git.git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/")
    suffix = f"#locki-{sandbox_id}"
    return [ref for ref in listing.stdout.splitlines() if ref.endswith(suffix)]


async def delete_branches(repo: Path, sandbox_id: str) -> list[str]:
    """Delete the sandbox's own branches, and only those (exact ref names, no patterns)."""
    refs = await own_branches(repo, sandbox_id)
    for ref in refs:
        await git.git(repo, "update-ref", "-d", ref)
        crash.reached("branches.delete")
    log.info("branches.deleted", sandbox=sandbox_id, branches=refs)
    return refs


async def is_dirty(repo: Path, path: Path) -> bool:
    """Uncommitted changes, untracked files included, read without trusting `path/.git`.

    The sandbox writes `path` while this runs (status and gc do not freeze it): a file
    git has just seen as regular can be a FIFO when git opens it, and an open FIFO
    never returns. So the read is bounded (`STATUS_SECONDS`); past it, LockiError:
    status shows `?`, a removal is refused (work is never guessed away)."""
    common = await git.common_dir(repo)
    admin = git.admin_dir(common, path)
    if admin is None:
        raise LockiError(f"git has no record of worktree `{path}` in `{repo}`")
    try:
        status = await git.git(
            repo, "status", "--porcelain", "--untracked-files=all", "--ignore-submodules=all",
            git_dir=admin, work_tree=path, timeout=STATUS_SECONDS,
        )
    except TimedOut as exc:
        raise LockiError(f"cannot tell whether `{path}` has uncommitted work: {exc.message}",
                         hint="a file there may be a FIFO or a filter may hang; check the "
                         "folder, or pass --force to discard its work") from None
    return bool(status.stdout.strip())


def partial_path(path: Path) -> Path:
    """Where a worktree is built before it moves to `path` (same basename, so git's
    admin folder is named as it would be for `path`)."""
    return path.parent / PARTIAL / path.name


async def _discard_partial(repo: Path, partial: Path, sandbox_id: str) -> None:
    """Remove what an interrupted create left at `partial`: locki's own scratch folder,
    never mounted and never handed out, so nothing in it is anyone's work."""
    listing = await git.git(repo, "worktree", "list", "--porcelain", "-z")
    recorded = any(r.path == partial for r in parse_porcelain(listing.stdout))
    if not recorded and not partial.exists():
        return
    if recorded:
        # Twice --force: `git worktree add` locks a worktree while it populates it.
        await git.git(repo, "worktree", "remove", "--force", "--force", str(partial))
    if partial.exists():
        shutil.rmtree(partial)
    await git.git(repo, "worktree", "prune")
    with contextlib.suppress(OSError):
        partial.parent.rmdir()
    log.info("worktree.partial_discarded", sandbox=sandbox_id, worktree=str(partial))


async def create(repo: Path, path: Path, sandbox_id: str, base: str, *,
                 branch: str | None = None) -> None:
    """Add the worktree on the sandbox branch, creating the branch from `base` if needed.

    The worktree is populated beside its place and moved there when complete, so a run
    killed halfway leaves a scratch folder the next create removes, never a half
    checkout at `path` that would look like the user's deleted files.
    """
    await git.git(repo, "worktree", "prune")
    partial = partial_path(path)
    await _discard_partial(repo, partial, sandbox_id)
    if path.exists():
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # an empty folder left by an interrupted run
        else:
            raise LockiError(
                f"`{path}` exists and is not a worktree of `{repo}`",
                hint="move it away (locki does not delete files it did not make), then apply",
            )
    partial.parent.mkdir(parents=True, exist_ok=True)
    branch = branch or branch_name(sandbox_id)
    exists = await git.git(repo, "rev-parse", "-q", "--verify", f"refs/heads/{branch}",
                           check=False)
    if not exists.ok:
        # `--end-of-options`: the names come from a file the user may edit by hand.
        await git.git(repo, "branch", "--no-track", "--end-of-options", branch, base)
        log.info("branch.created", sandbox=sandbox_id, branch=branch, base=base)
        crash.reached("branch.create")
    await git.git(repo, "worktree", "add", "--end-of-options", str(partial), branch)
    crash.reached("worktree.add")
    # Shortcoming: `git worktree move` renames the folder, then rewrites git's record of
    # it; a kill between those two system calls leaves a folder git does not know
    # (observed as broken, `git worktree repair` fixes it). The window is microseconds;
    # it can go when git moves worktrees atomically.
    await git.git(repo, "worktree", "move", str(partial), str(path))
    with contextlib.suppress(OSError):
        partial.parent.rmdir()
    log.info("worktree.created", sandbox=sandbox_id, worktree=str(path), branch=branch,
             base=base)


async def remove(repo: Path, path: Path, sandbox_id: str, *, force: bool) -> None:
    """Remove the worktree (branches stay); a folder already gone is just pruned. What
    an interrupted create left beside it goes too."""
    await _discard_partial(repo, partial_path(path), sandbox_id)
    if path.is_dir():
        restore_pointer(await git.common_dir(repo), path, sandbox_id)
    if path.exists():
        args = ["worktree", "remove", *(["--force"] if force else []), str(path)]
        try:
            # Bounded as `is_dirty`: without --force git reads the worktree's status
            # first, while a running container (an include's) can swap in a FIFO.
            await git.git(repo, *args, timeout=STATUS_SECONDS)
        except TimedOut as exc:
            raise LockiError(f"git could not remove `{path}`: {exc.message}",
                             hint="a file there may be a FIFO or a filter may hang; check "
                             "the folder, or pass --force to discard its work") from None
        crash.reached("worktree.remove")
    await git.git(repo, "worktree", "prune")
    log.info("worktree.removed", sandbox=sandbox_id, worktree=str(path))
