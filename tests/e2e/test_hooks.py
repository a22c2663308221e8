"""Git hooks of a sandbox's worktree run inside its container, never on the host.

Every hook here leaves a marker in a folder that exists only inside the container
(`/var/tmp/...`, made by the test in the container): a hook that ran on the host fails
to write it there and leaves it under the host's `/var/tmp` instead, which each test
checks is absent.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GIT_ID, git
from tests.e2e.conftest import Locki, incus
from tests.e2e.test_status_gc_loop import _start_daemon, _wait

pytestmark = pytest.mark.e2e


@pytest.fixture
def marks() -> Iterator[Path]:
    """A marker folder name no host process uses; the host copy must never appear."""
    folder = Path("/var/tmp") / f"locki-hooktest-{secrets.token_hex(6)}"
    yield folder
    assert not folder.exists(), f"a hook ran on the host: {sorted(os.listdir(folder))}"


def _hook(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _ready(locki: Locki, repo: Path, marks: Path) -> tuple[str, Path]:
    made = locki("x", "--", "mkdir", "-p", str(marks), cwd=repo)
    assert made.returncode == 0, made.stderr
    sid = str(locki.sandboxes(repo)[0]["id"])
    worktree = Path(str(locki.sandboxes(repo)[0]["worktree"]))
    return sid, worktree


def _inside(locki: Locki, repo: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return locki("x", "--", *command, cwd=repo)


def test_bridged_commit_runs_the_repo_hooks_inside(locki: Locki, repo: Path,
                                                    marks: Path) -> None:
    hooks = repo / ".git" / "hooks"
    # pre-commit sees the in-flight index (commit -a stages into index.lock first).
    _hook(hooks / "pre-commit", f"""echo "$IS_SANDBOX $GIT_INDEX_FILE" > {marks}/pre-commit
git diff --cached --name-only > {marks}/staged
if git diff --cached --name-only | grep -q '^block'; then
    echo 'pre-commit: refusing block' >&2; exit 1
fi
""")
    _hook(hooks / "commit-msg", f"""touch {marks}/commit-msg
printf '\\nHook-Trailer: from-the-sandbox\\n' >> "$1"
""")
    _hook(hooks / "post-commit", f"touch {marks}/post-commit\n")
    sid, worktree = _ready(locki, repo, marks)

    edited = _inside(locki, repo, "sh", "-c",
                     "echo changed >> app.py && git commit -qam 'edit app'")
    assert edited.returncode == 0, edited.stderr
    seen = _inside(locki, repo, "cat", f"{marks}/pre-commit", f"{marks}/staged")
    assert seen.stdout.startswith("1 "), seen.stdout  # IS_SANDBOX=1: ran in the container
    assert "index.lock" in seen.stdout and "app.py" in seen.stdout
    message = git(repo, "log", "-1", "--format=%B", f"untitled#locki-{sid}")
    assert message.startswith("edit app") and "Hook-Trailer: from-the-sandbox" in message
    assert _inside(locki, repo, "test", "-e", f"{marks}/post-commit").returncode == 0

    head = git(repo, "rev-parse", f"untitled#locki-{sid}")
    blocked = _inside(locki, repo, "sh", "-c", "echo x > block && git add block && "
                      "git commit -qm 'must not land'")
    assert blocked.returncode == 1
    assert "pre-commit: refusing block" in blocked.stderr
    assert git(repo, "rev-parse", f"untitled#locki-{sid}") == head
    assert worktree.is_dir()


def test_husky_style_hooks_path_and_lint_staged_git_add(locki: Locki, repo: Path,
                                                         marks: Path) -> None:
    git(repo, "config", "core.hooksPath", ".husky/_")
    sid, worktree = _ready(locki, repo, marks)
    # The hook lives in the worktree (the agent's to write) and sources a helper beside
    # it by its own path, as husky's do; it formats and stages a file (lint-staged).
    made = _inside(locki, repo, "sh", "-c", f"""mkdir -p .husky/_ &&
