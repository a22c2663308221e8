"""The caller every bridge policy test speaks for."""

from __future__ import annotations

from pathlib import Path

from locki.bridge.policy import Caller

SANDBOX = "abcd1234"
OTHER = "zzzz9999"
WORKTREE = Path("/wt/proj-locki-abcd1234")
CALLER = Caller(SANDBOX, WORKTREE, WORKTREE / "src", frozenset({"origin"}))
