"""How a command is run inside a sandbox: shared by the full path and the fast path.

Standard library only: `locki x` in a running sandbox must not pay for importing the CLI
framework, pydantic or structlog (see `locki.cli.fast`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

LOGIN_SHELL = ("/bin/sh", "-c", "command -v bash >/dev/null && exec bash -l || exec sh -l")
FORWARDED_ENV = ("TERM", "COLORTERM", "LANG", "TERM_PROGRAM")


def container_name(sandbox_id: str) -> str:
    # Instance names may not start with a digit; ids may.
    return f"locki-{sandbox_id}"


def exec_env(sandbox_id: str) -> dict[str, str]:
    env = {"IS_SANDBOX": "1", "LOCKI_SANDBOX": sandbox_id}
    env.update({k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)})
    return env


def inside_cwd(cwd: Path, root: Path, repo: Path | None = None) -> Path:
    """The same folder inside the container when `cwd` is in the worktree or one of its
    includes (kept beside it in `<worktree>.include/`); for a folder of the main checkout
    `repo`, the same place in the worktree when it exists there; else the worktree's
    root."""
    here = cwd.resolve()
    if here.is_relative_to(root.resolve()):
        return here
    includes = root.with_name(root.name + ".include").resolve()
    if here.is_relative_to(includes) and here != includes:
        return root / ".locki" / "include" / here.relative_to(includes)
    if repo is not None and here.is_relative_to(repo.resolve()):
        inside = root / here.relative_to(repo.resolve())
        if inside.is_dir():
            return inside
    return root


def exec_args(name: str, *, cwd: Path, command: Sequence[str],
              env: Mapping[str, str]) -> list[str]:
    """`incus exec` arguments (after the project) running `command` in `cwd`."""
    args = ["exec", name, "--cwd", str(cwd)]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    return [*args, "--", *(command or LOGIN_SHELL)]
