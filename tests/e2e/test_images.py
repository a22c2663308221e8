"""Images from a repo's `locki.toml`: a local archive is imported once, by content."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from locki.core.incus import Incus
from locki.resources import image
from tests.e2e.conftest import IMAGE, Locki, incus

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


def test_an_image_incus_does_not_have_fails_before_anything_is_written(
    locki: Locki, repo: Path
) -> None:
    failed = locki("new", "--stopped", cwd=repo, extra_env={"LOCKI_IMAGE": "doesnotexist"})
    assert failed.returncode == 1, failed.stderr
    assert "image `doesnotexist` is neither an alias nor a fingerprint" in failed.stderr
    assert "hint: import it" in failed.stderr
    assert not (locki.config_dir / "sandboxes.toml").exists()
    journal = Path(locki.env["XDG_STATE_HOME"]) / "locki" / "journal"
    assert not journal.exists() or not any(journal.iterdir())
    assert locki("apply", cwd=repo).returncode == 0  # nothing left behind to trip on
    # What Incus has passes: an alias, a fingerprint (or its prefix), a remote's image.
    fingerprint = json.loads(incus("query", f"/1.0/images/aliases/{IMAGE}").stdout)["target"]
    for known in (IMAGE, fingerprint, fingerprint[:12], "images:debian/12"):
        anyio.run(image.check_known, Incus(["incus"], "default"), known)
