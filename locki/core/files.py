"""Small file and socket helpers shared by the state store, the bridge and the lean path.

Standard library only (the lean `locki x` path imports `answering`).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from locki.core import crash


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` in one rename: readers see the old file or the new one.

    The temporary file has `mode` from its first byte (a private key is never readable
    by others, even briefly), and file and folder are synced before and after.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        crash.reached(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(path: Path) -> None:
    """Delete drafts `write_atomically` left for `path` when killed before its rename.

    Only safe while holding the lock every writer of `path` takes (no draft is then
    being written)."""
    for draft in path.parent.glob(f".{path.name}.*.tmp"):
        draft.unlink(missing_ok=True)


def answering(path: Path, *, timeout: float = 2.0) -> bool:
    """Whether some process accepts connections on the unix socket `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def incus_socket() -> str:
    """The Incus API socket the `incus` client would use (INCUS_SOCKET, INCUS_DIR)."""
    if os.environ.get("INCUS_SOCKET"):
        return os.environ["INCUS_SOCKET"]
    return os.path.join(os.environ.get("INCUS_DIR", "/var/lib/incus"), "unix.socket")
