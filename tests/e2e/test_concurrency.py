"""Several locki commands at once: one writer at a time, nothing made twice or lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Locki

pytestmark = pytest.mark.e2e


def _spawn(locki: Locki, cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "locki", *args], cwd=cwd, env=locki.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_first_runs_in_a_repo_make_one_sandbox(locki: Locki, repo: Path) -> None:
    runs = [_spawn(locki, repo, "x", "--", "sh", "-c", "echo $LOCKI_SANDBOX") for _ in range(3)]
    outputs = [(p.wait(timeout=300), *p.communicate(timeout=300)) for p in runs]
    assert [code for code, _, _ in outputs] == [0, 0, 0], outputs
    ids = {out.strip() for _, out, _ in outputs}
    assert len(ids) == 1
    assert [b["id"] for b in locki.sandboxes(repo)] == list(ids)


def test_parallel_new_sandboxes_all_converge(locki: Locki, repo: Path) -> None:
    runs = [_spawn(locki, repo, "new") for _ in range(4)]
    outputs = [(*p.communicate(timeout=300), p.returncode) for p in runs]
    assert [code for _, _, code in outputs] == [0, 0, 0, 0], outputs
    boxes = locki.sandboxes(repo)
    assert len(boxes) == 4
    assert {b["state"] for b in boxes} == {"running"}
    assert len(locki.containers()) == 4
    assert locki("plan", "--detailed-exitcode", cwd=repo).returncode == 0
