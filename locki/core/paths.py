"""Where locki keeps things, honouring the XDG base-directory variables.

The same layout is used on macOS and Linux (~/.config, ~/.local/share, ~/.local/state),
because the worktrees root is mounted at its identical path into the VM and containers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from xdg_base_dirs import (
    xdg_cache_home,
    xdg_config_home,
    xdg_data_home,
    xdg_runtime_dir,
    xdg_state_home,
)

from locki.core.errors import LockiError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Paths(NamedTuple):
    """Where locki keeps things. A NamedTuple: `locki x` imports this on its fast path."""

    config_dir: Path
    data_dir: Path
    state_dir: Path
    runtime_dir: Path

    @classmethod
    def from_env(cls) -> Paths:
        xdg_runtime = xdg_runtime_dir()
        if xdg_runtime is None:
            import tempfile

            runtime = Path(tempfile.gettempdir()) / f"locki-{os.getuid()}"
        else:
            runtime = xdg_runtime / "locki"
        return cls(
            config_dir=xdg_config_home() / "locki",
            data_dir=xdg_data_home() / "locki",
            state_dir=xdg_state_home() / "locki",
            runtime_dir=runtime,
        )

    @property
    def desired_state(self) -> Path:
        return self.config_dir / "sandboxes.toml"

    @property
    def user_config(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def worktrees(self) -> Path:
        return self.data_dir / "worktrees"

    @property
    def home(self) -> Path:
        return self.data_dir / "home"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def journal(self) -> Path:
        """The apply journal: one file per action in flight (reconciler/journal.py)."""
        return self.state_dir / "journal"

    @property
    def cache(self) -> Path:
        """locki's cache (`$XDG_CACHE_HOME/locki`): downloads, and the sandboxes' shared
        package caches. Read from the environment when asked: the bridge daemon, which
        builds Paths from its arguments, never needs it."""
        return xdg_cache_home() / "locki"

    @property
    def sandbox_cache(self) -> Path:
        """The folder every sandbox sees at /var/cache/locki (npm, pip, cargo, ...)."""
        return self.cache / "sandbox"

    @property
    def lima_home(self) -> Path:
        """LIMA_HOME for locki's own VM: apart from the user's other Lima instances."""
        return self.state_dir / "lima"

    @property
    def image_cache(self) -> Path:
        return self.state_dir / "image-fingerprints.json"

    @property
    def sandbox_ledger(self) -> Path:
        """Every sandbox id this installation ever wrote (state/store.py): `gc` touches
        only `*#locki-<id>` branches whose id is listed here."""
        return self.state_dir / "sandbox-ids"

    @property
    def installation_id_file(self) -> Path:
        return self.data_dir / "installation-id"

    def worktree_for(self, repo: Path, sandbox_id: str) -> Path:
        return self.worktrees / f"{slug(repo.name)}-locki-{sandbox_id}"

    def include_for(self, repo: Path, sandbox_id: str, name: str) -> Path:
        """Where the sandbox's include `name` lives on the host (beside its worktree)."""
        return self.worktrees / f"{slug(repo.name)}-locki-{sandbox_id}.include" / name

    def xdg_env(self) -> dict[str, str]:
        """The XDG variables that lead another locki process to these same folders."""
        env = {"XDG_CONFIG_HOME": str(self.config_dir.parent),
               "XDG_DATA_HOME": str(self.data_dir.parent),
               "XDG_STATE_HOME": str(self.state_dir.parent)}
        if self.runtime_dir.name == "locki":
            env["XDG_RUNTIME_DIR"] = str(self.runtime_dir.parent)
        return env

    def hooks_for(self, worktree: Path) -> Path:
        """The hook trampolines of a sandbox's (or an include's) worktree: the same
        relative place under `hooks/` as the worktree under `worktrees/`."""
        return self.data_dir / "hooks" / worktree.relative_to(self.worktrees)

    def private_runtime_dir(self) -> Path:
        """The runtime dir, created 0700 and refused if someone else owns it."""
        path = self.runtime_dir
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise LockiError(
                f"`{path}` is not private to this user (owner {st.st_uid}, "
                f"mode {oct(st.st_mode & 0o777)})",
                hint="set XDG_RUNTIME_DIR to a folder only you can write",
            )
        return path


def include_mount(worktree: Path, name: str) -> Path:
    """Where the sandbox sees its include `name`: inside its own worktree."""
    return worktree / ".locki" / "include" / name


def slug(name: str) -> str:
    """A folder-name-safe form of a repo name: `my repo,ü` -> `my-repo-`."""
    cleaned = _UNSAFE.sub("-", name).strip(".-")
    return cleaned[:40] or "repo"
