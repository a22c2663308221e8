"""The normalised argv the policy produces is accepted by real git (no daemon).

Guards against emitting argv git rejects, e.g. `--end-of-options` where a subcommand's
parser does not take it. Runs an agent's workflow in a worktree of a real clone.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from locki.bridge.policy import Caller, check_git, explain
from tests.conftest import GIT_ID, git

SUFFIX = "#locki-abcd1234"


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    stdin: str = ""
    code: int = 0
    files: tuple[tuple[str, str], ...] = ()
    """Files to write in the worktree before the step."""


STEPS = [
    Step(("status",)),
    Step(("add", "new.py"), files=(("new.py", "print(1)\n"),)),
    Step(("diff", "--cached", "--stat")),
    Step(("commit", "-F", "msg.txt"), files=(("msg.txt", "Add new.py\n"),)),
    Step(("commit", "--allow-empty", "-F", "-"), stdin="Empty\n"),
    Step(("log", "--oneline", "-3", "--", "new.py")),
    Step(("log", "--format=%h %s", "main..HEAD")),
    Step(("show", "--stat", "HEAD~1")),
    Step(("blame", "-L", "1,1", "README.md")),
    Step(("grep", "-n", "hello")),
    Step(("grep", "-e", "hello", "main", "--", "README.md")),
    Step(("ls-files", "--others", "--exclude-standard")),
    Step(("ls-tree", "-r", "--name-only", "HEAD")),
    Step(("rev-parse", "--abbrev-ref", "HEAD")),
    Step(("rev-parse", "--show-toplevel")),
    Step(("cat-file", "-p", "HEAD:README.md")),
    Step(("for-each-ref", "--format=%(refname)", "refs/heads/")),
    Step(("branch", "-m", f"untitled{SUFFIX}", f"topic{SUFFIX}")),
    Step(("branch", "-vv")),
    Step(("branch", "--list", f"*{SUFFIX}")),
    Step(("switch", "-c", f"side{SUFFIX}", "main")),
    Step(("commit", "-am", "side change"), files=(("README.md", "hello side\n"),)),
    Step(("switch", f"topic{SUFFIX}")),
    Step(("cherry-pick", f"side{SUFFIX}")),
    Step(("reset", "--hard", "HEAD~1")),
    Step(("rebase", "main")),
    Step(("merge", "--no-ff", "-m", "Merge side", f"side{SUFFIX}")),
    Step(("revert", "HEAD^2")),
    Step(("add", "-A"), files=(("app.py", "print('changed')\n"),)),
    Step(("restore", "--staged", "app.py")),
    Step(("checkout", "--", "app.py")),
    Step(("restore", "--source=HEAD~2", "README.md")),
    Step(("reset", "--", "README.md")),
    Step(("reset", "--hard", "HEAD")),
    Step(("checkout", "-b", f"third{SUFFIX}", "HEAD~1")),
    Step(("checkout", f"topic{SUFFIX}")),
    Step(("branch", "-D", f"third{SUFFIX}")),
    Step(("branch", f"fourth{SUFFIX}", "main")),
    Step(("switch", "--detach", "HEAD~1")),
    Step(("switch", f"topic{SUFFIX}")),
    Step(("mv", "new.py", "newer.py")),
    Step(("rm", "--cached", "-q", "newer.py")),
    Step(("tag", "-l")),
    Step(("config", "--get", "user.name")),
    Step(("remote", "-v")),
    Step(("remote", "get-url", "origin")),
    Step(("stash", "list")),
    Step(("reflog", "-3")),
    Step(("describe", "--always")),
    Step(("merge-base", "main", "HEAD")),
    Step(("rev-list", "--count", "main..HEAD")),
    Step(("shortlog", "-s")),
    Step(("diff", "HEAD~1", "HEAD", "--", "README.md")),
    Step(("commit", "--help"), code=129),
]


@pytest.fixture
def worktree(repo: Path, tmp_path: Path) -> Path:
    # main moves on after the sandbox branched, so `rebase main` has work to do.
    path = tmp_path / "worktrees" / "project-locki-abcd1234"
    git(repo, "worktree", "add", "-q", "-b", f"untitled{SUFFIX}", str(path), "origin/main")
    (repo / "later.txt").write_text("later\n")
    git(repo, "add", "later.txt")
    git(repo, "commit", "-q", "-m", "later on main")
    return path


def run(step: Step, caller: Caller) -> subprocess.CompletedProcess[str]:
    for name, text in step.files:
        (caller.worktree / name).write_text(text)
    decision = check_git(step.argv, caller)
    assert decision.allowed, f"{step.argv}: {explain(decision)}"
    stdin = decision.stdin_from.read_text() if decision.stdin_from else step.stdin
    return subprocess.run(
        ["git", *decision.argv], cwd=caller.cwd, input=stdin, capture_output=True,
        text=True, env={**os.environ, **GIT_ID, "GIT_EDITOR": "false"}, check=False,
    )


def test_git_accepts_the_normalised_workflow(worktree: Path) -> None:
    caller = Caller("abcd1234", worktree, worktree, frozenset({"origin"}))
    for step in STEPS:
        result = run(step, caller)
        assert result.returncode == step.code, (step.argv, result.stdout, result.stderr)

    log = git(worktree, "log", "--format=%s", "-3")
    assert log.splitlines()[0].startswith("Revert")
    assert git(worktree, "rev-parse", "--abbrev-ref", "HEAD") == f"topic{SUFFIX}"
