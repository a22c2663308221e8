"""Cases the TOML corpus cannot express (surrogates) and the human-facing explanation."""

from __future__ import annotations

import pytest

from locki.bridge.names import refname_problem
from locki.bridge.policy import check_git, explain
from tests.bridge.support import CALLER


def undecodable(raw: bytes) -> str:
    """How the daemon hands over an argument that was not UTF-8."""
    return raw.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("argv", [
    ["switch", "-c", undecodable(b"bad\xff#locki-abcd1234")],
    ["branch", "-m", "a#locki-abcd1234", undecodable(b"b\xc3#locki-abcd1234")],
    ["log", undecodable(b"main\xfe")],
])
def test_non_utf8_in_ref_names_is_refused(argv: list[str]) -> None:
    decision = check_git(argv, CALLER)

    assert not decision.allowed
    assert "non-UTF-8" in decision.reason


def test_non_utf8_path_is_passed_through() -> None:
    name = undecodable(b"caf\xe9.txt")

    decision = check_git(["add", name], CALLER)

    assert decision.allowed
    assert decision.argv == ("add", "--", name)


@pytest.mark.parametrize(("name", "valid"), [
    ("topic", True), ("feat/x-1", True), ("a.b", True), ("-x", False), ("a.", False),
    ("a/", False), ("/a", False), (".a", False), ("a.lock", False), ("@", False),
    ("a@{b", False), ("a..b", False), ("HEAD", False), ("", False),
])
def test_refname_rules(name: str, valid: bool) -> None:
    assert (refname_problem(name) is None) is valid


def test_explain_denied_lists_the_allowed_forms() -> None:
    text = explain(check_git(["switch", "main"], CALLER))

    lines = text.splitlines()
    assert lines[0].startswith("denied: branch `main` is not one of this sandbox's")
    assert "allowed forms:" in lines
    assert "  git switch -c|-C <name>#locki-<id> [<start>]" in lines


def test_explain_allowed() -> None:
    assert explain(check_git(["status"], CALLER)) == "allowed"


def test_unknown_subcommand_has_no_forms() -> None:
    decision = check_git(["filter-repo"], CALLER)

    assert decision.allowed_forms == ()
    assert explain(decision) == "denied: git filter-repo is not on the allow-list"
