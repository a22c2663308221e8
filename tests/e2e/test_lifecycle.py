"""Sandbox lifecycle on a real daemon: retiring, guarded removal, branch deletion."""

from __future__ import annotations

import json
import shutil
import subprocess
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


# The container's own git (/usr/bin/git): in the worktree `git` is the bridge's shim.
TAMPER = (
    "G=/usr/bin/git; $G init -q --bare .evil && $G --git-dir=.evil config core.bare false && "
    "$G --git-dir=.evil config core.worktree \"$PWD\" && "
    "printf '#!/bin/sh\\ntouch {marker}\\n' > .evil/fsm && chmod +x .evil/fsm && "
    "$G --git-dir=.evil config core.fsmonitor \"'$PWD/.evil/fsm'\" && "
    "printf 'gitdir: %s/.evil\\n' \"$PWD\" > .git"
)


def test_a_rewritten_git_pointer_is_restored_and_never_runs_on_the_host(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "FSMONITOR-RAN"  # host-only path: only host git could touch it
    tampered = locki("x", "--", "sh", "-c", TAMPER.format(marker=marker), cwd=repo)
    assert tampered.returncode == 0, tampered.stderr
    box = locki.sandboxes(repo)[0]
    worktree = Path(str(box["worktree"]))
    assert ".evil" in (worktree / ".git").read_text()
    # The trap is real: the user's own git in the worktree would run it on the host.
    subprocess.run(["git", "status"], cwd=worktree, capture_output=True)
    assert marker.exists()
    marker.unlink()

    planned = locki("plan", cwd=repo)
    assert f"~ sandbox.{box['id']}.worktree" in planned.stdout
    assert "rewritten (tampering?)" in planned.stdout
    assert locki("apply", cwd=repo).returncode == 0
    assert (worktree / ".git").read_text().startswith(f"gitdir: {repo}/.git/worktrees/")
    git(worktree, "status", "--short")  # the user's own git, e.g. from an IDE
    assert not marker.exists()


def test_a_removed_git_pointer_is_not_a_deleted_folder(locki: Locki, repo: Path) -> None:
    gone = locki("x", "--", "sh", "-c", "echo keep > work.txt && rm .git", cwd=repo)
    assert gone.returncode == 0, gone.stderr
    box = locki.sandboxes(repo)[0]
    planned = locki("plan", cwd=repo)
    assert "worktree folder was deleted" not in planned.stdout
    assert "pointer was removed" in planned.stdout
    assert locki("apply", cwd=repo).returncode == 0
    assert (Path(str(box["worktree"])) / "work.txt").read_text() == "keep\n"
    refused = locki("rm", cwd=repo)
    assert refused.returncode == 1
    assert "uncommitted changes" in refused.stderr


def test_a_tampered_sandbox_can_still_be_removed(locki: Locki, repo: Path,
                                                 tmp_path: Path) -> None:
    marker = tmp_path / "RAN"
    assert locki("x", "--", "sh", "-c", TAMPER.format(marker=marker), cwd=repo).returncode == 0
    removed = locki("rm", "--force", cwd=repo)
    assert removed.returncode == 0, removed.stderr
    assert locki.sandboxes(repo) == []
    assert not marker.exists()


def test_a_broken_locki_toml_is_no_in_sync_plan(locki: Locki, repo: Path) -> None:
    _new(locki, repo)
    assert locki("plan", "--detailed-exitcode", cwd=repo).returncode == 0
    (repo / "locki.toml").write_text("setup = [\n")
    planned = locki("plan", "--detailed-exitcode", cwd=repo)
    assert planned.returncode == 1
    assert "locki.toml" in planned.stdout + planned.stderr
    assert "No changes: what exists matches" not in planned.stdout
    (repo / "locki.toml").unlink()
    assert locki("plan", "--detailed-exitcode", cwd=repo).returncode == 0


def test_locki_x_from_a_subfolder_of_the_checkout_runs_in_the_same_subfolder(
        locki: Locki, repo: Path) -> None:
    (repo / "pkg").mkdir()
    (repo / "pkg" / "mod.py").write_text("x = 1\n")
    git(repo, "add", "pkg")
    git(repo, "commit", "-qm", "pkg")
    git(repo, "push", "-q", "origin", "main")
    box = _new(locki, repo)
    where = locki("x", "--", "pwd", cwd=repo / "pkg")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip() == str(Path(box["worktree"]) / "pkg")
    (repo / "untracked-here").mkdir()
    elsewhere = locki("x", "--", "pwd", cwd=repo / "untracked-here")
    assert elsewhere.stdout.strip() == box["worktree"]  # not in the worktree: its root
