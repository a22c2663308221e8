"""git's rules for ref names, checked lexically (see git-check-ref-format).

Pure: the state models validate `branch` and `base` with it when a file is loaded, and
the bridge checks the branch names a sandbox sends.
"""

from __future__ import annotations

import unicodedata

# Characters git's refname rules forbid anywhere in a ref (see git-check-ref-format).
_REF_FORBIDDEN = set(" ~^:?*[\\")
# Unicode categories refused in branch names: controls, invisible formatting (bidi
# overrides make `git branch` output lie to the human reviewing it), surrogates from
# non-UTF-8 bytes, private use, unassigned, and separators.
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


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


def base_problem(name: str) -> str | None:
    """Why `name` cannot be a base to branch from (a branch, remote-tracking branch, tag
    or commit id, optionally spelled `refs/...`), or None. `HEAD` is allowed here."""
    if name == "HEAD":
        return None
    return refname_problem(name)
