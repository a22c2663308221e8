"""The worktree driver against real git: create, observe, dirty, remove, idempotency."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from locki.core import git as hostgit
from locki.core.errors import LockiError
from locki.resources import worktree
from locki.resources.model import Health
from tests.conftest import git

SID = "abcd1234"


def _observe(repo: Path, path: Path, dirty: bool = False) -> worktree.WorktreeObs:
    check = {SID: False} if dirty else {}
    return anyio.run(lambda: worktree.observe(repo, {SID: path}, check_work=check))[SID]


def test_create_observe_remove(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "wt root" / f"project-locki-{SID}"
    assert _observe(repo, path).health is Health.MISSING

    base = anyio.run(hostgit.default_branch, repo)
    assert base == "origin/main"
    anyio.run(worktree.create, repo, path, SID, base)
    seen = _observe(repo, path, dirty=True)
    assert seen.health is Health.OK
    assert seen.branch == f"untitled#locki-{SID}"
    assert seen.dirty is False
    assert git(path, "rev-parse", "HEAD") == git(repo, "rev-parse", "origin/main")
    # No upstream: a plain push can never land on origin/main.
    upstream = subprocess.run(["git", "config", "--get-regexp", r"branch\..*locki.*\.merge"],
                              cwd=repo, capture_output=True, text=True)
    assert upstream.stdout == ""

    (path / "new.txt").write_text("untracked\n")
    assert _observe(repo, path, dirty=True).dirty is True

    with pytest.raises(LockiError, match=r"untracked|modified|contains"):
        anyio.run(lambda: worktree.remove(repo, path, SID, force=False))
    anyio.run(lambda: worktree.remove(repo, path, SID, force=True))
    assert not path.exists()
    assert _observe(repo, path).health is Health.MISSING
    assert f"untitled#locki-{SID}" in git(repo, "branch", "--list")


@pytest.mark.parametrize(("base", "branch"), [
    ("victim2", "-D"), ("--output=OUT", None), ("-D", None), ("victim2", "--force"),
])
def test_option_shaped_base_or_branch_is_never_an_option(
    repo: Path, tmp_path: Path, base: str, branch: str | None,
) -> None:
    """Past the models' check (a driver called directly), git still reads them as names."""
    git(repo, "branch", "victim2", "origin/main")
    out = tmp_path / "written-by-git"
    path = tmp_path / f"project-locki-{SID}"
    with pytest.raises(LockiError):
        anyio.run(lambda: worktree.create(repo, path, SID, base.replace("OUT", str(out)),
                                          branch=branch))
    assert git(repo, "rev-parse", "victim2") == git(repo, "rev-parse", "origin/main")
    assert not out.exists()
    assert not path.exists()
    assert "-D" not in git(repo, "branch", "--list")


