"""Shared fixtures: a private HOME and XDG tree per test, and real git repositories."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

GIT_ID = {
    "GIT_AUTHOR_NAME": "Locki Test",
    "GIT_AUTHOR_EMAIL": "test@locki.invalid",
    "GIT_COMMITTER_NAME": "Locki Test",
    "GIT_COMMITTER_EMAIL": "test@locki.invalid",
}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
        env={**os.environ, **GIT_ID},
    )
    return result.stdout.strip()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary HOME with its own XDG dirs; the real user's are never touched.

    Its path holds a space, a comma and non-ASCII on purpose: every test then proves
    that such paths survive git, Incus device options and the TOML files.
    """
    root = tmp_path / "home, ü x"
    root.mkdir()
    for var, sub in {
        "XDG_CONFIG_HOME": ".config",
        "XDG_DATA_HOME": ".local/share",
        "XDG_STATE_HOME": ".local/state",
        "XDG_CACHE_HOME": ".cache",
    }.items():
        (root / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(root / sub))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("HOME", str(root))
    for key in [k for k in os.environ if k.startswith("GIT_") or k.startswith("LOCKI_")]:
        monkeypatch.delenv(key)
    (root / ".gitconfig").write_text(
        "[user]\n\tname = Locki Test\n\temail = test@locki.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    yield root


@pytest.fixture
def repo(tmp_path: Path, home: Path) -> Path:
    """A clone with history and an `origin` (a bare repo), like a user's checkout."""
    origin = tmp_path / "origin.git"
    seed = tmp_path / "seed"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(tmp_path, "init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("hello\n")
    git(seed, "add", "README.md")
    git(seed, "commit", "-q", "-m", "first")
    (seed / "app.py").write_text("print('app')\n")
    git(seed, "add", "app.py")
    git(seed, "commit", "-q", "-m", "second")
    git(seed, "push", "-q", str(origin), "main")
    clone = tmp_path / "work, ü" / "project"
    clone.parent.mkdir()
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    return clone


@pytest.fixture
def fake_limactl(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake `limactl` first on PATH; its VM is deleted afterwards."""
    from tests.fakes import install_limactl

    bin_dir = tmp_path / "fake-bin"
    limactl = install_limactl(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    yield limactl
    lima_home = home / ".local/state/locki/lima"
    if (lima_home / "locki").exists():
        subprocess.run([str(limactl), "delete", "--force", "locki"], check=False,
                       env={**os.environ, "LIMA_HOME": str(lima_home)}, capture_output=True)
