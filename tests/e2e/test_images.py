"""Images from a repo's `locki.toml`: a local archive is imported once, by content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Locki, incus

pytestmark = pytest.mark.e2e


def test_archive_from_locki_toml_is_imported_once(
    locki: Locki, repo: Path, variant_archive: tuple[Path, str]
) -> None:
    variant, fingerprint = variant_archive
    assert incus("image", "show", fingerprint, check=False).returncode != 0
    images = repo / "images"
    images.mkdir()
    (images / "sandbox-x86_64.tar.zst").hardlink_to(variant)
    (images / "sandbox-arm64.tar.zst").write_bytes(b"not for this host")
    (repo / "locki.toml").write_text('incus_image = "images/sandbox-*.tar.zst"\n')
    env = {"LOCKI_IMAGE": ""}

    first = locki("x", "--", "cat", "/etc/os-release", cwd=repo, extra_env=env)
    assert first.returncode == 0, first.stderr
    assert "debian" in first.stdout.lower()
    info = json.loads(incus("query", f"/1.0/images/{fingerprint}").stdout)
    assert info["fingerprint"] == fingerprint

    box = locki.sandboxes(repo)[0]
    assert box["image"] == "images/sandbox-*.tar.zst"
    before = incus("image", "list", "--format", "csv", "-c", "f").stdout

    second = locki("x", "-n", "--", "true", cwd=repo, extra_env=env)
    assert second.returncode == 0, second.stderr
    assert incus("image", "list", "--format", "csv", "-c", "f").stdout == before
    bases = {
        str(c["config"]["volatile.base_image"])  # type: ignore[index]
        for c in locki.containers()
    }
    assert bases == {fingerprint}


def test_a_glob_matching_nothing_fails_before_anything_is_made(
    locki: Locki, repo: Path
) -> None:
    (repo / "locki.toml").write_text('incus_image = "images/*.tar.zst"\n')
    failed = locki("new", cwd=repo, extra_env={"LOCKI_IMAGE": ""})
    assert failed.returncode == 1
    assert "matches no file" in failed.stderr
    assert not (locki.config_dir / "sandboxes.toml").exists()
