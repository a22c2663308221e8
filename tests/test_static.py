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
