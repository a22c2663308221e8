"""The repository facts the policy leans on, read from a real repository's config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from locki.bridge.facts import RepoFacts, gather
from locki.core import git as hostgit
from tests.conftest import git

OWN = "topic#locki-abcd1234"


@pytest.fixture
def worktree(repo: Path) -> Path:
    path = repo.parent / "wt"
    git(repo, "worktree", "add", "-q", "-b", OWN, str(path))
    return path


def facts_of(repo: Path, worktree: Path) -> RepoFacts:
    async def read() -> RepoFacts:
        admin = hostgit.admin_dir(await hostgit.common_dir(repo), worktree)
        return await gather(repo, admin)

    return asyncio.run(read())


def test_plain_clone(repo: Path, worktree: Path) -> None:
    found = facts_of(repo, worktree)

    assert found.remotes == {"origin"}
    assert found.head == OWN
    assert found.push_remote == found.fetch_remote == "origin"
    assert found.odd_fetch == frozenset()
    assert found.github is None  # origin is a path: no GitHub repository for gh


def test_remotes_chosen_as_git_and_gh_choose_them(repo: Path, worktree: Path) -> None:
    git(repo, "remote", "add", "upstream", "git@github.com:acme/widget.git")
    git(repo, "remote", "add", "fork", "https://me:TOKEN@github.com/me/widget")
    git(repo, "config", "remote.pushDefault", "fork")
    git(repo, "config", f"branch.{OWN}.remote", "upstream")
    git(repo, "config", "--add", "remote.upstream.fetch", "+refs/tags/*:refs/tags/*")
    found = facts_of(repo, worktree)

    assert found.push_remote == "fork"
    assert found.fetch_remote == "upstream"
    assert found.odd_fetch == {"upstream"}
    assert found.github == "github.com/acme/widget"  # upstream before fork, as gh does

    git(repo, "config", "remote.fork.gh-resolved", "base")
    git(repo, "config", f"branch.{OWN}.pushRemote", "upstream")
    again = facts_of(repo, worktree)
    assert again.github == "github.com/me/widget"
    assert again.push_remote == "upstream"


def test_a_push_remote_that_is_not_configured_is_none(repo: Path, worktree: Path) -> None:
    git(repo, "config", "remote.pushDefault", "/tmp/elsewhere.git")
    assert facts_of(repo, worktree).push_remote is None


def test_detached_head(repo: Path, worktree: Path) -> None:
    git(worktree, "switch", "-q", "--detach")
    assert facts_of(repo, worktree).head is None