def test_create_again_reuses_the_branch(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / f"project-locki-{SID}"
    anyio.run(worktree.create, repo, path, SID, "origin/main")
    git(path, "branch", "-m", f"topic#locki-{SID}")
    git(path, "switch", "-q", "-c", f"untitled#locki-{SID}")
    (path / "work.txt").write_text("x\n")
    git(path, "add", "work.txt")
    git(path, "commit", "-q", "-m", "work")
    head = git(path, "rev-parse", "HEAD")
    anyio.run(lambda: worktree.remove(repo, path, SID, force=False))
    anyio.run(worktree.create, repo, path, SID, "origin/main")
    assert git(path, "rev-parse", "HEAD") == head


def test_renamed_branch_and_detached_head_are_observed(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / f"project-locki-{SID}"
    anyio.run(worktree.create, repo, path, SID, "origin/main")
    git(path, "branch", "-m", f"fix-42#locki-{SID}")
    assert _observe(repo, path).branch == f"fix-42#locki-{SID}"
    git(path, "switch", "-q", "--detach", "HEAD~1")
    seen = _observe(repo, path)
    assert seen.health is Health.OK
    assert seen.branch is None
    assert "detached" in seen.reason


def test_folder_deleted_by_hand_is_missing(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / f"project-locki-{SID}"
    anyio.run(worktree.create, repo, path, SID, "origin/main")
    shutil.rmtree(path)
    seen = _observe(repo, path)
    assert seen.health is Health.MISSING
    assert "deleted" in seen.reason
    anyio.run(lambda: worktree.remove(repo, path, SID, force=False))
    assert str(path) not in git(repo, "worktree", "list")


def test_foreign_folder_is_broken_and_never_overwritten(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / f"project-locki-{SID}"
    path.mkdir()
    (path / "precious.txt").write_text("mine\n")
    assert _observe(repo, path).health is Health.BROKEN
    with pytest.raises(LockiError, match="exists and is not a worktree"):
        anyio.run(worktree.create, repo, path, SID, "origin/main")
    assert (path / "precious.txt").read_text() == "mine\n"


def test_hostile_worktree_config_runs_nothing_on_the_host(repo: Path, tmp_path: Path) -> None:
    """The dirty check must not run the fsmonitor a sandbox could plant."""
    path = tmp_path / f"project-locki-{SID}"
    anyio.run(worktree.create, repo, path, SID, "origin/main")
    marker = tmp_path / "pwned"
    hook = path / "evil.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    # A sandbox cannot write the repo's config, but it can point `.git` at its own repo.
    fake = path / "fakegit"
    git(tmp_path, "init", "-q", str(fake))
    git(fake, "config", "core.fsmonitor", str(hook))
    (path / ".git").write_text(f"gitdir: {fake / '.git'}\n")
    assert _observe(repo, path, dirty=True).dirty is True
    assert not marker.exists()


def test_porcelain_parser_handles_odd_paths() -> None:
    out = (
        "worktree /r/main repo\0HEAD abc\0branch refs/heads/main\0\0"
        "worktree /w/p-locki-abcd1234\0HEAD def\0detached\0\0"
        "worktree /w/gone\0HEAD 123\0branch refs/heads/x#locki-abcd1234\0prunable gitdir file\0\0"
    )
    records = worktree.parse_porcelain(out)
    assert [r.path for r in records] == [Path("/r/main repo"), Path("/w/p-locki-abcd1234"),
                                         Path("/w/gone")]
    assert records[0].branch == "main"
    assert records[1].branch is None
    assert records[2].prunable


def test_a_status_that_never_ends_is_stopped_and_never_read_as_clean(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox writes its worktree while host git reads it; a file swapped for a FIFO
    between git's lstat and its open blocks git for good. A clean filter that hangs is
    the deterministic stand-in: `git status` must re-read a touched file through it."""
    path = tmp_path / f"project-locki-{SID}"
    anyio.run(worktree.create, repo, path, SID, "origin/main")
    git(repo, "config", "filter.slow.clean", "sleep 60; cat")
    (path / ".gitattributes").write_text("README.md filter=slow\n")
    time.sleep(1.1)  # a new mtime, same size: git must compare the content
    (path / "README.md").touch()
    monkeypatch.setattr(worktree, "STATUS_SECONDS", 1.0)
    started = time.monotonic()
    with pytest.raises(LockiError, match=r"cannot tell whether .* has uncommitted work"):
        _observe(repo, path, dirty=True)
    assert time.monotonic() - started < 15


def test_default_branch_of_a_repo_without_remote_or_main(tmp_path: Path) -> None:
    lone = tmp_path / "lone"
    git(tmp_path, "init", "-q", "-b", "trunk", str(lone))
    with pytest.raises(LockiError):  # no commit yet: nothing to branch from
        anyio.run(hostgit.default_branch, lone)
    git(lone, "commit", "-q", "--allow-empty", "-m", "first")
    assert anyio.run(hostgit.default_branch, lone) == "trunk"
