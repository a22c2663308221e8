"""Includes: a second repository's worktree grafted into a sandbox, on the real daemon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.conftest import Locki

pytestmark = pytest.mark.e2e


def _second_repo(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "lib.txt").write_text("lib\n")
    git(path, "add", "lib.txt")
    git(path, "commit", "-q", "-m", "lib first")
    return path


def test_include_a_repo_with_spaces_and_a_bridged_commit_lands_there(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    lib = _second_repo(tmp_path / "other place ü", "my lib ü")
    linked = tmp_path / "linked checkout"
    git(lib, "worktree", "add", "-q", "-b", "side", str(linked))

    assert locki("x", "--", "true", cwd=repo).returncode == 0
    sid = str(locki.sandboxes(repo)[0]["id"])
    # A path inside a linked worktree means its main repository.
    added = locki("include", "--repo", str(linked), cwd=repo)
    assert added.returncode == 0, added.stderr
    rows = locki.sandboxes(repo)[0]["includes"]
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    assert row["name"] == "my lib ü" and row["repo"] == str(lib)
    assert row["branch"] == f"untitled#locki-{sid}"

    wt = Path(str(locki.sandboxes(repo)[0]["worktree"]))
    inside = wt / ".locki" / "include" / "my lib ü"
    work = locki("x", "--", "sh", "-c",
                 f"cd '{inside}' && cat lib.txt && echo more > more.txt && git add more.txt"
                 f" && git commit -q -m 'from the sandbox'"
                 f" && git branch -m untitled#locki-{sid} topic#locki-{sid}"
                 " && git rev-parse --abbrev-ref HEAD", cwd=repo)
    assert work.returncode == 0, work.stderr
    assert work.stdout.splitlines() == ["lib", f"topic#locki-{sid}"]
    assert git(lib, "log", "-1", "--format=%s", f"topic#locki-{sid}") == "from the sandbox"
    assert git(lib, "rev-parse", "main") == git(lib, "rev-parse", "main")
    # The sandbox's own repository saw nothing of it.
    assert "from the sandbox" not in git(repo, "log", "--all", "--format=%s")

    # The bridge keeps to that repository's own branches too.
    denied = locki("x", "--", "sh", "-c", f"cd '{inside}' && git branch -f main HEAD",
                   cwd=repo)
    assert denied.returncode == 1 and "denied" in denied.stderr
    assert git(lib, "log", "-1", "--format=%s", "main") == "lib first"

    # `locki x` from the include's folder on the host runs in the include inside.
    host_side = Path(str(row["worktree"]))
    pwd = locki("x", "--", "pwd", cwd=host_side)
    assert pwd.returncode == 0, pwd.stderr
    assert pwd.stdout.strip() == str(inside)


def test_same_folder_names_get_distinct_names_and_remove_is_guarded(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    one = _second_repo(tmp_path / "a", "lib")
    two = _second_repo(tmp_path / "b", "lib")
    assert locki("x", "--", "true", cwd=repo).returncode == 0
    sid = str(locki.sandboxes(repo)[0]["id"])
    assert locki("include", "--repo", str(one), cwd=repo).returncode == 0
    # From the other side: include the repository you are in, into a named sandbox.
    this = locki("include", "--this", "-m", sid, "--json", cwd=two)
    assert this.returncode == 0, this.stderr
    names = {r["name"]: r["repo"] for r in json.loads(this.stdout)}
    assert names == {"lib": str(one), "lib-2": str(two)}
    again = locki("include", "--repo", str(one), cwd=repo)
    assert again.returncode == 1 and "already included" in again.stderr

    wt = Path(str(locki.sandboxes(repo)[0]["worktree"]))
    seen = locki("x", "--", "sh", "-c",
                 f"cat '{wt}/.locki/include/lib/lib.txt' '{wt}/.locki/include/lib-2/lib.txt'"
                 f" && echo wip > '{wt}/.locki/include/lib-2/wip.txt'", cwd=repo)
    assert seen.returncode == 0, seen.stderr

    host = Path(next(r["worktree"] for r in json.loads(this.stdout) if r["name"] == "lib-2"))
    refused = locki("include", "--remove", "lib-2", cwd=repo)
    assert refused.returncode == 1 and "uncommitted" in refused.stderr
    assert (host / "wip.txt").read_text() == "wip\n"
    forced = locki("include", "--remove", "lib-2", "--force", cwd=repo)
    assert forced.returncode == 0, forced.stderr
    assert not host.exists()
    # The branch stays; the mount is gone inside.
    assert git(two, "branch", "--list", f"untitled#locki-{sid}")
    gone = locki("x", "--", "test", "-e", f"{wt}/.locki/include/lib-2/lib.txt", cwd=repo)
    assert gone.returncode == 1
    left = locki.sandboxes(repo)[0]["includes"]
    assert [r["name"] for r in left] == ["lib"]  # type: ignore[union-attr]

    # A branch checked out elsewhere: the include starts on a variant of it.
    git(two, "checkout", "-q", f"untitled#locki-{sid}")
    back = locki("include", "--repo", str(two), "--json", cwd=repo)
    assert back.returncode == 0, back.stderr
    row = next(r for r in json.loads(back.stdout) if r["repo"] == str(two))
    assert row["branch"] == f"untitled-2#locki-{sid}"

    # Removing the sandbox removes every include's worktree and keeps their branches.
    removed = locki("rm", cwd=repo)
    assert removed.returncode == 0, removed.stderr
    assert str(tmp_path) not in git(one, "worktree", "list").replace(str(one), "")
    assert git(one, "branch", "--list", f"untitled#locki-{sid}")
    assert not any(locki.data_dir.joinpath("worktrees").iterdir())


def test_remove_refused_for_an_include_with_work_changes_nothing(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    lib = _second_repo(tmp_path, "lib")
    made = locki("new", "--json", cwd=repo)
    assert made.returncode == 0, made.stderr
    sid = json.loads(made.stdout)["id"]
    assert locki("include", "--repo", str(lib), "-m", sid, cwd=repo).returncode == 0
    host = Path(str(locki.sandboxes(repo)[0]["includes"][0]["worktree"]))  # type: ignore[index]
    with (host / "lib.txt").open("a") as dirty:
        dirty.write("x\n")
    state = locki.config_dir / "sandboxes.toml"
    before = state.read_bytes()

    for argv in (["remove", "-m", sid], ["remove", "-m", sid, "--delete-branch"]):
        refused = locki(*argv, cwd=repo)
        assert refused.returncode == 1, refused.stderr
        assert "include `lib`" in refused.stderr and "uncommitted" in refused.stderr
        assert "hint:" in refused.stderr
        assert state.read_bytes() == before
    row = locki.sandboxes(repo)[0]
    assert row["id"] == sid and row["desired"] == "running"
    # Still selectable, still guarded: a plain apply destroys nothing.
    assert locki("apply", cwd=repo).returncode == 0
    assert (host / "lib.txt").read_text() == "lib\nx\n"

    forced = locki("remove", "-m", sid, "--force", cwd=repo)
    assert forced.returncode == 0, forced.stderr
    assert not host.exists()
    assert locki.sandboxes(repo) == []
    assert git(lib, "branch", "--list", f"untitled#locki-{sid}")
