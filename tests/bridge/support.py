"""The caller every bridge policy test speaks for."""

from __future__ import annotations

from pathlib import Path

from locki.bridge.policy import Caller

SANDBOX = "abcd1234"
OTHER = "zzzz9999"
WORKTREE = Path("/wt/proj-locki-abcd1234")
# `mirror` is configured with a fetch refspec that writes local branches.
CALLER = Caller(
    SANDBOX, WORKTREE, WORKTREE / "src", frozenset({"origin", "upstream", "mirror"}),
    head=f"topic#locki-{SANDBOX}", push_remote="origin",
    fetch_remote="origin", odd_fetch=frozenset({"mirror"}),
    github="github.com/acme/widget",
)
