"""Strict typing, lint and the layering contract are part of the test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "argv",
    [
        [str(BIN / "mypy")],
        [str(BIN / "lint-imports")],
        [str(BIN / "ruff"), "check", "locki", "tests", "bench"],
    ],
    ids=["mypy-strict", "import-layers", "ruff"],
)
def test_static_check(argv: list[str]) -> None:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_credentials_are_cut_from_urls() -> None:
    from locki.bridge.server import redact

    cases = {
        b"o\thttps://me:ghp_X@github.com/a/b (fetch)": b"o\thttps://github.com/a/b (fetch)",
        b"s\tuser:pw@host.example:path/r.git": b"s\thost.example:path/r.git",
        b"a\thttps://u:p@ss@h/x": b"a\thttps://h/x",
        b"q\thttps://h/x?token=T": b"q\thttps://h/x",
        b"t\thttps://u:A\tB@h/x": b"t\thttps://h/x",
        b"p\t/tmp/origin.git (fetch)": b"p\t/tmp/origin.git (fetch)",
    }
    for raw, clean in cases.items():
        assert redact(raw) == clean
