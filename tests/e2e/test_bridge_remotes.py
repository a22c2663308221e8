"""push, fetch, pull and stashes from inside real sandboxes, against a local bare remote.

The repository's `origin` is a bare repository on this host (a path remote the user
configured). Everything runs from inside the container through the shim, OpenSSH and
the daemon; what lands is read from the bare remote itself.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.conftest import Locki

pytestmark = pytest.mark.e2e


def inside(locki: Locki, repo: Path, sid: str, script: str) -> subprocess.CompletedProcess[str]:
    return locki("x", "-m", sid, "--", "sh", "-c", script, cwd=repo)


def sandbox(locki: Locki, repo: Path, *, new: bool = False) -> str:
    made = locki("x", *(["-n"] if new else []), "--", "git", "branch", "--show-current",
                 cwd=repo)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().removeprefix("untitled#locki-")


def remote_refs(origin: Path) -> dict[str, str]:
    listing = git(origin, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in listing.splitlines())


def test_the_agent_flow_lands_on_the_remote_exactly(locki: Locki, repo: Path,
                                                     tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    sid = sandbox(locki, repo)
    own = f"topic#locki-{sid}"
    flow = inside(locki, repo, sid, f"""set -e
git branch -m untitled#locki-{sid} '{own}'
echo one > feature.txt && git add feature.txt && git commit -qm 'add feature'
git push -q -u
git status -sb | head -1
echo two >> feature.txt && git commit -q --amend -am 'add feature v2'
if git push -q 2>/dev/null; then echo 'a non-fast-forward push went through'; exit 1; fi
git push -q --force-with-lease
""")
    assert flow.returncode == 0, flow.stdout + flow.stderr
    assert flow.stdout.splitlines() == [f"## {own}...origin/{own}"]
    assert git(repo, "config", f"branch.{own}.merge") == f"refs/heads/{own}"
    assert remote_refs(origin)[f"refs/heads/{own}"] == git(repo, "rev-parse", own)

    # Someone else moves main on the remote; the agent fetches and rebases onto it.
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    (other / "upstream.txt").write_text("upstream\n")
    git(other, "add", "upstream.txt")
    git(other, "commit", "-qm", "upstream change")
    git(other, "push", "-q", "origin", "main")
    synced = inside(locki, repo, sid, """set -e
