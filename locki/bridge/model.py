"""Value types shared by the bridge policy: who asks (`Caller`) and the answer (`Decision`).

The daemon builds a `Caller` from facts it established itself (the credential's sandbox,
the resolved cwd) and executes only `Decision.argv`, never what the client sent.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Caller:
    sandbox_id: str
    """8 chars `[a-z0-9]`, derived by the daemon from the credential."""
    worktree: Path
    """Absolute worktree root of this sandbox (trusted)."""
    cwd: Path
    """Already-resolved cwd inside the worktree (trusted)."""
    remotes: Collection[str] = frozenset()
    """Remote names configured in the repo (for push/fetch); any collection."""
    head: str | None = None
    """The branch HEAD names (without `refs/heads/`); None when detached or unknown."""
    push_remote: str | None = None
    """Where git sends a push that names no remote (pushRemote, pushDefault, remote,
    origin: git's own order), if that is a configured remote."""
    fetch_remote: str | None = None
    """Where a fetch or pull that names no remote reads (branch.<head>.remote, else
    origin), if that is a configured remote."""
    odd_fetch: frozenset[str] = frozenset()
    """Remotes whose configured fetch refspecs write outside `refs/remotes/<name>/`:
    fetching from them could move local branches or tags."""
    github: str | None = None
    """`HOST/OWNER/REPO` of the repository's GitHub remote: "the current repo" for gh."""

    @property
    def suffix(self) -> str:
        return f"#locki-{self.sandbox_id}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    """Why it was denied, or `allowed`."""
    argv: tuple[str, ...]
    """The normalised git argv (without the leading `git`); meaningful only when allowed."""
    allowed_forms: tuple[str, ...] = ()
    """On denial: the forms of this subcommand that are allowed."""
    writes: bool = False
    """The command may write refs, the index or the worktree."""
    writes_head: bool = False
    """The command updates whatever branch HEAD names (commit, reset, rebase, merge, ...).
    The policy cannot see HEAD, so the daemon must check, right before running it, that
    HEAD is detached or on a `*#locki-<id>` branch of the caller."""
    stdin_from: Path | None = None
    """A file inside the worktree that git must read as its stdin. Path-valued options
    (`commit -F msg.txt`) are rewritten to `-` so that host git never opens a path the
    sandbox controls: the daemon opens this file beneath the worktree without following
    symlinks (a symlink to `/etc/shadow` would otherwise leak it into a commit message)."""
    freeze: bool = True
    """Freeze the sandbox while it runs. False only for push and fetch, which the daemon
    runs without a work tree (refs, objects and config in the git dir, and the network),
    so no worktree path is opened."""
    stash: StashPlan | None = None
    """For `git stash`: the daemon runs this plan on the sandbox's own stash ref instead
    of `argv` (several host git steps; see `locki.bridge.stashes`)."""
    pr_check: str | None = None
    """For gh writes on an existing PR: the selector whose head branch the daemon looks up
    and checks against the caller's namespace before running `argv`."""


@dataclass(frozen=True)
class StashPlan:
    op: str
    """push, list, show, apply, pop, drop or clear."""
    ref: str
    """The caller's own stash ref, `refs/locki/stash/<id>`: never the shared `refs/stash`."""
    entry: int = 0
    """Which entry (`stash@{N}`) of the caller's own stash reflog."""
    options: tuple[str, ...] = ()
    """Canonical options passed to the git step that takes them."""
    message: str | None = None


class Denied(Exception):
    """Raised inside the policy when a command is refused; `check_git` turns it into a
    denied `Decision`. Never escapes the package."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def allow(
    argv: tuple[str, ...],
    *,
    writes: bool = False,
    writes_head: bool = False,
    stdin_from: Path | None = None,
    freeze: bool = True,
    stash: StashPlan | None = None,
    pr_check: str | None = None,
) -> Decision:
    return Decision(
        allowed=True, reason="allowed", argv=argv, writes=writes or writes_head,
        writes_head=writes_head, stdin_from=stdin_from, freeze=freeze, stash=stash,
        pr_check=pr_check,
    )
