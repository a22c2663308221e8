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
) -> Decision:
    return Decision(
        allowed=True, reason="allowed", argv=argv, writes=writes or writes_head,
        writes_head=writes_head, stdin_from=stdin_from,
    )
