"""When each sandbox was last used: one empty stamp file per sandbox, its mtime the time.

`locki x` (both paths) and every bridged command touch the stamp; the host daemon's
background loop reads it to stop containers idle for longer than the user allows, and
`locki status` shows it, with the loop's report of its last pass. Standard library
only: the lean `locki x` path touches the stamps.
"""

from __future__ import annotations

import os
from pathlib import Path


def stamps(state_dir: Path) -> Path:
    return state_dir / "last-used"


def stamp_path(state_dir: Path, sandbox_id: str) -> Path:
    return stamps(state_dir) / sandbox_id


def touch(state_dir: Path, sandbox_id: str, *, when: float | None = None) -> None:
    """Record a use of the sandbox now (or at `when`). Never fails the caller."""
    path = stamp_path(state_dir, sandbox_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        if when is not None:
            os.utime(path, (when, when))
    except OSError:
        pass  # a read-only or full disk must not stop the command itself


def last_used(state_dir: Path, sandbox_id: str) -> float | None:
    """The time of the sandbox's last recorded use, or None when it has none."""
    try:
        return stamp_path(state_dir, sandbox_id).stat().st_mtime
    except OSError:
        return None


def loop_report(state_dir: Path) -> Path:
    """Where the daemon's background loop records its last pass (for `locki status`)."""
    return state_dir / "loop.json"


def forget(state_dir: Path, sandbox_id: str) -> None:
    stamp_path(state_dir, sandbox_id).unlink(missing_ok=True)
