"""What the policy needs to know about a sandbox's repository, read with hardened host git.

The policy is pure; push, fetch and gh need a few facts about the repository first: the
configured remotes, the branch HEAD names, where a bare push would go, remotes whose
fetch refspecs write outside `refs/remotes/`, and the GitHub repository gh acts on.
They come from the repository's config and the worktree's HEAD in its git dir, both out
of the sandbox's reach; nothing here touches the network. The daemon gathers them for
each command, `locki bridge check` for its static answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from locki.bridge.model import Caller
from locki.core import git

# gh's own order for choosing the base repository among several remotes.
_GH_ORDER = ("upstream", "github", "origin")
_URL = re.compile(r"^(?:[a-z+]+://(?:[^@/]*@)?(?P<host>[^/:]+)(?::\d+)?/"
                  r"|(?:[^@/:]+@)?(?P<scp>[^/:]+):)(?P<owner>[^/]+)/(?P<repo>[^/]+?)"
                  r"(?:\.git)?/?$")
_KEYS = r"^(remote\.|branch\..+\.(remote|pushremote)$)"


@dataclass(frozen=True)
class RepoFacts:
    remotes: frozenset[str] = frozenset()
    head: str | None = None
    push_remote: str | None = None
    fetch_remote: str | None = None
    odd_fetch: frozenset[str] = frozenset()
    github: str | None = None

    def caller(self, sandbox_id: str, worktree: Path, cwd: Path) -> Caller:
        return Caller(sandbox_id, worktree, cwd, self.remotes, head=self.head,
                      push_remote=self.push_remote, fetch_remote=self.fetch_remote,
                      odd_fetch=self.odd_fetch,
                      github=self.github)


async def gather(repo: Path, git_dir: Path | None = None) -> RepoFacts:
    """The facts for the worktree whose git dir is `git_dir` (its admin dir): one host git
    run (the config) and one file read (HEAD), since the daemon does this per command."""
    found = await git.git(repo, "config", "--null", "--get-regexp", _KEYS, check=False,
                          git_dir=git_dir)
    config = _pairs(found.stdout)
    # `git remote` lists every name with a `remote.<name>.*` key; so does this.
    remotes = frozenset(k[len("remote."):].rpartition(".")[0] for k, _ in config
                        if k.startswith("remote.") and k.count(".") >= 2)
    branch = _head(git_dir)
    return RepoFacts(remotes, branch, _remote_for(config, branch, remotes, push=True),
                     _remote_for(config, branch, remotes, push=False),
                     _odd_fetch(config, remotes), github_repo(config, remotes))


def _head(git_dir: Path | None) -> str | None:
    """The branch HEAD names, from the worktree's own git dir (never the sandbox's side);
    None when detached or unknown (no git dir)."""
    if git_dir is None:
        return None
    try:
        text = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return None
    return text.removeprefix("ref: refs/heads/") if text.startswith("ref: refs/heads/") else None


def _pairs(text: str) -> list[tuple[str, str]]:
    """`git config --null --get-regexp` output: key, newline, value, NUL."""
    pairs = []
    for item in text.split("\0"):
        key, _, val = item.partition("\n")
        if key:
            pairs.append((key, val))
    return pairs


def _get(config: list[tuple[str, str]], key: str) -> str | None:
    # git prints section and variable names in lower case, subsections as they are.
    values = [v for k, v in config if k == key]
    return values[-1] if values else None


def _remote_for(config: list[tuple[str, str]], branch: str | None,
                remotes: frozenset[str], *, push: bool) -> str | None:
    """git's choice for a push (or fetch) that names no remote, if it is a configured one."""
    order = [f"branch.{branch}.pushremote", "remote.pushdefault"] if push else []
    order.append(f"branch.{branch}.remote")
    for key in order:
        if branch is None and key.startswith("branch."):
            continue
        chosen = _get(config, key)
        if chosen:
            return chosen if chosen in remotes else None
    return "origin" if "origin" in remotes else None


def _of_remote(config: list[tuple[str, str]], suffix: str) -> Mapping[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, val in config:
        if key.startswith("remote.") and key.endswith(suffix):
            found.setdefault(key[len("remote."):-len(suffix)], []).append(val)
    return found


def _odd_fetch(config: list[tuple[str, str]], remotes: frozenset[str]) -> frozenset[str]:
    odd = set()
    for name, specs in _of_remote(config, ".fetch").items():
        for spec in specs:
            _, colon, dst = spec.lstrip("+").partition(":")
            if spec.startswith("^") or not colon:
                continue  # negative refspecs and `src` alone write no local ref
            if not dst.startswith(f"refs/remotes/{name}/"):
                odd.add(name)
    return frozenset(odd & remotes)


def github_repo(config: list[tuple[str, str]], remotes: frozenset[str]) -> str | None:
    """`HOST/OWNER/REPO` for gh, from the remote gh itself would take as the base repo."""
    urls = {name: values[-1] for name, values in _of_remote(config, ".url").items()
            if name in remotes}
    resolved = [n for n, v in _of_remote(config, ".gh-resolved").items() if "base" in v]
    ranked = [*resolved, *_GH_ORDER, *sorted(urls)]
    for name in ranked:
        match = _URL.match(urls.get(name, ""))
        if match:
            host = match.group("host") or match.group("scp")
            return f"{host}/{match.group('owner')}/{match.group('repo')}"
    return None
