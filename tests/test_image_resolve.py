"""Which image a repo's `incus_image` names: references pass through, archives resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from locki.core.errors import LockiError
from locki.resources.image import Archive, FingerprintCache, resolve


def _files(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


@pytest.mark.parametrize(
    "value", ["images:ubuntu/24.04", "debian-12", "locki-test", "ubuntu/noble"]
)
def test_references_and_aliases_pass_through(tmp_path: Path, value: str) -> None:
    assert resolve(tmp_path, value) == value


def test_a_single_unified_archive(tmp_path: Path) -> None:
    _files(tmp_path, "images/app.tar.xz")
    assert resolve(tmp_path, "images/app.tar.xz") == Archive((tmp_path / "images/app.tar.xz",))


@pytest.mark.parametrize(("arch", "want"), [("x86_64", "img-amd64.tar.zst"),
                                            ("aarch64", "img-arm64.tar.zst")])
def test_glob_picks_the_host_architecture(tmp_path: Path, arch: str, want: str) -> None:
    _files(tmp_path, "img-amd64.tar.zst", "img-arm64.tar.zst")
    assert resolve(tmp_path, "img-*.tar.zst", arch=arch) == Archive((tmp_path / want,))


def test_split_image_pairs_metadata_and_rootfs(tmp_path: Path) -> None:
    _files(tmp_path, "out/x86_64/incus.tar.xz", "out/x86_64/rootfs.squashfs",
           "out/arm64/incus.tar.xz", "out/arm64/rootfs.squashfs")
    got = resolve(tmp_path, "out/*/*", arch="x86_64")
    assert got == Archive((tmp_path / "out/x86_64/incus.tar.xz",
                           tmp_path / "out/x86_64/rootfs.squashfs"))


def test_ambiguous_glob_is_an_error_naming_the_files(tmp_path: Path) -> None:
    _files(tmp_path, "a.tar.xz", "b.tar.xz")
    with pytest.raises(LockiError, match=r"matches several archives.*a\.tar\.xz, b\.tar\.xz"):
        resolve(tmp_path, "*.tar.xz", arch="x86_64")


@pytest.mark.parametrize("value", ["missing.tar.xz", "./images/none", "imgs/*.tar.zst"])
def test_paths_matching_nothing_are_errors(tmp_path: Path, value: str) -> None:
    with pytest.raises(LockiError, match="matches no file"):
        resolve(tmp_path, value)


@pytest.mark.parametrize("value", ["../outside.tar.xz", "/etc/passwd.tar"])
def test_paths_outside_the_repo_are_refused(tmp_path: Path, value: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _files(tmp_path, "outside.tar.xz")
    with pytest.raises(LockiError):
        resolve(repo, value)


def test_symlink_out_of_the_repo_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _files(tmp_path, "secret.tar.xz")
    (repo / "img.tar.xz").symlink_to(tmp_path / "secret.tar.xz")
    with pytest.raises(LockiError, match="outside the repository"):
        resolve(repo, "img.tar.xz")


def test_fingerprints_are_sha256_and_cached(tmp_path: Path) -> None:
    import hashlib

    _files(tmp_path, "a.tar.xz", "b.squashfs")
    cache = FingerprintCache(tmp_path / "cache.json")
    unified = Archive((tmp_path / "a.tar.xz",))
    split = Archive((tmp_path / "a.tar.xz", tmp_path / "b.squashfs"))
    assert cache.get(unified) == hashlib.sha256(b"a.tar.xz").hexdigest()
    assert cache.get(split) == hashlib.sha256(b"a.tar.xzb.squashfs").hexdigest()
    assert len(__import__("json").loads((tmp_path / "cache.json").read_text())) == 2
