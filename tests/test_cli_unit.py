"""CLI pieces that need no runtime: argument splitting, exit codes for bad usage."""

from __future__ import annotations

from pathlib import Path

import pytest

from locki.cli.main import _exec_tokens, run


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["x", "ls", "-la"], ["x", "--", "ls", "-la"]),
        (["x", "-m", "feat", "grep", "-n", "x"], ["x", "-m", "feat", "--", "grep", "-n", "x"]),
        (["x", "--match=feat", "-n", "pytest"], ["x", "--match=feat", "-n", "--", "pytest"]),
        (["x", "-m", "a", "--", "echo", "-m"], ["x", "-m", "a", "--", "echo", "-m"]),
        (["exec"], ["exec", "--"]),
        (["list", "--json"], ["list", "--json"]),
    ],
)
def test_exec_options_end_at_the_command(tokens: list[str], expected: list[str]) -> None:
    assert _exec_tokens(tokens) == expected


def test_unknown_option_is_a_usage_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["list", "--no-such-option"]) == 2


def test_unknown_runtime_is_a_usage_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--runtime", "docker", "list"]) == 2
    assert "unknown runtime `docker`" in capsys.readouterr().err


def test_lima_runtime_says_what_to_do(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["list"]) == 1
    err = capsys.readouterr().err
    assert "`lima` runtime" in err
    assert "LOCKI_RUNTIME=incus" in err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "0.1.0"
    assert run(["x", "--help"]) == 0
    assert "exit code is passed through" in capsys.readouterr().out


def test_broken_user_config_is_named(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = home / ".config" / "locki" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('runtime = "incus"\nimage = 3\n')
    assert run(["list"]) == 1
    err = capsys.readouterr().err
    assert str(config) in err
    assert "`image`" in err
    assert config.read_text() == 'runtime = "incus"\nimage = 3\n'


def test_check_validates_a_repo_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       home: Path) -> None:
    config = tmp_path / "locki.toml"
    config.write_text('incus_image = "images/*.tar.xz"\n')
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "sandbox-amd64.tar.xz").write_bytes(b"x")
    assert run(["check", str(tmp_path)]) == 0
    assert "image: sandbox-amd64.tar.xz" in capsys.readouterr().out
    config.write_text("incus_imgae = 'typo'\n")
    assert run(["check", str(config), "--json"]) == 1
    err = capsys.readouterr().err
    assert "unknown key `incus_imgae`" in err
    assert "keys allowed there: forwards, incus_image" in err
    assert run(["check", str(tmp_path / "nope.toml")]) == 1


def test_check_accepts_a_repo_without_config_and_refuses_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    assert run(["check", str(tmp_path)]) == 0
    assert "defaults apply" in capsys.readouterr().out
    (tmp_path / "locki.toml").write_text('incus_image = "../../../etc/passwd"\n')
    assert run(["check", str(tmp_path)]) == 1
    assert "leaves the repository" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "needle"), [
    ('forwards = [":3000", "80:3000"]\n', "key `forwards.1`: `80:3000`: ports go up to 65535"),
    ('forwards = ["web"]\n', "key `forwards.0`: `web` is not N, HOST:GUEST or :GUEST"),
    ('forwards = [":3000", 8080]\n', "key `forwards.1`: Input should be a valid string"),
    ('[incus_image]\nname = "x"\n', "key `incus_image`"),
    ('forwards = [":3000"\n', "is not valid TOML: Unclosed array"),
])
def test_check_errors_name_the_key_path(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        home: Path, text: str, needle: str) -> None:
    config = tmp_path / "locki.toml"
    config.write_text(text)
    assert run(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert needle in err and str(config) in err and "hint:" in err
    assert config.read_text() == text


def test_the_lean_path_counts_stopped_sandboxes_as_candidates(tmp_path: Path) -> None:
    from locki.cli.fast import _chosen
    from locki.core.paths import Paths

    paths = Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "r")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    boxes = {"abcd1234": {"repo": str(repo), "state": "running"},
             "abce5678": {"repo": str(repo), "state": "stopped"}}
    # Two candidates in this repo: the full path asks, so the lean path does not choose.
    assert _chosen(paths, boxes, None, repo) is None
    assert _chosen(paths, boxes, "abc", repo) is None
    assert _chosen(paths, boxes, "abcd", repo) == "abcd1234"
    assert _chosen(paths, boxes, "abce", repo) is None  # stopped: the full path starts it
    boxes["abce5678"]["state"] = "removed"
    assert _chosen(paths, boxes, None, repo) == "abcd1234"


def test_a_guest_port_forwarded_again_keeps_its_lease(tmp_path: Path) -> None:
    from locki.cli import forwards
    from locki.core.errors import LockiError
    from locki.state.models import DesiredState, Forward, SandboxSpec

    spec = SandboxSpec(repo=tmp_path, base="main", image="img")
    state = DesiredState(sandbox={"abcd1234": spec})
    first = forwards.merge(state, "abcd1234", [], [":4000", ":4001"])
    assert [f.guest for f in first] == [4000, 4001]
    assert forwards.merge(state, "abcd1234", first, [":4000", ":4001", ":4000"]) == first
    # An explicit host port is a new forward to the same guest port, as asked.
    explicit = forwards.merge(state, "abcd1234", first, ["23999:4000"])
    assert explicit == [*first, Forward(host=23999, guest=4000)]
    # The cap counts forwards, so asking again at the cap is still an answer.
    full = forwards.merge(state, "abcd1234", [], [f":{4000 + n}" for n in range(32)])
    assert forwards.merge(state, "abcd1234", full, [":4000"]) == full
    with pytest.raises(LockiError, match="at most 32 forwards"):
        forwards.merge(state, "abcd1234", full, [":5000"])


def test_remove_names_a_forward_by_host_port_exactly_or_by_guest_port() -> None:
    from locki.cli import forwards
    from locki.core.errors import LockiError
    from locki.state.models import Forward

    leased, same, other = Forward(host=20000, guest=3000), Forward(host=8080, guest=8080), \
        Forward(host=24000, guest=5000)
    have = [leased, same, other]
    # `:GUEST` is the forward of that port inside, whatever host port it was leased.
    assert forwards.drop(have, [":3000"]) == [same, other]
    assert forwards.drop(have, ["8080"]) == [leased, other]
    assert forwards.drop(have, ["24000:5000", "20000"]) == [same]
    for spec in ("3000", "24000:5001", ":9999"):  # names nothing: refused, nothing dropped
        with pytest.raises(LockiError, match="names no forward"):
            forwards.drop(have, [spec])
