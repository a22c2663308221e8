"""Sandbox lifecycle on a real daemon: retiring, guarded removal, branch deletion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.conftest import Locki

pytestmark = pytest.mark.e2e


def _new(locki: Locki, repo: Path, *args: str) -> dict[str, str]:
    made = locki("new", "--json", *args, cwd=repo)
    assert made.returncode == 0, made.stderr
    result: dict[str, str] = json.loads(made.stdout)
    return result


def test_deleting_the_worktree_folder_retires_the_sandbox(locki: Locki, repo: Path) -> None:
    box = _new(locki, repo)
    sid, worktree = box["id"], Path(box["worktree"])
    shutil.rmtree(worktree)

    planned = locki("plan", "--detailed-exitcode", cwd=repo)
    assert planned.returncode == 2
    assert "worktree folder was deleted" in planned.stdout
    applied = locki("apply", cwd=repo)
    assert applied.returncode == 0, applied.stderr
    assert locki.containers() == []
    assert locki.sandboxes(repo) == []
    assert str(worktree) not in git(repo, "worktree", "list")
    assert f"untitled#locki-{sid}" in git(repo, "branch", "--list")
    assert locki("plan", "--detailed-exitcode", cwd=repo).returncode == 0


def test_remove_guards_commits_found_nowhere_else(locki: Locki, repo: Path) -> None:
    box = _new(locki, repo, "--branch", "topic")
    sid, worktree = box["id"], Path(box["worktree"])
    assert box["branch"] == f"topic#locki-{sid}"
    assert git(worktree, "branch", "--show-current") == f"topic#locki-{sid}"
    (worktree / "feature.txt").write_text("feature\n")
    git(worktree, "add", "feature.txt")
    git(worktree, "commit", "-q", "-m", "feature")

    # Branches are kept by a plain remove, so the commit is safe: no --force needed...
    # ...but deleting the branch too would lose it.
    refused = locki("remove", "--delete-branch", cwd=repo)
    assert refused.returncode == 1
    assert "1 commit(s) exist on no other branch or remote" in refused.stderr
    assert worktree.exists()

    git(repo, "branch", "keep-this", f"topic#locki-{sid}")
    git(repo, "branch", "other#locki-zzzz9999", "main")
    removed = locki("remove", "--delete-branch", cwd=repo)
    assert removed.returncode == 0, removed.stderr
    branches = git(repo, "branch", "--list", "--format=%(refname:short)").splitlines()
    assert f"topic#locki-{sid}" not in branches
    assert {"main", "keep-this", "other#locki-zzzz9999"} <= set(branches)


def test_detached_commits_block_a_plain_remove(locki: Locki, repo: Path) -> None:
    box = _new(locki, repo)
    worktree = Path(box["worktree"])
    git(worktree, "switch", "-q", "--detach")
    (worktree / "x.txt").write_text("x\n")
    git(worktree, "add", "x.txt")
    git(worktree, "commit", "-q", "-m", "detached work")
    refused = locki("rm", cwd=repo)
    assert refused.returncode == 1
    assert "exist on no other branch" in refused.stderr
    assert locki("rm", "--force", cwd=repo).returncode == 0
    assert not worktree.exists()


def test_untracked_files_count_as_changes(locki: Locki, repo: Path) -> None:
    box = _new(locki, repo)
    (Path(box["worktree"]) / "notes.txt").write_text("untracked\n")
    refused = locki("rm", cwd=repo)
    assert refused.returncode == 1
    assert "uncommitted changes" in refused.stderr
