"""End-to-end fixtures: a real Incus daemon, real git, locki run as a real process.

These tests never skip: without a daemon they fail and say how to start one
(`scripts/host-setup.sh`). Every test gets its own locki installation (its own data
dir, hence its own Incus project) and deletes that project afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
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

    def instances(self) -> list[dict[str, Any]]:
        """Every instance of the installation's project: sandboxes and templates."""
        out = incus("--project", self.project, "list", "--format", "json").stdout
        result: list[dict[str, Any]] = json.loads(out) or []  # `null` when there are none
        return result

    def containers(self) -> list[dict[str, Any]]:
        """The sandboxes' containers (templates left out)."""
        return [i for i in self.instances() if "user.locki.sandbox" in (i.get("config") or {})]

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


@pytest.fixture(scope="session")
def mise_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mise, fetched once per session the way locki fetches it (npm pack on the host)."""
    from locki.resources import provision

    cache = tmp_path_factory.mktemp("locki-cache")
    return anyio.run(provision.fetch_mise, cache)


def _seed_mise(binary: Path, cache_home: Path) -> None:
    """Give a test's installation the session's mise, as if it had fetched it itself."""
    from locki.resources import provision

    target = provision.mise_binary(cache_home / "locki")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(binary, target)
    except OSError:
        shutil.copyfile(binary, target)


@pytest.fixture
def locki(home: Path, mise_binary: Path) -> Iterator[Locki]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "LOCKI_"))}
    # The daemon's background loop is off unless a test turns it on (it would otherwise
    # converge, at a moment of its own, what a test changed by hand to look at the plan).
    env.update(LOCKI_RUNTIME="incus", LOCKI_IMAGE=IMAGE, LOCKI_RECONCILE_INTERVAL="0")
    _seed_mise(mise_binary, Path(env["XDG_CACHE_HOME"]))
    data_dir = Path(env["XDG_DATA_HOME"]) / "locki"
    runner = Locki(env, data_dir, Path(env["XDG_CONFIG_HOME"]) / "locki")
    yield runner
    stopped = runner("daemon", "stop", cwd=Path(env["HOME"]))
    _delete_project(data_dir)
    assert stopped.returncode == 0, stopped.stderr
    # `daemon stop` returns once the socket is gone; the process may take a moment more
    # to exit on a loaded machine.
    deadline = time.monotonic() + 10
    while _daemons_of(Path(env["XDG_CONFIG_HOME"])) and time.monotonic() < deadline:
        time.sleep(0.1)
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


@pytest.fixture(scope="session")
def variant_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The test image, repacked so its content (hence fingerprint) is new to Incus."""
    out = tmp_path_factory.mktemp("archive")
    incus("image", "export", IMAGE, str(out / "exported"))
    exported = next(out.glob("exported*"))
    variant = out / "variant.tar.zst"
    subprocess.run(f"zstd -dc '{exported}' | zstd -q -1 -T0 -o '{variant}'", shell=True,
                   check=True)
    exported.unlink()
    fingerprint = hashlib.sha256(variant.read_bytes()).hexdigest()
    yield variant, fingerprint
    incus("image", "delete", fingerprint, check=False)


LockiRunner = Callable[..., subprocess.CompletedProcess[str]]
