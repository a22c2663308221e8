"""The walking skeleton against a real daemon: create, run, converge, remove."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.conftest import Locki, incus

pytestmark = pytest.mark.e2e


def _only_sandbox(locki: Locki, repo: Path) -> dict[str, object]:
    boxes = locki.sandboxes(repo)
    assert len(boxes) == 1, boxes
    return boxes[0]


def test_hello_runs_inside_a_container_holding_the_worktree(locki: Locki, repo: Path) -> None:
    hello = locki("x", "--", "echo", "hello", cwd=repo)
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == "hello\n"
    assert "created sandbox" in hello.stderr

    box = _only_sandbox(locki, repo)
    assert box["state"] == "running"
    assert box["branch"] == f"untitled#locki-{box['id']}"
    assert box["repo"] == str(repo)
    worktree = Path(str(box["worktree"]))
    assert worktree.name == f"project-locki-{box['id']}"
    assert (worktree / "app.py").read_text() == "print('app')\n"

    comm = locki("x", "--", "cat", "/proc/1/comm", cwd=repo)
    assert comm.stdout.strip() == "systemd", comm.stderr
    # The same absolute path inside, and the repo's files are there.
    inside = locki("x", "--", "sh", "-c", "pwd; cat app.py; echo $IS_SANDBOX", cwd=repo)
    assert inside.stdout.splitlines() == [str(worktree), "print('app')", "1"]


def test_files_made_inside_belong_to_the_host_user(locki: Locki, repo: Path) -> None:
    made = locki("x", "--", "sh", "-c", "echo hi > made-inside.txt", cwd=repo)
    assert made.returncode == 0, made.stderr
    path = Path(str(_only_sandbox(locki, repo)["worktree"])) / "made-inside.txt"
    assert path.read_text() == "hi\n"
    assert path.stat().st_uid == os.getuid()
    assert path.stat().st_gid == os.getgid()
    # and the host user's files stay writable inside
    edit = locki("x", "--", "sh", "-c", "echo more >> app.py && echo ok", cwd=repo)
    assert edit.stdout == "ok\n", edit.stderr


def test_exit_code_stdin_and_cwd_pass_through(locki: Locki, repo: Path) -> None:
    assert locki("x", "--", "sh", "-c", "exit 7", cwd=repo).returncode == 7
    echoed = locki("x", "cat", cwd=repo, input="through stdin\n")
    assert echoed.stdout == "through stdin\n"
    # Words after the command are the command's, even ones that look like locki options.
    words = locki("x", "echo", "-n", "-m", "x", cwd=repo)
    assert words.stdout == "-m x", words.stderr
    worktree = Path(str(_only_sandbox(locki, repo)["worktree"]))
    sub = worktree / "sub dir"
    sub.mkdir()
    pwd = locki("x", "pwd", cwd=sub)
    assert pwd.stdout.strip() == str(sub)


def test_locki_failure_before_the_command_exits_125(locki: Locki, repo: Path) -> None:
    failed = locki("x", "-m", "nosuchsandbox", "--", "true", cwd=repo)
    assert failed.returncode == 125
    assert "no sandbox matches `nosuchsandbox`" in failed.stderr


def test_branch_starts_from_origin_head_not_the_dirty_checkout(locki: Locki, repo: Path) -> None:
    origin_main = git(repo, "rev-parse", "origin/main")
    (repo / "app.py").write_text("uncommitted\n")
    (repo / "local.txt").write_text("local\n")
    git(repo, "add", "local.txt")
    git(repo, "commit", "-q", "-m", "local only")
    created = locki("new", "--json", cwd=repo)
    assert created.returncode == 0, created.stderr
    box = _only_sandbox(locki, repo)
    worktree = Path(str(box["worktree"]))
    assert git(worktree, "rev-parse", "HEAD") == origin_main
    assert (worktree / "app.py").read_text() == "print('app')\n"
    assert not (worktree / "local.txt").exists()
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_apply_recreates_a_container_deleted_by_hand(locki: Locki, repo: Path) -> None:
    assert locki("x", "--", "true", cwd=repo).returncode == 0
    box = _only_sandbox(locki, repo)
    incus("--project", locki.project, "delete", "--force", f"locki-{box['id']}")

    drift = locki("plan", "--detailed-exitcode", cwd=repo)
    assert drift.returncode == 2, drift.stderr
    assert f"+ sandbox.{box['id']}.container" in drift.stdout

    applied = locki("apply", cwd=repo)
    assert applied.returncode == 0, applied.stderr
    assert _only_sandbox(locki, repo)["state"] == "running"
    settled = locki("plan", "--detailed-exitcode", cwd=repo)
    assert settled.returncode == 0, settled.stdout + settled.stderr
    again = locki("x", "--", "cat", "/proc/1/comm", cwd=repo)
    assert again.stdout.strip() == "systemd"


def test_remove_refuses_a_dirty_worktree_then_forces(locki: Locki, repo: Path) -> None:
    assert locki("x", "--", "sh", "-c", "echo wip > wip.txt", cwd=repo).returncode == 0
    box = _only_sandbox(locki, repo)
    worktree = Path(str(box["worktree"]))
    state_file = locki.config_dir / "sandboxes.toml"
    before = state_file.read_text()

    refused = locki("remove", cwd=repo)
    assert refused.returncode == 1
    assert "uncommitted changes" in refused.stderr
    assert "--force" in refused.stderr
    assert (worktree / "wip.txt").read_text() == "wip\n"
    assert state_file.read_text() == before
    assert [c["name"] for c in locki.containers()] == [f"locki-{box['id']}"]

    removed = locki("remove", "--force", cwd=repo)
    assert removed.returncode == 0, removed.stderr
    assert not worktree.exists()
    assert locki.containers() == []
    assert f"untitled#locki-{box['id']}" in git(repo, "branch", "--list")
    assert str(worktree) not in git(repo, "worktree", "list")
    settled = locki("plan", "--detailed-exitcode", cwd=repo)
    assert settled.returncode == 0, settled.stdout
    assert locki.sandboxes(repo) == []


def test_remove_of_a_clean_sandbox_needs_no_force(locki: Locki, repo: Path) -> None:
    assert locki("new", cwd=repo).returncode == 0
    box = _only_sandbox(locki, repo)
    removed = locki("rm", "-m", str(box["id"])[:4], cwd=repo)
    assert removed.returncode == 0, removed.stderr
    assert locki.containers() == []
    assert not Path(str(box["worktree"])).exists()


def test_a_container_stopped_by_hand_is_started_again(locki: Locki, repo: Path) -> None:
    assert locki("x", "--", "true", cwd=repo).returncode == 0
    box = _only_sandbox(locki, repo)
    incus("--project", locki.project, "stop", "--force", f"locki-{box['id']}")
    assert _only_sandbox(locki, repo)["state"] == "stopped"
    # The lean path sees the container is not ready and hands over to the full one.
    again = locki("x", "-m", str(box["id"]), "--", "cat", "/proc/1/comm", cwd=repo)
    assert again.stdout == "systemd\n", again.stderr
    assert _only_sandbox(locki, repo)["state"] == "running"
