"""The hostile corpus, run for real from inside a sandbox through the shim and daemon.

Every case of `tests/bridge/cases/` (argv injection, program-running and file-writing
options, writes onto `main` or another sandbox's branch, path escapes, the allowed
workflow) plus config-exec traps planted in the worktree (a nested repo whose config
runs `core.fsmonitor`, `.gitattributes` naming drivers, a symlink out) is sent by the
real OpenSSH client from the container. After all of them: no marker file exists on the
host, and no ref outside the caller's namespace has moved.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.conftest import Locki, incus

pytestmark = pytest.mark.e2e
CASES = sorted((Path(__file__).parent.parent / "bridge" / "cases").glob("*.toml"))

RUNNER = r"""
import json, subprocess, sys
cases = json.load(open(sys.argv[1]))
out = []
for case in cases:
    done = subprocess.run([case["program"], *case["argv"]], cwd=case["cwd"], capture_output=True,
                          input=b"msg from stdin\n", timeout=60)
    out.append({"rc": done.returncode, "err": done.stderr.decode(errors="replace")[:300]})
json.dump(out, open(sys.argv[2], "w"))
"""


def _refs(repo: Path, own: str) -> dict[str, str]:
    listing = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    refs = dict(line.split(" ", 1) for line in listing.splitlines())
    return {name: sha for name, sha in refs.items() if not name.endswith(f"#locki-{own}")}


def _plant_traps(worktree: Path, markers: Path) -> None:
    """What a hostile agent can write: every trap would touch a file in `markers`."""
    trap = worktree / "trap.sh"
    trap.write_text(f"#!/bin/sh\ntouch '{markers}/ran-'$$\ncat\n")
    trap.chmod(0o755)
    nested = worktree / "nested"
    git(worktree, "init", "-q", str(nested))
    for key in ("core.fsmonitor", "core.pager", "core.editor", "diff.external",
                "core.sshCommand", "filter.evil.clean", "filter.evil.smudge",
                "diff.evil.textconv", "merge.evil.driver"):
        git(nested, "config", key, str(trap))
    git(nested, "config", "core.hooksPath", str(worktree / "hooks"))
    (worktree / "hooks").mkdir()
    for hook in ("pre-commit", "commit-msg", "post-checkout", "reference-transaction"):
        (worktree / "hooks" / hook).write_text(f"#!/bin/sh\ntouch '{markers}/hook-{hook}'\n")
        (worktree / "hooks" / hook).chmod(0o755)
    (worktree / ".gitattributes").write_text("* diff=evil filter=evil merge=evil\n")
    (nested / ".gitattributes").write_text("* diff=evil filter=evil merge=evil\n")
    (worktree / "escape").symlink_to("/")


def test_hostile_corpus_from_inside_changes_nothing_outside(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    other = json.loads(locki("new", "--json", cwd=repo).stdout)
    made = locki("x", "-n", "--", "true", cwd=repo)
    assert made.returncode == 0, made.stderr
    me = next(b for b in locki.sandboxes(repo) if b["id"] != other["id"])
    sid, worktree = str(me["id"]), Path(str(me["worktree"]))
    markers = tmp_path / "markers"  # on the host only: no sandbox can write here
    markers.mkdir()
    _plant_traps(worktree, markers)
    # The remotes tests/bridge/support.py's caller has: `mirror` fetches into local branches.
    origin = git(repo, "remote", "get-url", "origin")
    git(repo, "remote", "add", "upstream", origin)
    git(repo, "remote", "add", "mirror", origin)
    git(repo, "config", "--replace-all", "remote.mirror.fetch", "+refs/heads/*:refs/heads/*")
    git(repo, "fetch", "-q", "upstream")  # allowed fetches may update upstream/* (unchanged)
    other_files = sorted(p.name for p in Path(other["worktree"]).iterdir())

    cases = []
    for path in CASES:
        for case in tomllib.loads(path.read_text())["case"]:
            argv = [a.replace("abcd1234", sid).replace("zzzz9999", other["id"])
                     .replace("/tmp/", f"{markers}/") for a in case["argv"]]
            if any("\0" in a for a in argv):
                continue  # no process can pass a NUL in argv; the pure tests cover it
            cases.append({"name": f"{path.stem}: {case['name']}", "argv": argv,
                          "allowed": case["allowed"], "cwd": str(worktree),
                          "program": case.get("program", "git")})
    for sub in ("nested", "escape", "escape/etc"):
        for argv in (["status"], ["diff"], ["log", "-p", "-1"], ["add", "-A"],
                     ["commit", "-qam", "x"]):
            cases.append({"name": f"trap in {sub}: {argv}", "argv": argv, "allowed": False,
                          "cwd": str(worktree / sub), "program": "git"})
    for argv in (["switch", "-c", f"attrs#locki-{sid}"], ["add", ".gitattributes", "trap.sh"],
                 ["commit", "-qm", "with traps"], ["diff", "HEAD~1"],
                 ["log", "-p", "-2"], ["show"], ["status"]):
        cases.append({"name": f"attributes: {argv}", "argv": argv, "allowed": True,
                      "cwd": str(worktree), "program": "git"})
    assert len(cases) >= 300
    before = _refs(repo, sid)

    name = f"locki-{sid}"
    (worktree / ".cases.json").write_text(json.dumps(cases))
    runner = subprocess.run(
        ["incus", "--project", locki.project, "exec", name, "--cwd", str(worktree), "--",
         "python3", "-c", RUNNER, str(worktree / ".cases.json"), "/tmp/results.json"],
        capture_output=True, text=True, timeout=1200,
    )
    assert runner.returncode == 0, runner.stderr
    results = json.loads(incus("--project", locki.project, "exec", name, "--", "cat",
                               "/tmp/results.json").stdout)

    unreachable = [c["name"] for c, r in zip(cases, results, strict=True) if r["rc"] == 255]
    assert unreachable == [], "\n".join(unreachable)
    wrongly_allowed = [
        (case["name"], result["rc"], result["err"][:120])
        for case, result in zip(cases, results, strict=True)
        if not case["allowed"] and (result["rc"] == 0 or "denied" not in result["err"])
        and not case["name"].startswith("trap in")
    ]
    assert wrongly_allowed == []
    # A cwd through a symlink out of the worktree is refused; in the nested repo, git
    # still works on the real worktree (the git dir comes from locki's records), which
    # is harmless as long as no marker appears.
    escapes = [(c["name"], r["err"]) for c, r in zip(cases, results, strict=True)
               if c["name"].startswith("trap in escape") and r["rc"] == 0]
    assert escapes == []
    assert sorted(p.name for p in markers.iterdir()) == []
    assert _refs(repo, sid) == before
    assert sorted(p.name for p in Path(other["worktree"]).iterdir()) == other_files
    # The attribute cases did run for real (they are allowed) and committed in-namespace.
    attrs = [(c["argv"], r["rc"], r["err"]) for c, r in zip(cases, results, strict=True)
             if c["name"].startswith("attributes")]
    own = git(repo, "for-each-ref", "--format=%(refname) %(subject)", "refs/heads/")
    assert any(line.split(" ", 1)[0].endswith(f"#locki-{sid}") and line.endswith(" with traps")
               for line in own.splitlines()), (own, attrs)
