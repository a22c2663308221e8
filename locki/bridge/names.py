"""Checks on the words a sandbox puts where git expects a revision, a branch or a path.

Every check raises `Denied` with a reason the agent can act on. They are lexical and
pure: nothing here looks at the repository or the filesystem.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from locki.bridge.model import Caller, Denied

# Characters git's refname rules forbid anywhere in a ref (see git-check-ref-format).
_REF_FORBIDDEN = set(" ~^:?*[\\")
# Unicode categories refused in branch names: controls, invisible formatting (bidi
# overrides make `git branch` output lie to the human reviewing it), surrogates from
# non-UTF-8 bytes, private use, unassigned, and separators.
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}
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


def refname_problem(name: str) -> str | None:
    """Why `refs/heads/<name>` breaks git's refname rules, or None if it is valid."""
    if not name or name == "@" or name == "HEAD" or name.startswith("-"):
        return "is not a usable branch name"
    if any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in name):
        return "contains control, invisible, space or non-UTF-8 characters"
    if any(ch in _REF_FORBIDDEN for ch in name):
        return "contains one of the characters space ~ ^ : ? * [ \\"
    if ".." in name or "@{" in name:
        return "contains `..` or `@{`"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "has an empty path component"
    if name.endswith("."):
        return "ends with `.`"
    for part in name.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "has a component starting with `.` or ending with `.lock`"
    return None


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
