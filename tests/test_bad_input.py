"""Bad input: exit 1 (or 2 for usage), a message naming the file, key or value and the
fix, and every file left exactly as it was. These run locki in-process; none of them
needs the runtime, because each fails before anything is created."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from locki.cli.main import run
from tests.conftest import git

SANDBOXES = (
    "# mine\n"
    '[sandbox.abcd1234]\nrepo = "/r/a"\nbase = "main"\nimage = "img"\n\n'
    '[sandbox.abce5678]\nrepo = "/r/a"\nbase = "main"\nimage = "img"\n'
)


@pytest.fixture
def incus_runtime(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LOCKI_RUNTIME", "incus")
    # Point the Incus client at a socket that does not exist: nothing here may need it.
    monkeypatch.setenv("INCUS_SOCKET", str(home / "no-incus.sock"))
    yield home
    # Nothing here may leave a bridge daemon behind (none should start: no runtime).
    assert not (Path(os.environ["XDG_RUNTIME_DIR"]) / "locki" / "bridge.sock").exists()


def snapshot(root: Path) -> dict[str, bytes]:
    # Logs may grow, and the `incus` client keeps its own config: neither is user data.
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not {"logs", ".git", "incus"} & set(p.parts)}


def run_in(cwd: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.chdir(cwd)
    return run(list(argv))


State = Callable[[str], Path]


@pytest.fixture
def state_file(incus_runtime: Path) -> State:
    def write(text: str) -> Path:
        path = incus_runtime / ".config" / "locki" / "sandboxes.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path
    return write


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[sandbox.abcd1234\n", "is not valid TOML"),
        (SANDBOXES[:60], "is not valid TOML"),  # a truncated file
        (SANDBOXES + "colour = 'red'\n", "key `sandbox.abce5678.colour`"),
        ('[sandbox.abcd1234]\nrepo = 7\nbase = "m"\nimage = "i"\n', "key `sandbox.abcd1234.repo`"),
        ("sandboxes = []\n", "key `sandboxes`"),
        (SANDBOXES + '[sandbox.abce5678.include."../x"]\nrepo = "/r/b"\nbase = "main"\n',
         "include name `../x`"),
        (SANDBOXES + '[sandbox.abce5678.include.lib]\nrepo = "r/b"\nbase = "main"\n',
         "key `sandbox.abce5678.include.lib.repo`"),
    ],
    ids=["broken", "truncated", "unknown-key", "wrong-type", "unknown-table",
         "include-name", "include-relative-repo"],
)
@pytest.mark.parametrize("command", [["plan"], ["list"], ["apply"], ["new"], ["rm", "-m", "ab"],
                                     ["status"], ["gc"], ["gc", "--dry-run"]])
def test_broken_desired_state(
    state_file: State, incus_runtime: Path, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], text: str, needle: str, command: list[str],
) -> None:
    path = state_file(text)
    before = snapshot(incus_runtime)
    assert run_in(repo, monkeypatch, *command) == 1
    err = capsys.readouterr().err
    assert str(path) in err
    assert needle in err
    assert "hint:" in err
    assert "Traceback" not in err
    assert snapshot(incus_runtime) == before


def _hostile(repo: Path, key: str, value: str, *, include: bool = False) -> str:
    """A sandbox (or its include) whose `key` holds `value`; the rest is valid."""
    fields = {"base": "victim2", "branch": "untitled#locki-abcd1237", key: value}
    text = (f'[sandbox.abcd1237]\nrepo = "{repo}"\nbase = "main"\nimage = "locki-test"\n'
            'state = "stopped"\n')
    if include:
        return text + (f'[sandbox.abcd1237.include.lib]\nrepo = "{repo}"\n'
                       f'base = "{fields["base"]}"\nbranch = "{fields["branch"]}"\n')
    return text.replace('base = "main"\n',
                        f'base = "{fields["base"]}"\nbranch = "{fields["branch"]}"\n')


@pytest.mark.parametrize(
    ("key", "value", "include"),
    [("branch", "-D", False), ("base", "--output=OUT", False), ("branch", "a..b", False),
     ("base", "-D", False), ("branch", "-D", True), ("base", "--output=OUT", True)],
    ids=["branch-option", "base-option", "branch-dotdot", "base-dash", "include-branch",
         "include-base"],
)
@pytest.mark.parametrize("command", [["apply"], ["plan"], ["list"]])
def test_option_shaped_names_never_reach_git(
    state_file: State, incus_runtime: Path, repo: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    key: str, value: str, include: bool, command: list[str],
) -> None:
    git(repo, "branch", "victim2", "origin/main")
    out = tmp_path / "written-by-git"
    path = state_file(_hostile(repo, key, value.replace("OUT", str(out)), include=include))
    before = snapshot(incus_runtime)
    assert run_in(repo, monkeypatch, *command) == 1
    err = capsys.readouterr().err
    where = "sandbox.abcd1237.include.lib" if include else "sandbox.abcd1237"
    assert str(path) in err
    assert f"key `{where}.{key}`" in err
    assert "may not start with `-`" in err
    assert "hint:" in err and "Traceback" not in err
    assert snapshot(incus_runtime) == before
    assert "victim2" in git(repo, "branch", "--list", "victim2")
    assert not out.exists()


def test_detailed_exitcode_turns_every_failure_into_1(
    state_file: State, repo: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    state_file("[broken\n")
    assert run_in(repo, monkeypatch, "plan", "--detailed-exitcode") == 1
    assert run_in(repo, monkeypatch, "plan", "--detailed-exitcode", "--bogus") == 1
    assert run_in(repo, monkeypatch, "plan", "--bogus") == 2


def test_match_none_or_several(
    state_file: State, incus_runtime: Path, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_file(SANDBOXES)
    before = snapshot(incus_runtime)
    assert run_in(repo, monkeypatch, "rm", "-m", "abc") == 1
    err = capsys.readouterr().err
    assert "`abc` matches 2 sandboxes: abcd1234, abce5678" in err
    assert run_in(repo, monkeypatch, "x", "-m", "zzz", "--", "true") == 125
    assert "no sandbox matches `zzz`" in capsys.readouterr().err
    assert snapshot(incus_runtime) == before


def test_not_a_repository(incus_runtime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain folder"
    plain.mkdir()
    before = snapshot(incus_runtime)
    assert run_in(plain, monkeypatch, "new") == 1
    err = capsys.readouterr().err
    assert f"`{plain}` is not inside a git repository" in err
    assert run_in(plain, monkeypatch, "x", "--", "true") == 125
    assert snapshot(incus_runtime) == before


def test_bare_repository(incus_runtime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    assert run_in(bare, monkeypatch, "new") == 1
    assert "is a bare repository" in capsys.readouterr().err


def test_missing_default_branch(incus_runtime: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    git(tmp_path, "init", "-q", "-b", "trunk", str(empty))
    before = snapshot(incus_runtime)
    assert run_in(empty, monkeypatch, "new") == 1
    err = capsys.readouterr().err
    assert "has no default branch (no origin/HEAD, no main, no master" in err
    assert snapshot(incus_runtime) == before


@pytest.mark.parametrize(
    "stem", ["a..b", "has space", "x~1", "-dash", "a:b", "a@{b", "back\\slash", "star*", "q?",
             "/lead", "new\nline"],
)
def test_invalid_branch_names(incus_runtime: Path, repo: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str], stem: str) -> None:
    before = snapshot(incus_runtime)
    assert run_in(repo, monkeypatch, "new", f"--branch={stem}") == 1
    err = capsys.readouterr().err
    assert f"`{stem}` cannot start a branch name" in err
    assert snapshot(incus_runtime) == before
    check = subprocess.run(["git", "check-ref-format", "--branch", f"{stem}#locki-abcd1234"],
                           capture_output=True)
    assert check.returncode != 0 or stem.startswith("-")


def test_broken_repo_config(incus_runtime: Path, repo: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "locki.toml").write_text('incus_image = "img"\nprivileged = true\n')
    assert run_in(repo, monkeypatch, "new") == 1
    err = capsys.readouterr().err
    assert f"{repo / 'locki.toml'}" in err
    assert "key `privileged`" in err


def test_unknown_runtime_in_config(incus_runtime: Path, repo: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LOCKI_RUNTIME")
    config = incus_runtime / ".config" / "locki" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('runtime = "docker"\n')
    assert run_in(repo, monkeypatch, "list") == 1
    err = capsys.readouterr().err
    assert "key `runtime`" in err
    assert config.read_text() == 'runtime = "docker"\n'


def test_unreachable_runtime_is_unknown_not_empty(
    state_file: State, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_file(SANDBOXES)
    assert run_in(repo, monkeypatch, "list", "--json") == 4
    out, err = capsys.readouterr()
    assert out.count('"state": "unknown"') == 2
    assert "sandbox states are unknown" in err
    assert run_in(repo, monkeypatch, "plan") == 0
    out = capsys.readouterr().out
    assert "runtime unknown" in out
    assert "nothing is destroyed until it can be" in out


def test_status_and_gc_with_an_unreachable_runtime_change_nothing(
    state_file: State, incus_runtime: Path, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_file(SANDBOXES)
    before = snapshot(incus_runtime)
    assert run_in(repo, monkeypatch, "status", "--json") == 4
    out, err = capsys.readouterr()
    rows = json.loads(out)["sandboxes"]
    assert [(r["id"], r["condition"], r["reason"]) for r in rows] == [
        ("abcd1234", "Unknown", "RuntimeUnreachable"), ("abce5678", "Unknown",
                                                        "RuntimeUnreachable")]
    assert "every sandbox is Unknown" in err
    assert run_in(repo, monkeypatch, "status") == 4
    assert capsys.readouterr().out.count("Unknown") == 2
    assert run_in(repo, monkeypatch, "gc", "--force") == 4
    assert "nothing was collected" in capsys.readouterr().err
    assert snapshot(incus_runtime) == before


def test_an_unreachable_runtime_is_never_reported_as_success(
    incus_runtime: Path, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LOCKI_IMAGE", "img")
    assert run_in(repo, monkeypatch, "new", "--stopped", "--json") == 4
    out, err = capsys.readouterr()
    assert "created" not in out and "is recorded but could not be created" in err
    state = incus_runtime / ".config" / "locki" / "sandboxes.toml"
    [sid] = [line[9:17] for line in state.read_text().splitlines()
             if line.startswith("[sandbox.")]
    assert run_in(repo, monkeypatch, "x", "-m", sid, "--", "true") == 125
    err = capsys.readouterr().err
    assert f"error: sandbox {sid} cannot be entered" in err and "the command was not run" in err
    before = snapshot(incus_runtime)
    assert run_in(repo, monkeypatch, "plan", "--detailed-exitcode") == 1  # never 0: "in sync"
    assert "the plan is incomplete" in capsys.readouterr().err
    assert run_in(repo, monkeypatch, "apply") == 4
    out, err = capsys.readouterr()
    assert "nothing was changed" in err and "No changes" not in out
    assert snapshot(incus_runtime) == before


def test_unexpected_errors_exit_3_with_a_saved_traceback(
    state_file: State, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], incus_runtime: Path,
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr("locki.reconciler.context.build", boom)
    assert run_in(repo, monkeypatch, "list") == 3
    err = capsys.readouterr().err
    assert "unexpected error: RuntimeError('kaboom')" in err
    crash = Path(err.rsplit("details in ", 1)[1].strip())
    assert crash.is_relative_to(incus_runtime)
    assert "kaboom" in crash.read_text()


def test_interrupt_exits_130(repo: Path, monkeypatch: pytest.MonkeyPatch,
                             incus_runtime: Path) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("locki.reconciler.context.build", interrupted)
    assert run_in(repo, monkeypatch, "plan") == 130


def test_bridge_check_evaluates_the_policy_without_running_anything(
    state_file: State, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_file(f'[sandbox.abcd1234]\nrepo = "{repo}"\nbase = "main"\nimage = "img"\n')
    assert run_in(repo, monkeypatch, "bridge", "check", "-m", "abcd", "--",
                  "git", "status") == 1  # no worktree yet: the daemon could not open it
    assert capsys.readouterr().out.startswith("denied: the worktree `")
    worktree = repo.parent.parent / "home, ü x" / ".local/share/locki/worktrees"
    worktree = worktree / f"{repo.name}-locki-abcd1234"
    git(repo, "worktree", "add", "-q", "-b", "t#locki-abcd1234", str(worktree))
    (worktree / "src").mkdir()
    (worktree / "out").symlink_to("/etc")
    before = git(repo, "for-each-ref")
    assert run_in(repo, monkeypatch, "bridge", "check", "-m", "abcd", "--",
                  "git", "status") == 0
    assert capsys.readouterr().out.splitlines()[0] == "allowed"
    # The cwd rule is the daemon's: inside the worktree, no `..`, no symlink followed.
    for where, says in ((worktree / "src", "allowed"), ("/etc", "is not inside"),
                        (worktree / "out", "symlinks are not followed"),
                        (f"{worktree}/src/../..", "contains `..`")):
        code = run_in(repo, monkeypatch, "bridge", "check", "-m", "abcd", "--cwd",
                      str(where), "--", "git", "status")
        assert code == (0 if says == "allowed" else 1), where
        assert says in capsys.readouterr().out, where
    for argv in (["git", "push", "--mirror"], ["git", "-C", "/tmp", "status"],
                 ["git", "branch", "-D", "main"], ["git", "log", "--output=/tmp/x"]):
        assert run_in(repo, monkeypatch, "bridge", "check", "-m", "abcd", "--", *argv) == 1
        assert capsys.readouterr().out.startswith("denied: ")
    assert run_in(repo, monkeypatch, "bridge", "check", "-m", "abcd", "--", "ls") == 2
    assert git(repo, "for-each-ref") == before


def test_bridge_check_shows_the_rewritten_push_and_gh_statically(
    state_file: State, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_file(f'[sandbox.abcd1234]\nrepo = "{repo}"\nbase = "main"\nimage = "img"\n')
    worktree = repo.parent.parent / "home, ü x" / ".local/share/locki/worktrees"
    worktree = worktree / f"{repo.name}-locki-abcd1234"
    git(repo, "worktree", "add", "-q", "-b", "t#locki-abcd1234", str(worktree))
    git(repo, "config", "push.default", "upstream")
    git(repo, "config", "branch.t#locki-abcd1234.merge", "refs/heads/main")
    git(repo, "remote", "add", "gh", "git@github.com:acme/widget.git")
    before = git(repo, "for-each-ref")

    def check(*argv: str) -> tuple[int, list[str]]:
        code = run_in(repo, monkeypatch, "bridge", "check", "-m", "abcd", "--", *argv)
        return code, capsys.readouterr().out.splitlines()

    own = "refs/heads/t#locki-abcd1234"
    assert check("git", "push", "-u") == (0, ["allowed", (
        "runs on the host: git push --no-follow-tags --no-signed --no-recurse-submodules "
        f"--set-upstream --end-of-options origin '{own}:{own}'")])
    code, out = check("gh", "pr", "edit", "--add-label", "x")
    assert code == 0
    assert out[1] == "runs on the host: gh pr edit --add-label=x -- 't#locki-abcd1234'"
    assert "checks that the head of PR" in out[2]
    assert out[3] == ("(for GH_REPO=github.com/acme/widget, from the configured remotes, "
                      "with your gh login)")
    assert check("gh", "pr", "view", "-R", "o/r")[0] == 1
    assert check("git", "stash", "pop", "stash@{1}")[1][1].endswith(
        "(host git steps on the sandbox's own `refs/locki/stash/abcd1234`)")
    assert git(repo, "for-each-ref") == before


def test_conflicting_or_empty_selection_is_a_usage_error(
    state_file: State, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_file(SANDBOXES)
    assert run_in(repo, monkeypatch, "rm", "-m", "") == 2
    assert "-m needs an id prefix" in capsys.readouterr().err
    assert run_in(repo, monkeypatch, "x", "-n", "-m", "abcd", "--", "true") == 2
    assert "goes with neither -m nor -i" in capsys.readouterr().err


def test_a_symlinked_state_file_stays_a_symlink(
    incus_runtime: Path, repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    real = tmp_path / "dotfiles" / "sandboxes.toml"
    real.parent.mkdir()
    real.write_text("# managed by my dotfiles\n")
    link = incus_runtime / ".config" / "locki" / "sandboxes.toml"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(real)
    # `new` fails at the runtime (there is none here) but has written its entry by then.
    run_in(repo, monkeypatch, "new")
    assert link.is_symlink()
    assert "[sandbox." in real.read_text()
    assert "# managed by my dotfiles" in real.read_text()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["include"], "say what to include"),
        (["include", "--this"], "name it with -m SANDBOX"),
        (["include", "--repo", ".", "--remove", "x"], "one at a time"),
    ],
)
def test_include_usage(
    state_file: State, incus_runtime: Path, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str,
) -> None:
    state_file(SANDBOXES)
    before = snapshot(incus_runtime)
    assert run_in(repo, monkeypatch, *argv) == 2
    assert needle in capsys.readouterr().err
    assert snapshot(incus_runtime) == before


def test_include_of_a_missing_folder_or_an_unknown_name(
    state_file: State, incus_runtime: Path, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    state_file(SANDBOXES.replace("/r/a", str(repo)))
    before = snapshot(incus_runtime)
    assert run_in(repo, monkeypatch, "include", "-m", "abcd", "--repo",
                  str(tmp_path / "nowhere")) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert run_in(repo, monkeypatch, "include", "-m", "abcd", "--repo", str(tmp_path)) == 1
    assert "is not inside a git repository" in capsys.readouterr().err
    assert run_in(repo, monkeypatch, "include", "-m", "abcd", "--repo", str(repo)) == 1
    assert "own repository" in capsys.readouterr().err
    assert run_in(repo, monkeypatch, "include", "-m", "abcd", "--remove", "nope") == 1
    assert "has no include `nope`" in capsys.readouterr().err
    assert snapshot(incus_runtime) == before


@pytest.mark.parametrize(
    ("wanted", "taken", "expected"),
    [("lib", set(), "lib"), ("lib", {"lib"}, "lib-2"), ("lib", {"lib", "lib-2"}, "lib-3"),
     (".hidden", set(), "hidden"), ("my repo ü", set(), "my repo ü"), ("...", set(), "repo"),
     ("a\tb", set(), "a-b")],
)
def test_include_names(wanted: str, taken: set[str], expected: str) -> None:
    from locki.cli.include import unique_name
    from locki.state.models import include_name_problem

    name = unique_name(wanted, taken)
    assert name == expected
    assert include_name_problem(name) is None