git fetch -q
git log -1 --format=%s origin/main
git pull -q --rebase origin main
git push -q --force-with-lease
""")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert synced.stdout.splitlines() == ["upstream change"]
    refs = remote_refs(origin)
    assert sorted(refs) == ["refs/heads/main", f"refs/heads/{own}"]
    assert refs["refs/heads/main"] == git(other, "rev-parse", "HEAD")
    history = git(origin, "log", "--format=%s", f"refs/heads/{own}").splitlines()
    assert history == ["add feature v2", "upstream change", "second", "first"]
    assert refs[f"refs/heads/{own}"] == git(repo, "rev-parse", own)


def test_pushing_anything_else_is_refused_and_changes_nothing(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    origin = tmp_path / "origin.git"
    sid = sandbox(locki, repo)
    git(repo, "tag", "v1")
    git(repo, "branch", "theirs#locki-zzzz9999")
    git(repo, "push", "-q", "origin", "theirs#locki-zzzz9999")
    before = remote_refs(origin)
    attempts = [
        ["push", "origin", "main"], ["push", "origin", "HEAD:main"],
        ["push", "origin", f"untitled#locki-{sid}:main"], ["push", "origin", "+main"],
        ["push", "origin", "theirs#locki-zzzz9999"], ["push", "--tags"],
        ["push", "origin", "v1"], ["push", "origin", "refs/tags/v1"], ["push", "--follow-tags"],
        ["push", "--mirror"], ["push", "--all"], ["push", "-f"], ["push", str(origin)],
        ["push", f"file://{origin}"], ["push", "origin", "--delete", "theirs#locki-zzzz9999"],
        ["push", "origin", ":main"], ["push", "origin", "refs/heads/*:refs/heads/*"],
        ["push", "--receive-pack=touch /tmp/pwned", "origin"], ["fetch", str(origin)],
        ["fetch", "origin", "main:main"], ["fetch", "--tags"], ["pull", str(origin), "main"],
    ]
    script = "\n".join(f"git {' '.join(repr(a) for a in argv)} >/dev/null 2>>/tmp/err; "
                       "echo $?" for argv in attempts)
    tried = inside(locki, repo, sid, script)
    assert tried.stdout.split() == ["1"] * len(attempts), tried.stderr
    assert remote_refs(origin) == before
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse", "origin/main")
    errors = inside(locki, repo, sid, "cat /tmp/err").stdout
    assert errors.count("locki: denied:") == len(attempts), errors
    denied = (locki.data_dir.parent.parent / "state" / "locki" / "denied-commands.log")
    logged = [json.loads(line)["argv"][1:] for line in denied.read_text().splitlines()]
    assert logged == attempts


def test_push_default_upstream_onto_main_still_pushes_only_the_own_branch(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    origin = tmp_path / "origin.git"
    sid = sandbox(locki, repo)
    own = f"untitled#locki-{sid}"
    # The trap: the user's config sends a plain push of this branch to main.
    git(repo, "config", "push.default", "upstream")
    git(repo, "config", f"branch.{own}.remote", "origin")
    git(repo, "config", f"branch.{own}.merge", "refs/heads/main")
    made = inside(locki, repo, sid, "echo x > x.txt && git add x.txt && git commit -qm mine")
    assert made.returncode == 0, made.stderr
    worktree = Path(str(locki.sandboxes(repo)[0]["worktree"]))
    plain = git(worktree, "push", "--dry-run", "--porcelain")
    assert f"refs/heads/{own}:refs/heads/main" in plain  # what host git alone would do
    main_before = remote_refs(origin)["refs/heads/main"]

    pushed = inside(locki, repo, sid, "git push -q && git push -q --force-with-lease")
    assert pushed.returncode == 0, pushed.stderr
    refs = remote_refs(origin)
    assert refs["refs/heads/main"] == main_before
    assert refs[f"refs/heads/{own}"] == git(repo, "rev-parse", own)


def test_stashes_are_kept_apart_between_sandboxes_and_the_user(locki: Locki,
                                                               repo: Path) -> None:
    (repo / "README.md").write_text("the user's change\n")
    git(repo, "stash", "push", "-q", "-m", "the user's")
    user = git(repo, "rev-parse", "refs/stash")
    first = sandbox(locki, repo)
    second = sandbox(locki, repo, new=True)
    for sid in (first, second):
        made = inside(locki, repo, sid, f"echo {sid} > README.md && git stash push -q -m {sid}"
                                        " && git stash list && cat README.md")
        assert made.returncode == 0, made.stderr
        assert made.stdout.splitlines() == [f"stash@{{0}}: On untitled#locki-{sid}: {sid}",
                                            "hello"]
    refused = inside(locki, repo, first, "git stash pop 'refs/stash@{0}'; "
                                         f"git stash apply refs/locki/stash/{second}")
    assert refused.returncode == 1
    assert refused.stderr.count("locki: denied:") == 2, refused.stderr

    dropped = inside(locki, repo, first, "git stash drop && git stash list; git stash pop")
    assert dropped.returncode == 1  # nothing left to pop
    assert dropped.stdout.startswith("Dropped stash@{0} ("), dropped.stdout
    assert "No stash entries found." in dropped.stderr
    kept = inside(locki, repo, second, "git stash pop -q && cat README.md && git stash list")
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout == f"{second}\n"
    assert git(repo, "stash", "list") == "stash@{0}: On main: the user's"
    assert git(repo, "rev-parse", "refs/stash") == user


def test_push_opens_nothing_in_the_worktree(locki: Locki, repo: Path, tmp_path: Path) -> None:
    """Push runs while the sandbox runs, so it must not resolve worktree paths: with a
    work tree, git's pack-objects reads `<folder>/.gitattributes` for every file it sends.
    Here that folder becomes a symlink to a host folder whose `.gitattributes` is a FIFO:
    an open would hang the push."""
    sid = sandbox(locki, repo)
    made = inside(locki, repo, sid, "mkdir sub && echo x > sub/f && git add sub/f && "
                                    "git commit -qm sub")
    assert made.returncode == 0, made.stderr
    trap = tmp_path / "trap"
    trap.mkdir()
    os.mkfifo(trap / ".gitattributes")
    worktree = Path(str(locki.sandboxes(repo)[0]["worktree"]))
    (worktree / "sub").rename(worktree / "sub.real")
    (worktree / "sub").symlink_to(trap)

    pushed = inside(locki, repo, sid, "timeout 60 git push -q origin HEAD")
    assert pushed.returncode == 0, pushed.stderr
    with pytest.raises(OSError) as nobody:  # ENXIO: no process has the FIFO open to read
        os.close(os.open(trap / ".gitattributes", os.O_WRONLY | os.O_NONBLOCK))
    assert nobody.value.errno == errno.ENXIO
    assert git(tmp_path / "origin.git", "ls-tree", "-r", "--name-only",
               f"refs/heads/untitled#locki-{sid}").splitlines() == ["README.md", "app.py",
                                                                     "sub/f"]
