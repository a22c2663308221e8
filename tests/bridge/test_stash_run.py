"""Sandbox stashes with real git (no daemon): each sandbox's own ref, the user's untouched.

Two sandboxes' worktrees of one repository and the user's main checkout each stash;
every plan the policy makes is carried out by `stash_run.run` with plain host git.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from locki.bridge.model import Caller
from locki.bridge.policy import check_git
from locki.bridge.stash_run import Step, run
from tests.conftest import git


def stash(worktree: Path, sandbox: str, *args: str) -> Step:
    decision = check_git(["stash", *args], Caller(sandbox, worktree, worktree))
    assert decision.allowed and decision.stash is not None, decision.reason

    async def step(words: Sequence[str]) -> Step:
        done = subprocess.run(["git", *words], cwd=worktree, capture_output=True)
        return Step(done.returncode, done.stdout, done.stderr)

    return asyncio.run(run(decision.stash, step))


@pytest.fixture
def trees(repo: Path) -> tuple[Path, Path]:
    one, two = repo.parent / "one", repo.parent / "two"
    git(repo, "worktree", "add", "-q", "-b", "a#locki-aaaa1111", str(one))
    git(repo, "worktree", "add", "-q", "-b", "b#locki-bbbb2222", str(two))
    return one, two


def test_each_sandbox_stashes_apart_from_the_user_and_each_other(
    repo: Path, trees: tuple[Path, Path]
) -> None:
    one, two = trees
    (repo / "README.md").write_text("user's change\n")
    git(repo, "stash", "push", "-m", "the user's")
    user_stash = git(repo, "rev-parse", "refs/stash")

    (one / "README.md").write_text("first\n")
    assert stash(one, "aaaa1111", "push", "-m", "first").code == 0
    assert (one / "README.md").read_text() == "hello\n"  # the change went into the stash
    (one / "README.md").write_text("second\n")
    pushed = stash(one, "aaaa1111")
    assert pushed.code == 0
    assert pushed.out.startswith(b"Saved working directory and index state WIP on a#locki")

    listed = stash(one, "aaaa1111", "list").out.decode().splitlines()
    assert listed[0].startswith("stash@{0}: WIP on a#locki-aaaa1111")
    assert listed[1] == "stash@{1}: On a#locki-aaaa1111: first"
    assert len(listed) == 2
    assert stash(two, "bbbb2222", "list") == Step(0)
    assert b"first" in stash(one, "aaaa1111", "show", "-p", "stash@{1}").out

    # The other sandbox cannot pop or drop anything: it has no stash of its own.
    assert stash(two, "bbbb2222", "pop").code == 1
    assert stash(two, "bbbb2222", "drop", "stash@{1}").err == b"No stash entries found.\n"

    popped = stash(one, "aaaa1111", "pop", "stash@{1}")
    assert popped.code == 0, popped.err
    assert (one / "README.md").read_text() == "first\n"
    assert b"Dropped stash@{1}" in popped.out
    assert len(stash(one, "aaaa1111", "list").out.splitlines()) == 1
    git(one, "checkout", "--", "README.md")
    dropped = stash(one, "aaaa1111", "drop")
    assert dropped.code == 0
    assert stash(one, "aaaa1111", "list") == Step(0)
    assert subprocess.run(["git", "rev-parse", "-q", "--verify", "refs/locki/stash/aaaa1111"],
                          cwd=repo, capture_output=True).returncode == 1

    # The user's stash never moved, and theirs is the only entry `git stash` shows.
    assert git(repo, "rev-parse", "refs/stash") == user_stash
    assert git(repo, "stash", "list") == "stash@{0}: On main: the user's"


def test_nothing_to_stash_and_an_entry_that_does_not_exist(trees: tuple[Path, Path]) -> None:
    one, _ = trees
    assert stash(one, "aaaa1111") == Step(0, b"No local changes to save\n")
    (one / "app.py").write_text("changed\n")
    assert stash(one, "aaaa1111", "-q") == Step(0)
    missing = stash(one, "aaaa1111", "apply", "stash@{5}")
    assert missing.code == 1
    assert missing.err == b"error: stash@{5} is not a valid reference\n"
    assert stash(one, "aaaa1111", "apply", "--index").code == 0
    assert (one / "app.py").read_text() == "changed\n"
    assert stash(one, "aaaa1111", "clear").code == 0
    assert stash(one, "aaaa1111", "list") == Step(0)