printf 'touch {marks}/husky-helper\\n' > .husky/_/h &&
printf '#!/bin/sh\\n. "$(dirname "$0")/h"\\necho formatted > fmt.txt\\ngit add fmt.txt\\n' \\
    > .husky/_/pre-commit && chmod +x .husky/_/pre-commit""")
    assert made.returncode == 0, made.stderr
    done = _inside(locki, repo, "sh", "-c", "echo new > a.txt && git add a.txt && "
                   "git commit -qm 'with lint-staged'")
    assert done.returncode == 0, done.stderr
    files = git(repo, "show", "--name-only", "--format=", f"untitled#locki-{sid}")
    assert sorted(files.split()) == ["a.txt", "fmt.txt"]
    assert _inside(locki, repo, "test", "-e", f"{marks}/husky-helper").returncode == 0
    clean = _inside(locki, repo, "git", "status", "--porcelain", "--untracked-files=no")
    assert clean.stdout == "", clean.stdout
    assert (worktree / "fmt.txt").read_text() == "formatted\n"


def test_host_git_in_the_worktree_runs_hooks_inside(locki: Locki, repo: Path,
                                                     marks: Path) -> None:
    _hook(repo / ".git" / "hooks" / "commit-msg", f"""touch {marks}/host-commit-msg
printf '\\nSigned-off-by: hook <hook@sandbox>\\n' >> "$1"
""")
    sid, worktree = _ready(locki, repo, marks)
    # The user's own git, in a shell or an IDE on the host, in the sandbox's worktree.
    (worktree / "host.txt").write_text("from the host\n")
    git(worktree, "add", "host.txt")
    git(worktree, "commit", "-qm", "by the user")
    assert "Signed-off-by: hook" in git(worktree, "log", "-1", "--format=%B")
    assert _inside(locki, repo, "test", "-e", f"{marks}/host-commit-msg").returncode == 0

    # A stopped container is started for the hook.
    incus("--project", locki.project, "stop", "--force", f"locki-{sid}")
    (worktree / "host2.txt").write_text("again\n")
    git(worktree, "add", "host2.txt")
    git(worktree, "commit", "-qm", "container was stopped")
    assert "Signed-off-by: hook" in git(worktree, "log", "-1", "--format=%B")
    state = incus("--project", locki.project, "list", f"locki-{sid}", "--format", "csv",
                  "--columns", "s").stdout.strip()
    assert state == "RUNNING"


def test_a_failing_hook_blocks_host_git_and_a_missing_sandbox_runs_none(
        locki: Locki, repo: Path, marks: Path) -> None:
    _hook(repo / ".git" / "hooks" / "pre-commit", f"touch {marks}/ran; exit 3\n")
    _, worktree = _ready(locki, repo, marks)
    (worktree / "f.txt").write_text("x\n")
    git(worktree, "add", "f.txt")
    refused = subprocess.run(["git", "commit", "-qm", "no"], cwd=worktree,
                             capture_output=True, text=True, env={**os.environ, **GIT_ID})
    assert refused.returncode != 0
    assert _inside(locki, repo, "test", "-e", f"{marks}/ran").returncode == 0
    # The trampoline of a sandbox that is no longer desired runs nothing anywhere.
    hooks_dir = locki.data_dir / "hooks" / worktree.name
    trampoline = hooks_dir / "pre-commit"
    desired = locki.config_dir / "sandboxes.toml"
    saved = desired.read_text()
    desired.write_text("")
    try:
        gone = subprocess.run([str(trampoline)], cwd=worktree, capture_output=True,
                              text=True, env={**os.environ, **GIT_ID})
    finally:
        desired.write_text(saved)
    assert gone.returncode == 0
    assert "not run" in gone.stderr


def test_a_tampered_pointer_is_restored_and_no_hook_runs_on_the_host(
        locki: Locki, repo: Path, marks: Path) -> None:
    sid, worktree = _ready(locki, repo, marks)
    # The sandbox points `.git` at a repository of its making whose config runs a hook
    # from a folder it controls.
    evil = _inside(locki, repo, "env", f"W={worktree}", f"M={marks}", "sh", "-c", """set -e
