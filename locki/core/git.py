"""Running git on the host, hardened against what a sandbox can write.

A worktree, its `.git` pointer and anything inside are written by the sandbox, so host
git never discovers its repository from them: the git dir and work tree come from
locki's own records, the environment is built from scratch, and every config key that
could start a program is pinned on the command line.
"""

from __future__ import annotations

import os
from pathlib import Path

from locki.core import proc
from locki.core.errors import LockiError
from locki.core.refs import refname_problem

# Kept from the user's environment: identity, locale, and what push credentials need.
_KEEP = ("HOME", "PATH", "USER", "LOGNAME", "LANG", "LC_ALL", "SSH_AUTH_SOCK", "TZ")

# Pinned on the command line (child gits inherit it through GIT_CONFIG_PARAMETERS).
SAFE_CONFIG = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.editor=false",
    "sequence.editor=false",
    "diff.external=",
    "submodule.recurse=false",
    "diff.ignoreSubmodules=all",
    "protocol.ext.allow=never",
    "core.untrackedCache=false",
    # pull --rebase runs rebase without --no-update-refs, which would move other branches.
    "rebase.updateRefs=false",
)


def host_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _KEEP if k in os.environ}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    return env


def argv(*args: str) -> list[str]:
    out = ["git"]
    for item in SAFE_CONFIG:
        out += ["-c", item]
    return [*out, *args]


async def git(
    repo: Path, *args: str, check: bool = True, git_dir: Path | None = None,
    work_tree: Path | None = None, timeout: float | None = None,
) -> proc.Completed:
    """Run git for `repo` (the primary checkout, a trusted path from desired state)."""
    scope: list[str] = []
    if git_dir is not None:
        scope.append(f"--git-dir={git_dir}")
    if work_tree is not None:
        scope.append(f"--work-tree={work_tree}")
    return await proc.run(
        argv(*scope, *args), cwd=repo, env=host_env(), check=check, timeout=timeout
    )


async def common_dir(path: Path) -> Path:
    """The shared git dir of the repository containing `path`."""
    result = await git(path, "rev-parse", "--path-format=absolute", "--git-common-dir", check=False)
    if not result.ok:
        raise LockiError(
            f"`{path}` is not inside a git repository",
            hint="cd into your repository, then try again",
        )
    return Path(result.stdout.strip())


async def primary_repo(path: Path) -> Path:
    """The main checkout of the repository containing `path` (linked worktrees too)."""
    common = await common_dir(path)
    bare = await git(path, "rev-parse", "--is-bare-repository", check=False)
    if bare.stdout.strip() == "true" or common.name != ".git":
        raise LockiError(
            f"`{common}` is a bare repository; locki needs a checkout to branch from",
            hint="clone it (git clone) and run locki in the clone",
        )
    return common.parent


async def default_branch(repo: Path) -> str:
    """`origin/HEAD`'s target, else `main`, else `master`: the base of new sandboxes."""
    head = await git(repo, "symbolic-ref", "-q", "refs/remotes/origin/HEAD", check=False)
    ref = head.stdout.strip()
    if head.ok and ref.startswith("refs/remotes/"):
        return ref.removeprefix("refs/remotes/")
    for name in ("main", "master"):
        found = await git(repo, "rev-parse", "-q", "--verify", f"refs/heads/{name}^{{commit}}",
                          check=False)
        if found.ok:
            return name
    # A repository of its own ways (`trunk`, no remote): the branch its main checkout is
    # on, once it has a commit.
    current = await git(repo, "symbolic-ref", "-q", "--short", "HEAD", check=False)
    name = current.stdout.strip()
    if current.ok and name:
        found = await git(repo, "rev-parse", "-q", "--verify",
                          f"refs/heads/{name}^{{commit}}", check=False)
        if found.ok:
            return name
    raise LockiError(
        f"`{repo}` has no default branch (no origin/HEAD, no main, no master, and its "
        "checkout is on no branch with a commit)",
        hint="commit something on a branch, or run `git remote set-head origin --auto`",
    )


async def valid_branch_name(name: str) -> bool:
    """Whether git accepts `name` as a branch name (`git check-ref-format --branch`), and
    so does the desired state's stricter lexical check (no control or invisible
    characters, no leading `-`)."""
    if refname_problem(name) is not None:
        return False
    result = await proc.run(["git", "check-ref-format", "--branch", name], env=host_env(),
                            check=False)
    return result.ok


def admin_dir(common: Path, worktree: Path) -> Path | None:
    """The `.git/worktrees/<name>` folder git keeps for `worktree`, found from the repo side."""
    target = str(worktree / ".git")
    root = common / "worktrees"
    if not root.is_dir():
        return None
    for entry in sorted(root.iterdir()):
        try:
            recorded = (entry / "gitdir").read_text().strip()
        except OSError:
            continue
        if recorded == target:
            return entry
    return None
