"""gh from inside a real sandbox, through the bridge, against a faithful fake of GitHub.

No GitHub is reachable here, so host gh is `fake_gh.py` first on the daemon's PATH (the
process-runner seam): it records every call and keeps PRs whose heads must exist on the
bare remote. `origin` is `https://github.com/acme/widget.git` to gh and, through
`url.<path>.insteadOf`, the local bare repository to git.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.conftest import Locki

pytestmark = pytest.mark.e2e
TOKEN = "gho_FAKE0123456789locki0123456789abcd"
URL = "https://github.com/acme/widget.git"


@pytest.fixture
def gh_state(locki: Locki, repo: Path, tmp_path: Path) -> Path:
    state = tmp_path / "gh-state"
    state.mkdir()
    origin = tmp_path / "origin.git"
    (state / "calls.jsonl").write_text("")
    (state / "prs.json").write_text(json.dumps([
        {"number": 1, "title": "The user's PR", "body": "", "headRefName": "user-work",
         "baseRefName": "main", "isCrossRepository": False, "state": "OPEN",
         "url": "https://github.com/acme/widget/pull/1", "isDraft": False, "labels": [],
         "comments": []},
    ]))
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    fake = Path(__file__).with_name("fake_gh.py")
    (bin_dir / "gh").write_text(
        f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(fake))} "
        f"{shlex.quote(str(state))} {shlex.quote(str(origin))} \"$@\"\n")
    (bin_dir / "gh").chmod(0o755)
    locki.env["PATH"] = f"{bin_dir}:{locki.env['PATH']}"
    locki.env["GH_TOKEN"] = TOKEN  # the user's login, on the host only
    git(repo, "remote", "set-url", "origin", URL)
    git(repo, "config", f"url.{origin}.insteadOf", URL)
    return state


def calls(state: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in (state / "calls.jsonl").read_text().splitlines()]


def test_an_agent_opens_and_updates_its_pr_and_nothing_else(
    locki: Locki, repo: Path, gh_state: Path
) -> None:
    made = locki("x", "--", "git", "branch", "--show-current", cwd=repo)
    assert made.returncode == 0, made.stderr
    sid = made.stdout.strip().removeprefix("untitled#locki-")
    own = f"feat#locki-{sid}"

    def inside(script: str) -> tuple[int, str, str]:
        done = locki("x", "-m", sid, "--", "sh", "-c", script, cwd=repo)
        return done.returncode, done.stdout, done.stderr

    early = inside(f"git branch -m untitled#locki-{sid} '{own}' && printf 'Why:\\n- x\\n' "
                   "> body.md && gh pr create -t 'Add feature' -F body.md")
    assert early[0] == 1
    assert "Head ref must be a branch" in early[2]  # not pushed yet: GitHub refuses

    code, out, err = inside("git commit -q --allow-empty -m feat && git push -q -u && "
                            "gh pr create -t 'Add feature' -F body.md && gh pr view && "
                            "gh pr edit --add-label ready && gh pr comment -b 'CI is green'"
                            " && gh pr list && gh auth status")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "https://github.com/acme/widget/pull/2"
    assert "title:\tAdd feature" in lines and "Why:" in lines
    assert "https://github.com/acme/widget/pull/2#issuecomment-1001" in lines
    assert f"2\tAdd feature\t{own}\tOPEN\t2026-12-04T10:00:00Z" in lines
    assert TOKEN not in out + err

    recorded = [json.loads(line) for line in (gh_state / "calls.jsonl").read_text()
                .splitlines()]
    lookup = ["pr", "view", "--json=number,headRefName,isCrossRepository", "--", own]
    assert [c["argv"] for c in recorded] == [
        ["pr", "create", f"--head={own}", "--title=Add feature", "--body-file=-"],
        ["pr", "create", f"--head={own}", "--title=Add feature", "--body-file=-"],
        ["pr", "view", "--", own],
        lookup, ["pr", "edit", "--add-label=ready", "--", "2"],
        lookup, ["pr", "comment", "--body=CI is green", "--", "2"],
        ["pr", "list"], ["auth", "status"],
    ]
    assert {c["GH_REPO"] for c in recorded} == {"github.com/acme/widget"}
    assert {c["cwd"] for c in recorded} == {"/"}  # never the worktree
    assert all(c["logged_in"] for c in recorded)
    prs = {p["number"]: p for p in json.loads((gh_state / "prs.json").read_text())}
    assert prs[2]["body"] == "Why:\n- x\n"
    assert prs[2]["labels"] == [{"name": "ready"}]
    assert prs[2]["comments"] == ["CI is green"]

    # PR #1 is the user's, #3 a fork's branch that happens to carry this sandbox's name.
    prs[3] = {**prs[2], "number": 3, "isCrossRepository": True, "comments": []}
    (gh_state / "prs.json").write_text(json.dumps(list(prs.values())))
    before = calls(gh_state)
    refused = [
        "gh pr comment 1 -b hijack", "gh pr edit 1 -t hijack", "gh pr edit 3 -t hijack",
        "gh pr create -t x -b y -H main", "gh pr view -R other/repo 1", "gh pr view --web",
        "gh auth token", "gh auth status --show-token", "gh api -X POST repos/acme/widget/issues",
        "gh api repos/acme/widget/issues -f title=x", "gh api user", "gh secret list",
        "gh release create v1", "gh workflow run ci.yml", "gh extension install a/b",
        "gh alias set x y", "gh config get oauth_token", "gh repo delete --yes",
        "gh pr merge 2", "gh pr view --json title --jq env.GH_TOKEN",
    ]
    for command in refused:
        code, out, err = inside(command)
        assert code == 1, (command, out, err)
        assert err.startswith("locki: denied:"), (command, err)
        assert TOKEN not in out + err
    lookups = [["pr", "view", "--json=number,headRefName,isCrossRepository", "--", n]
               for n in ("1", "1", "3")]
    assert calls(gh_state)[len(before):] == lookups  # looked up, never acted on
    assert json.loads((gh_state / "prs.json").read_text())[0]["comments"] == []

    # The token is nowhere inside: not in the environment, not in any file locki wrote.
    code, out, err = inside(f"env; grep -rls {TOKEN} /etc /root /run /tmp /usr/local "
                            "2>/dev/null; true")
    assert code == 0, err
    assert TOKEN not in out
    assert "GH_TOKEN" not in out
