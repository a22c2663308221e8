"""A worktree's git hooks, sent to the sandbox's container: host git never runs them.

A repository's hooks, and the files they read, are the sandbox's to write, so every git
that works in a sandbox's worktree on the host (the bridge's, and the user's own in a
shell or an IDE) must run them inside the container. locki points the worktree's own
`core.hooksPath` (in `config.worktree` under the repository's admin folder, which the
sandbox cannot reach) at a folder of trampolines, one per hook type git knows. A
trampoline finds the hook the repository really configures (its `core.hooksPath`, as
husky and lefthook set it, else `.git/hooks`); when there is one it hands it to
`locki.cli.hook`, which runs it in the container in one `incus exec`.

Git reads `config.worktree` only while the worktree's `.git` pointer leads to its admin
folder; the pointer is checked and restored by every observe (`worktree.pointer_problem`).
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

import structlog

from locki.core import git
from locki.core.errors import LockiError
from locki.core.files import write_atomically

log = structlog.get_logger("locki.resources.hooks")

# Every hook git runs from a hooks folder (githooks(5), git-p4 and git-send-email too).
NAMES = (
    "applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit",
    "pre-merge-commit", "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase",
    "post-checkout", "post-merge", "pre-push", "pre-receive", "update", "proc-receive",
    "post-receive", "post-update", "reference-transaction", "push-to-checkout",
    "pre-auto-gc", "post-rewrite", "sendemail-validate", "fsmonitor-watchman",
    "p4-changelist", "p4-prepare-changelist", "p4-post-changelist", "p4-pre-submit",
    "post-index-change",
)
VERSION = "1"


def script(*, sandbox_id: str, common: Path, top: Path, python: str,
           env: Mapping[str, str]) -> str:
    """The trampoline for every hook name of one worktree (`top`, repository `common`).

    Plain sh, so that a hook the repository does not have costs one `git config` and a
    stat, not a Python start: git calls `post-index-change` and `reference-transaction`
    on most commands. A relative `core.hooksPath` is the worktree's (as git takes it);
    only when a hook exists does Python start.
    """
    q = shlex.quote
    assignments = " ".join(f"{key}={q(value)}" for key, value in sorted(env.items()))
    return f"""#!/bin/sh
# locki {VERSION}: git hooks of sandbox {sandbox_id} run inside its container, never on
# this host. Written by `locki apply` (rewritten when it differs); do not edit.
common={q(str(common))}
top={q(str(top))}
name=${{0##*/}}
dir=$(git config --file "$common/config" --includes --type=path --get core.hooksPath \\
    2>/dev/null) || dir=$common/hooks
case $dir in /*) ;; *) dir=$top/$dir ;; esac
[ "${{dir%/}}" = "${{0%/*}}" ] && exit 0
[ -e "$dir/$name" ] || [ -L "$dir/$name" ] || exit 0
exec env {assignments} {q(python)} -I -m locki.cli.hook {q(sandbox_id)} {q(str(top))} \\
    "$dir/$name" "$@"
"""


def config_text(hooks_dir: Path) -> bytes:
    """The whole `config.worktree` locki writes (git's quoting for a value)."""
    value = str(hooks_dir).replace("\\", "\\\\").replace('"', '\\"')
    return f'[core]\n\thooksPath = "{value}"\n'.encode()


async def enabled(common: Path) -> bool:
    """Whether the repository reads per-worktree config (`extensions.worktreeConfig`)."""
    found = await git.git(common.parent, "config", "--file", str(common / "config"),
                          "--bool", "--get", "extensions.worktreeConfig", check=False)
    return found.stdout.strip() == "true"


def problem(common: Path, top: Path, hooks_dir: Path, trampoline: str, *,
            worktree_config: bool) -> str | None:
    """What is missing from the worktree's hook wiring, or None when it is complete."""
    if not worktree_config:
        return "the repository does not read per-worktree config yet"
    admin = git.admin_dir(common, top)
    if admin is None:
        return "git has no record of the worktree"
    try:
        if (admin / "config.worktree").read_bytes() != config_text(hooks_dir):
            return "its per-worktree `core.hooksPath` is not locki's"
    except OSError:
        return "it has no per-worktree `core.hooksPath`"
    for name in NAMES:
        try:
            if (hooks_dir / name).read_text() != trampoline:
                return f"hook trampoline `{name}` is out of date"
        except (OSError, UnicodeDecodeError):
            return f"hook trampoline `{name}` is missing"
    return None


async def wire(common: Path, top: Path, hooks_dir: Path, trampoline: str, *,
               sandbox_id: str) -> None:
    """Send the worktree's hooks to the container: trampolines first, then the config
    that points git at them (so git never points at a half-written folder)."""
    hooks_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in NAMES:
        path = hooks_dir / name
        if not path.exists() or path.read_text() != trampoline:
            write_atomically(path, trampoline.encode(), mode=0o700)
    if not await enabled(common):
        # Git's own documented switch; the repository format stays what it was (git
        # honours this extension in format 0 too). Nothing of the main checkout moves:
        # per-worktree files are read only where they exist.
        await git.git(common.parent, "config", "--file", str(common / "config"),
                      "extensions.worktreeConfig", "true")
    admin = git.admin_dir(common, top)
    if admin is None:
        raise LockiError(f"git has no record of the worktree `{top}`",
                         hint="run `locki apply` to recreate it")
    write_atomically(admin / "config.worktree", config_text(hooks_dir))
    log.info("hooks.wired", sandbox=sandbox_id, worktree=str(top), hooks=str(hooks_dir))


def remove(hooks_dir: Path, *, sandbox_id: str) -> None:
    """The trampolines of a worktree that is gone (its config went with its admin dir)."""
    if hooks_dir.is_dir():
        shutil.rmtree(hooks_dir, ignore_errors=True)
        log.info("hooks.removed", sandbox=sandbox_id, hooks=str(hooks_dir))