cd /tmp && /usr/bin/git init -q evil
/usr/bin/git -C /tmp/evil config core.hooksPath "$W/.evil-hooks"
mkdir -p "$W/.evil-hooks"
printf '#!/bin/sh\\nmkdir -p %s && touch %s/EVIL\\n' "$M" "$M" > "$W/.evil-hooks/pre-commit"
chmod +x "$W/.evil-hooks/pre-commit"
cp -r /tmp/evil/.git "$W/.evil-git"
printf 'gitdir: %s/.evil-git\\n' "$W" > "$W/.git"
""")
    assert evil.returncode == 0, evil.stderr
    assert ".evil-git" in (worktree / ".git").read_text(), evil.stdout + evil.stderr
    planned = locki("plan", cwd=repo)
    assert "tampering" in planned.stdout, planned.stdout
    status = locki("status", cwd=repo)
    assert "Degraded" in status.stdout, status.stdout
    applied = locki("apply", cwd=repo)
    assert applied.returncode == 0, applied.stderr
    assert (worktree / ".git").read_text().startswith("gitdir: ")
    assert ".evil-git" not in (worktree / ".git").read_text()
    (worktree / "after.txt").write_text("x\n")
    git(worktree, "add", "after.txt")
    git(worktree, "commit", "-qm", "after the restore")
    assert git(repo, "log", "-1", "--format=%s", f"untitled#locki-{sid}") == "after the restore"
    assert not (marks / "EVIL").exists()


def test_the_daemon_restores_a_rewritten_pointer_within_seconds(
        locki: Locki, repo: Path, marks: Path) -> None:
    """The daemon's loop watches each worktree's `.git` (inotify): a rewrite is undone
    long before its timer, without any locki command."""
    _, worktree = _ready(locki, repo, marks)
    original = (worktree / ".git").read_text()
    assert locki("daemon", "stop", cwd=repo).returncode == 0
    _start_daemon(locki, LOCKI_RECONCILE_INTERVAL="120")  # the timer alone: minutes
    time.sleep(2)  # its first pass is over
    rewritten = _inside(locki, repo, "sh", "-c",
                        f"printf 'gitdir: /tmp/elsewhere\\n' > {shlex.quote(str(worktree))}/.git")
    assert rewritten.returncode == 0, rewritten.stderr
    assert _wait(lambda: (worktree / ".git").read_text() == original, 20), \
        "the loop did not restore the pointer"


def test_pre_push_gets_the_refs_on_stdin_and_can_refuse(locki: Locki, repo: Path,
                                                        marks: Path) -> None:
    _hook(repo / ".git" / "hooks" / "pre-push", f"""cat > {marks}/pre-push-stdin
echo "$1 $2" > {marks}/pre-push-args
[ ! -e {marks}/refuse ]
""")
    sid, _ = _ready(locki, repo, marks)
    branch = f"untitled#locki-{sid}"
    made = _inside(locki, repo, "sh", "-c", "git commit -q --allow-empty -m to-push")
    assert made.returncode == 0, made.stderr
    pushed = _inside(locki, repo, "git", "push", "-q", "-u", "origin", branch)
    assert pushed.returncode == 0, pushed.stderr
    stdin = _inside(locki, repo, "cat", f"{marks}/pre-push-stdin").stdout
    head = git(repo, "rev-parse", branch)
    assert stdin.split()[:4] == [f"refs/heads/{branch}", head, f"refs/heads/{branch}",
                                 "0" * 40], stdin
    assert _inside(locki, repo, "cat", f"{marks}/pre-push-args").stdout.startswith("origin ")

    assert _inside(locki, repo, "touch", f"{marks}/refuse").returncode == 0
    again = _inside(locki, repo, "sh", "-c", "git commit -q --allow-empty -m refused && "
                    f"git push -q origin '{branch}'")
    assert again.returncode != 0
    assert git(repo, "rev-parse", f"origin/{branch}") == head


def test_an_includes_hooks_run_inside_too(locki: Locki, repo: Path, marks: Path,
                                          tmp_path: Path) -> None:
    lib = tmp_path / "lib repo"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    git(lib, "commit", "-q", "--allow-empty", "-m", "lib first")
    _hook(lib / ".git" / "hooks" / "commit-msg", f"""touch {marks}/include-hook
printf '\\nInclude-Trailer: yes\\n' >> "$1"
""")
    sid, worktree = _ready(locki, repo, marks)
    assert locki("include", "--repo", str(lib), cwd=repo).returncode == 0
    inside = worktree / ".locki" / "include" / "lib repo"
    made = _inside(locki, repo, "sh", "-c", f"cd {shlex.quote(str(inside))} && "
                   "git commit -q --allow-empty -m 'in the include'")
    assert made.returncode == 0, made.stderr
    message = git(lib, "log", "-1", "--format=%B", f"untitled#locki-{sid}")
    assert "Include-Trailer: yes" in message
    assert _inside(locki, repo, "test", "-e", f"{marks}/include-hook").returncode == 0
    # And with the user's own git on the host, in the include's folder there.
    host_side = Path(str(worktree) + ".include") / "lib repo"
    git(host_side, "commit", "-q", "--allow-empty", "-m", "by the user")
    assert "Include-Trailer: yes" in git(host_side, "log", "-1", "--format=%B")
