"""Checks on the words a sandbox puts where git expects a revision, a branch or a path.

Every check raises `Denied` with a reason the agent can act on. They are lexical and
pure: nothing here looks at the repository or the filesystem.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from locki.bridge.model import Caller, Denied
from locki.core.refs import refname_problem as refname_problem  # re-exported for the bridge

_MAX_LEN = 4096


def has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in value)


def check_rev(value: str, what: str = "revision") -> str:
    """A revision expression that is only read (`HEAD~1`, `main..topic`, `:/fix`)."""
    if not value:
        raise Denied(f"empty {what}")
    if value.startswith("-"):
        # A positional that looks like an option is how argv injection starts.
        raise Denied(f"{what} `{value}` starts with `-`")
    if has_control(value) or len(value) > _MAX_LEN:
        raise Denied(f"{what} {value!r} contains control or non-UTF-8 characters")
    return value


def check_own_branch(name: str, caller: Caller) -> str:
    """A branch the caller writes: valid, and in the caller's own `*#locki-<id>` space."""
    problem = refname_problem(name)
    if problem:
        raise Denied(f"branch name {name!r} {problem}")
    if not name.endswith(caller.suffix) or len(name) == len(caller.suffix):
        raise Denied(
            f"branch `{name}` is not one of this sandbox's branches: "
            f"branches it writes must be named `<topic>{caller.suffix}`"
        )
    return name


def resolve_inside(value: str, caller: Caller, what: str = "path") -> Path:
    """Where a path argument points, lexically, refusing anything outside the worktree."""
    if not value or has_control(value):
        raise Denied(f"{what} {value!r} is empty or contains control characters")
    joined = caller.cwd / value
    # normpath is purely lexical, so `..` is folded without asking the filesystem.
    resolved = Path(os.path.normpath(joined))
    if caller.worktree not in resolved.parents:
        raise Denied(f"{what} `{value}` resolves outside the worktree")
    return resolved


def check_inside(value: str, caller: Caller, what: str = "path") -> str:
    """A positional that git may treat as a path: it must not leave the worktree.

    `git diff a b` silently becomes `git diff --no-index` when one of two positionals
    lies outside the repository, which would let a sandbox read any host file; this is
    also cheap defence for every other command's pathspecs."""
    if not value or "\0" in value:
        raise Denied(f"empty {what}")
    resolved = Path(os.path.normpath(caller.cwd / value))
    if resolved != caller.worktree and caller.worktree not in resolved.parents:
        raise Denied(f"{what} `{value}` resolves outside the worktree")
    return value
