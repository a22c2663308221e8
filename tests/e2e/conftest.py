"""End-to-end fixtures: a real Incus daemon, real git, locki run as a real process.

These tests never skip: without a daemon they fail and say how to start one
(`scripts/host-setup.sh`). Every test gets its own locki installation (its own data
dir, hence its own Incus project) and deletes that project afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Built and imported by scripts/host-setup.sh (Debian with systemd, git, ssh, python3).
IMAGE = os.environ.get("LOCKI_TEST_IMAGE", "locki-test")


def incus(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["incus", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="session", autouse=True)
def incus_daemon() -> None:
    try:
        info = incus("info", check=False)
    except FileNotFoundError:
        pytest.fail("`incus` is not installed: run scripts/host-setup.sh first")
    if info.returncode != 0:
        pytest.fail(f"incusd does not answer ({info.stderr.strip()}): run scripts/host-setup.sh")
    if incus("image", "show", IMAGE, check=False).returncode != 0:
        pytest.fail(f"test image `{IMAGE}` is missing: run scripts/host-setup.sh")


@dataclass
class Locki:
    env: dict[str, str]
    data_dir: Path
    config_dir: Path

    def __call__(self, *args: str, cwd: Path, input: str | None = None,
                 extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "locki", *args], cwd=cwd, input=input,
            capture_output=True, text=True, env={**self.env, **(extra_env or {})},
            timeout=300,
        )

    @property
    def project(self) -> str:
        iid = (self.data_dir / "installation-id").read_text().strip()
        return f"locki-{iid}"

    def containers(self) -> list[dict[str, object]]:
        out = incus("--project", self.project, "list", "--format", "json").stdout
        result: list[dict[str, object]] = json.loads(out)
        return result

    def sandboxes(self, cwd: Path) -> list[dict[str, object]]:
        listing = self("list", "--json", cwd=cwd)
        assert listing.returncode == 0, listing.stderr
        result: list[dict[str, object]] = json.loads(listing.stdout)
        return result


def _delete_project(data_dir: Path) -> None:
    id_file = data_dir / "installation-id"
    if not id_file.exists():
        return
    project = f"locki-{id_file.read_text().strip()}"
    names = incus("--project", project, "list", "--format", "csv", "-c", "n", check=False)
    for name in names.stdout.split():
        incus("--project", project, "delete", "--force", name, check=False)
    incus("--project", project, "profile", "delete", "locki", check=False)
    incus("project", "delete", project, check=False)


@pytest.fixture
def locki(home: Path) -> Iterator[Locki]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "LOCKI_"))}
    # The daemon's background loop is off unless a test turns it on (it would otherwise
    # converge, at a moment of its own, what a test changed by hand to look at the plan).
    env.update(LOCKI_RUNTIME="incus", LOCKI_IMAGE=IMAGE, LOCKI_RECONCILE_INTERVAL="0")
    data_dir = Path(env["XDG_DATA_HOME"]) / "locki"
    runner = Locki(env, data_dir, Path(env["XDG_CONFIG_HOME"]) / "locki")
    yield runner
    stopped = runner("daemon", "stop", cwd=Path(env["HOME"]))
    _delete_project(data_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert not _daemons_of(Path(env["XDG_CONFIG_HOME"])), "a bridge daemon outlived its test"


def _daemons_of(config_home: Path) -> list[int]:
    """Bridge daemon processes started for this test's installation (a leak check)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        daemon = b"locki.hostd" in cmdline or b"locki.bridge.daemon" in cmdline
        if daemon and str(config_home).encode() in b" ".join(cmdline):
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            if state != "Z":  # nothing reaps here, so a finished daemon may linger as one
                found.append(int(proc.name))
    return found


LockiRunner = Callable[..., subprocess.CompletedProcess[str]]
