"""`proc.run_untrusted`: a program a sandbox controls can neither hang locki nor flood it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

from locki.core import proc


def _run(script: str, *, timeout: float = 5.0, limit: int = 1 << 20) -> str | None:
    return anyio.run(lambda: proc.run_untrusted(["sh", "-c", script], timeout=timeout,
                                                limit=limit))


def test_a_well_behaved_program_answers() -> None:
    assert _run("printf 'a\\nb\\n'") == "a\nb\n"


def test_a_failing_program_gives_no_answer() -> None:
    assert _run("echo partial; exit 3") is None


def test_a_program_that_never_ends_is_killed_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    assert _run(f"echo $$ > {pid_file}; exec sleep 60", timeout=0.5) is None
    assert time.monotonic() - started < 5
    pid = int(pid_file.read_text())
    assert not os.path.exists(f"/proc/{pid}"), "the program outlived its timeout"


def test_a_program_that_never_stops_writing_is_cut_at_the_limit() -> None:
    started = time.monotonic()
    assert _run("yes", limit=64 << 10, timeout=30) is None
    assert time.monotonic() - started < 10
