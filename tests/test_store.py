"""The desired-state file: comments survive edits, writes are atomic, bad files are named."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from locki.core.errors import LockiError
from locki.state.models import DesiredState, SandboxSpec, UserConfig
from locki.state.store import StateFile, load

SPEC = SandboxSpec(repo=Path("/r/project"), base="origin/main", image="img")


def _store(tmp_path: Path) -> StateFile:
    return StateFile(tmp_path / "sandboxes.toml", tmp_path / "state.lock", lock_timeout=1)


def test_new_file_gets_a_header_and_the_sandbox(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.edit() as editor:
        editor.add("abcd1234", SPEC)
    text = store.path.read_text()
    assert text.startswith("#:schema ")
    assert "# locki desired state" in text
    assert store.read().sandbox["abcd1234"] == SPEC


def test_comments_and_layout_survive_edits(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.path.write_text(
        "# my notes\n\n[sandbox.abcd1234] # the big refactor\n"
        'repo = "/r/project"\nbase = "main"  # from main\nimage = "img"\nstate = "running"\n'
    )
    with store.edit() as editor:
        editor.set_state("abcd1234", "stopped")
        editor.add("zzzz9999", SPEC)
    text = store.path.read_text()
    assert "# my notes" in text
    assert "# the big refactor" in text
    assert 'base = "main"  # from main' in text
    assert store.read().sandbox["abcd1234"].state == "stopped"
    with store.edit() as editor:
        editor.forget("zzzz9999")
    assert set(store.read().sandbox) == {"abcd1234"}
    assert "# the big refactor" in store.path.read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[sandbox.abcd1234\nrepo = 1", "is not valid TOML"),
        ('[sandbox.abcd1234]\nrepo = "/r"\nbase = "main"\nimage = "i"\ncolour = "red"\n',
         "key `sandbox.abcd1234.colour`"),
        ('[sandbox.abcd1234]\nrepo = "relative"\nbase = "main"\nimage = "i"\n',
         "key `sandbox.abcd1234.repo`"),
        ('[sandbox.BAD]\nrepo = "/r"\nbase = "main"\nimage = "i"\n', "sandbox.BAD"),
        ('[sandbox.abcd1234]\nrepo = "/r"\nbase = "main"\nimage = "i"\nstate = "on"\n',
         "key `sandbox.abcd1234.state`"),
    ],
)
def test_bad_files_are_named_and_left_alone(tmp_path: Path, content: str, message: str) -> None:
    store = _store(tmp_path)
    store.path.write_text(content)
    with pytest.raises(LockiError) as read_error:
        store.read()
    assert str(store.path) in read_error.value.message
    assert message in read_error.value.message
    assert read_error.value.hint
    with pytest.raises(LockiError), store.edit() as editor:
        editor.add("zzzz9999", SPEC)
    assert store.path.read_text() == content
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_an_edit_that_fails_validation_writes_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.edit() as editor:
        editor.add("abcd1234", SPEC)
    before = store.path.read_text()
    with pytest.raises(LockiError), store.edit() as editor:
        editor.set_state("abcd1234", "sideways")
    assert store.path.read_text() == before


def test_missing_files_give_defaults(tmp_path: Path) -> None:
    assert load(tmp_path / "none.toml", DesiredState) == DesiredState()
    assert load(tmp_path / "none.toml", UserConfig).runtime is None


def test_a_held_lock_times_out_with_a_message(tmp_path: Path) -> None:
    holder = _store(tmp_path)
    waiter = _store(tmp_path)
    with holder.edit(), pytest.raises(LockiError) as err, waiter.edit():
        pass
    # The holder is named from its record: pid, host, command and start time.
    assert f"(pid {os.getpid()} on {socket.gethostname()}, started " in err.value.message
    assert "editing the desired state" in err.value.message
    assert "--lock-timeout" in (err.value.hint or "")


def test_every_problem_is_named_and_a_typo_comes_first(tmp_path: Path) -> None:
    store = _store(tmp_path)
    text = '[sandbox.abcd1234]\nrepo = "/r/project"\nbase = "main"\nimag = "img"\nstate = 3\n'
    store.path.write_text(text)
    with pytest.raises(LockiError) as caught:
        store.read()
    message = caught.value.message
    assert "has 3 problems" in message
    assert message.index("unknown key `sandbox.abcd1234.imag`") < message.index(
        "key `sandbox.abcd1234.image`")
    assert "keys allowed there:" in message and "image" in message
    assert "sandbox.abcd1234.state" in message
    assert store.path.read_text() == text  # nothing rewritten
