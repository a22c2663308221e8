"""Hypothesis over everything a user types or writes: the three TOML files, and the
names and paths given on the command line. No input may end in a traceback (exit 3),
and a command that fails leaves every file exactly as it was."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locki.cli.main import run
from locki.core.errors import LockiError
from locki.state.models import DesiredState, RepoConfig, UserConfig
from locki.state.store import StateFile, load
from tests.test_bad_input import SANDBOXES, snapshot

MODELS = (DesiredState, UserConfig, RepoConfig)
# Derandomized, like the bridge's properties: CI never fails on a one-off example.
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
CLI = settings(max_examples=60, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture])

KEYS = st.sampled_from(["sandbox", "abcd1234", "repo", "base", "image", "state", "branch",
                        "forwards", "host", "guest", "include", "runtime", "ai", "harness",
                        "incus", "network", "daemon", "reconcile_interval", "idle_stop_after",
                        "services_count", "incus_image", "delete_branches", "x"])
SCALARS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.booleans(), st.text(max_size=12),
                    st.floats(allow_nan=False), st.sampled_from(["/r/a", "running", "incus",
                                                                 "stopped", "images:x"]))
TREES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)
# Words a shell can pass: anything but NUL (and lone surrogates, which argv never holds).
WORDS = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                max_size=24)


def _loads_or_names(path: Path, model: type[Any]) -> None:
    try:
        load(path, model)
    except LockiError as exc:
        assert str(path) in exc.message, exc.message


@FUZZ
@given(st.text(max_size=200))
def test_any_text_loads_or_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "some.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for model in MODELS:
        _loads_or_names(path, model)


@FUZZ
@given(st.dictionaries(KEYS, TREES, max_size=4))
def test_any_toml_document_loads_or_is_named(tmp_path: Path, tree: dict[str, Any]) -> None:
    path = tmp_path / "some.toml"
    try:
        path.write_text(tomlkit.dumps(tree))
    except (ValueError, TypeError):
        return  # not expressible as TOML (tomlkit refuses it): nothing to load
    for model in MODELS:
        _loads_or_names(path, model)


@FUZZ
@given(st.binary(max_size=120))
def test_bytes_that_are_not_utf8_are_named(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "sandboxes.toml"
    path.write_bytes(data)
    _loads_or_names(path, DesiredState)


@FUZZ
@given(st.text(max_size=200), st.sampled_from(["running", "stopped", "removed", "bogus"]))
def test_an_edit_of_a_bad_file_writes_nothing(tmp_path: Path, text: str, state: str) -> None:
    path = tmp_path / "sandboxes.toml"
    path.write_text(SANDBOXES + text, errors="surrogatepass")
    before = path.read_bytes()
    store = StateFile(path, tmp_path / "lock")
    try:
        with store.edit() as editor:
            editor.set_state("abcd1234", state)
    except (LockiError, KeyError):
        assert path.read_bytes() == before  # refused: not one byte changed
        return
    assert store.read().sandbox["abcd1234"].state == state  # written whole and valid
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def world(home: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with two sandboxes desired and a runtime that does not answer."""
    monkeypatch.setenv("LOCKI_RUNTIME", "incus")
    monkeypatch.setenv("INCUS_SOCKET", str(home / "no-incus.sock"))
    state = home / ".config" / "locki" / "sandboxes.toml"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(SANDBOXES.replace("/r/a", str(repo)))
    monkeypatch.chdir(repo)
    return home


COMMANDS = st.sampled_from([
    ["x", "-m", "{}", "--", "true"], ["rm", "-m", "{}"], ["rm", "--force", "-m", "{}"],
    ["check", "{}"], ["new", "--branch", "{}"], ["include", "--remove", "{}", "-m", "abcd"],
    ["include", "--repo", "{}", "-m", "abcd"], ["pf", "{}", "-m", "abcd"],
    ["pf", "--remove", "{}", "-m", "abcd"], ["bridge", "check", "-m", "{}", "--", "git", "x"],
    ["status", "--json"], ["gc", "--dry-run"], ["plan", "{}"], ["list", "{}"],
])


@CLI
@given(COMMANDS, WORDS)
def test_names_and_paths_never_crash_and_failures_change_nothing(
    world: Path, capsys: pytest.CaptureFixture[str], command: list[str], word: str
) -> None:
    argv = [part.replace("{}", word) for part in command]
    before = snapshot(world)
    code = run(argv)
    err = capsys.readouterr().err
    assert code != 3, f"{argv}: {err}"
    assert "Traceback" not in err
    # 4 from `new`: the sandbox is recorded (what the user asked for), its container waits
    # for the runtime; every other failure changes nothing.
    if code != 0 and not (code == 4 and argv[0] == "new"):
        assert snapshot(world) == before, argv
    load(world / ".config" / "locki" / "sandboxes.toml", DesiredState)  # still valid
    assert not (Path(os.environ["XDG_RUNTIME_DIR"]) / "locki" / "bridge.sock").exists()
