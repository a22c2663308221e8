"""Runs the data-driven corpus in `cases/*.toml` through the policy.

Each case gives `argv` and `allowed`, and at least one of `reason_contains` (for a
denial) or `argv_out` (the exact normalised argv). Optional: `program` (`git`, the
default, or `gh`), `writes`, `writes_head`, `pr_check`, `stdin_from` (relative to the
worktree). A file that does not parse, or a case that
expects nothing, fails rather than being skipped.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from locki.bridge.gh import check_gh
from locki.bridge.policy import check_git, explain
from tests.bridge.support import CALLER, WORKTREE

CASES = Path(__file__).parent / "cases"
KEYS = {"name", "argv", "allowed", "reason_contains", "argv_out", "writes", "writes_head",
        "stdin_from", "program", "pr_check"}
MIN_CASES = 150


@dataclass
class Case:
    id: str
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def load() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(CASES.glob("*.toml")):
        try:
            entries = tomllib.loads(path.read_text())["case"]
        except (tomllib.TOMLDecodeError, KeyError, UnicodeDecodeError) as exc:
            cases.append(Case(path.name, error=f"{path.name} does not parse: {exc!r}"))
            continue
        for number, entry in enumerate(entries):
            cases.append(Case(f"{path.stem}:{number}:{entry.get('name', '?')}", entry))
    return cases


ALL = load()


def validate(case: Case) -> dict[str, Any]:
    assert case.error is None, case.error
    data = case.data
    assert set(data) <= KEYS, f"unknown keys {set(data) - KEYS}"
    assert isinstance(data.get("argv"), list), "`argv` must be a list"
    assert isinstance(data.get("allowed"), bool), "`allowed` must be true or false"
    assert "reason_contains" in data or "argv_out" in data, "case expects nothing"
    return data


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_case(case: Case) -> None:
    data = validate(case)
    check = {"git": check_git, "gh": check_gh}[data.get("program", "git")]
    decision = check(data["argv"], CALLER)

    assert decision.allowed is data["allowed"], explain(decision)
    if "reason_contains" in data:
        assert data["reason_contains"] in decision.reason
    if "argv_out" in data:
        assert list(decision.argv) == data["argv_out"]
    for key in ("writes", "writes_head", "pr_check"):
        if key in data:
            assert getattr(decision, key) == data[key]
    if "stdin_from" in data:
        assert decision.stdin_from == WORKTREE / data["stdin_from"]
    if not decision.allowed:
        assert decision.argv == ()


def test_corpus_is_large_enough() -> None:
    assert len(ALL) >= MIN_CASES


def test_broken_case_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.toml").write_text("[[case]\nargv = [")
    monkeypatch.setattr(f"{__name__}.CASES", tmp_path)
    (broken,) = load()
    with pytest.raises(AssertionError, match="does not parse"):
        validate(broken)


def test_case_without_expectation_is_reported() -> None:
    with pytest.raises(AssertionError, match="expects nothing"):
        validate(Case("x", {"argv": ["status"], "allowed": True}))
