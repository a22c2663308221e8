"""Container images: a remote reference or alias as-is, or a local Incus image archive.

A repo's `incus_image` may name an archive (or a glob of them) relative to the repo
root: a unified tarball, or a split pair of a metadata tarball and a rootfs. With several
matches the one naming the host architecture wins. Archives are identified by content
(Incus' fingerprint is the sha256 of the file, or of metadata then rootfs), imported
once into the shared image store and used by fingerprint after that, so an archive
Incus already holds is never imported again.
"""

from __future__ import annotations

import hashlib
import json
import platform
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import structlog

from locki.core import crash
from locki.core.errors import CommandFailed, LockiError
from locki.core.incus import Incus

log = structlog.get_logger("locki.resources.image")

ARCH_NAMES = {"x86_64": ("x86_64", "amd64"), "aarch64": ("aarch64", "arm64")}
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2", ".tgz", ".squashfs")
ROOTFS_SUFFIXES = (".squashfs", ".root", ".rootfs")
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Archive:
    """A local image: one unified tarball, or metadata plus rootfs."""

    files: tuple[Path, ...]

    @property
    def label(self) -> str:
        return " + ".join(p.name for p in self.files)


def host_arch() -> str:
    machine = platform.machine().lower()
    for arch, names in ARCH_NAMES.items():
        if machine in names:
            return arch
    return machine


def looks_like_path(value: str) -> bool:
    return (
        value.startswith(("./", "../", "/"))
        or bool(GLOB_CHARS & set(value))
        or value.endswith(ARCHIVE_SUFFIXES + ROOTFS_SUFFIXES)
    )


def resolve(repo: Path, value: str, *, arch: str | None = None) -> str | Archive:
    """What `value` from `repo`'s config names: an image reference, or an archive."""
    root = repo.resolve()
    if looks_like_path(value) and not _safe_pattern(value):
        raise LockiError(
            f"`incus_image = \"{value}\"` leaves the repository: archives are named relative "
            "to the repo root, without `..` or a leading `/`",
            hint="move the archive into the repository, or import it into Incus and use its "
            "alias",
        )
    matches = sorted(p for p in root.glob(value) if p.is_file()) if _safe_pattern(value) else []
    if not matches:
        if looks_like_path(value):
            raise LockiError(
                f"`incus_image = \"{value}\"` matches no file under `{repo}`",
                hint="give a path or glob relative to the repo root, or an image reference "
                "such as `images:debian/12`",
            )
        return value
    for path in matches:
        if not path.resolve().is_relative_to(root):
            raise LockiError(f"`{path}` lies outside the repository `{repo}`")
    return _pick(repo, value, matches, arch or host_arch())


async def check_known(incus: Incus, reference: str) -> None:
    """Refuse a local image `reference` that Incus has neither as alias nor fingerprint.

    locki's projects use the default project's images (features.images=false).
    # Shortcoming: a remote's image (`images:debian/12`) is told only by pulling it, which
    # `incus create` does; checking the remote's index first can go in once it is cheap.
    """
    if ":" in reference:
        return
    name = urllib.parse.quote(reference, safe="")
    for path in (f"/1.0/images/aliases/{name}", f"/1.0/images/{name}"):
        if await incus.query(f"{path}?project=default", missing_ok=True) is not None:
            return
    raise LockiError(
        f"image `{reference}` is neither an alias nor a fingerprint Incus has "
        "(`incus image list`); nothing was written",
        hint="import it (`incus image import`, then `incus image alias create`), or name a "
        "remote image such as `images:debian/12` (LOCKI_IMAGE, `incus_image` in the repo's "
        "locki.toml, or `image` in ~/.config/locki/config.toml)",
    )


def _safe_pattern(value: str) -> bool:
    return not value.startswith("/") and ".." not in Path(value).parts and bool(value)


def _pick(repo: Path, value: str, matches: list[Path], arch: str) -> Archive:
    rootfs = [p for p in matches if p.name.endswith(ROOTFS_SUFFIXES)]
    if len(matches) > 1:
        names = ARCH_NAMES.get(arch, (arch,))
        # The architecture may be named by the file or by a folder above it.
        preferred = [p for p in matches
                     if any(n in str(p.relative_to(repo.resolve())) for n in names)]
        if preferred:
            matches = preferred
            rootfs = [p for p in matches if p.name.endswith(ROOTFS_SUFFIXES)]
    metadata = [p for p in matches if p not in rootfs]
    if len(metadata) == 1 and len(rootfs) <= 1:
        return Archive((metadata[0], *rootfs))
    listing = ", ".join(str(p.relative_to(repo.resolve())) for p in matches)
    raise LockiError(
        f"`incus_image = \"{value}\"` matches several archives under `{repo}`: {listing}",
        hint=f"name the host architecture ({arch}) in one file name, or make the glob exact",
    )


class FingerprintCache:
    """sha256 of archives, remembered by (path, size, mtime) so big files hash once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, archive: Archive) -> str:
        key = "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in archive.files)
        try:
            known: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            known = {}
        if key in known:
            return known[key]
        digest = hashlib.sha256()
        for part in archive.files:
            with part.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        known[key] = digest.hexdigest()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(self.path)
        return known[key]


OWNER = "user.locki.imported-by"  # the installation that imported it (for `locki gc`)


async def ensure(incus: Incus, archive: Archive, cache: FingerprintCache, *,
                 owner: str | None = None) -> str:
    """The fingerprint of `archive`, imported into Incus unless it is there already.

    An image this call imports is labelled with the installation `owner`, so that
    `locki gc` may delete it once nothing uses it; one found already there is not.
    """
    fingerprint = cache.get(archive)
    if await incus.query(f"/1.0/images/{fingerprint}", missing_ok=True) is not None:
        log.debug("image.present", image=archive.label, fingerprint=fingerprint[:12])
        return fingerprint
    try:
        await incus.run("image", "import", "--quiet", *map(str, archive.files))
    except CommandFailed as exc:
        if "already exists" not in exc.stderr:
            raise
        return fingerprint  # someone else imported it meanwhile: theirs, not ours
    if owner is not None:
        await incus.run("image", "set-property", fingerprint, OWNER, owner)
    log.info("image.imported", image=archive.label, fingerprint=fingerprint[:12])
    crash.reached("image.import")
    return fingerprint


async def unused_own(incus: Incus, owner: str, wanted: set[str]) -> list[str]:
    """Fingerprints of images `owner` imported that no instance of any project and no
    fingerprint in `wanted` uses. Raises when a listing fails (then nothing is unused)."""
    images = json.loads((await incus.run("image", "list", "--format", "json")).stdout)
    mine = {str(i["fingerprint"]) for i in images
            if (i.get("properties") or {}).get(OWNER) == owner}
    if not mine:
        return []
    instances = await incus.query("/1.0/instances?all-projects=true&recursion=1") or []
    used = {str((i.get("config") or {}).get("volatile.base_image", "")) for i in instances}
    return sorted(mine - used - wanted)


async def delete(incus: Incus, fingerprint: str) -> None:
    result = await incus.run("image", "delete", fingerprint, check=False)
    if not result.ok and "not found" not in result.stderr.lower():
        await incus.run("image", "delete", fingerprint)
    log.info("image.deleted", fingerprint=fingerprint[:12])
