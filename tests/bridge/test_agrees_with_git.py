"""For reads, the normalised argv prints exactly what the agent's own words print.

The daemon runs `Decision.argv`, never the raw words; if normalising changed what git
outputs (e.g. `rev-parse` echoing `--end-of-options` back), agents would see garbage.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from locki.bridge.policy import Caller, check_git
from tests.conftest import git

READS = [
    ["rev-parse", "--abbrev-ref", "HEAD"],
    ["rev-parse", "--short", "HEAD~1"],
    ["rev-parse", "--verify", "-q", "main"],
    ["rev-parse", "--show-toplevel"],
    ["log", "--oneline", "-2"],
    ["log", "--format=%s", "main..HEAD"],
    ["show", "--stat", "HEAD"],
    ["show", "HEAD:README.md"],
    ["diff", "--stat", "HEAD~1"],
    ["diff", "HEAD~1", "--", "README.md"],
    ["status", "--short", "--branch"],
    ["ls-files"],
    ["ls-tree", "-r", "--name-only", "HEAD"],
    ["cat-file", "-p", "HEAD:README.md"],
    ["describe", "--always"],
    ["merge-base", "HEAD", "main"],
    ["for-each-ref", "--format=%(refname)"],
    ["branch", "--list"],
    ["branch", "-a"],
    ["branch", "--contains", "HEAD~1"],
    ["rev-list", "--count", "HEAD"],
    ["shortlog", "-s", "HEAD"],
    ["grep", "-n", "hello"],
    ["blame", "--porcelain", "README.md"],
    ["tag", "-l"],
]


@pytest.fixture(scope="module")
def worktree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("agree")
    repo = root / "repo"
    git(root, "init", "-q", "-b", "main", str(repo))
    (repo / "README.md").write_text("hello\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "one")
    (repo / "README.md").write_text("hello again\n")
    git(repo, "commit", "-q", "-am", "two")
    git(repo, "tag", "v1")
    wt = root / "wt"
    git(repo, "worktree", "add", "-q", "-b", "topic#locki-abcd1234", str(wt), "main")
    (wt / "README.md").write_text("hello from the sandbox\n")
    git(wt, "commit", "-q", "-am", "three")
    return wt


@pytest.mark.parametrize("args", READS, ids=[" ".join(a) for a in READS])
def test_normalised_read_prints_the_same(worktree: Path, args: list[str]) -> None:
    decision = check_git(args, Caller("abcd1234", worktree, worktree))
    assert decision.allowed, decision.reason

    def run(argv: list[str] | tuple[str, ...]) -> str:
        done = subprocess.run(["git", *argv], cwd=worktree, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run(decision.argv) == run(args)
