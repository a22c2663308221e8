"""The bridge's keys: the daemon's host key, one client credential per sandbox, an admin key.

Everything lives in `<state>/bridge/` (0700; private keys 0600). `clients.json` maps the
SHA-256 fingerprint of each sandbox's public key to its sandbox id; the daemon finds the
caller's sandbox from the key it authenticated with, and from nothing the client says.
The admin key is locki's own (ping, stop); it never leaves the host.

Called by `locki.resources.bridge` (issue, revoke) and the daemon (host key, lookup).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
from filelock import FileLock

from locki.core.errors import LockiError
from locki.core.files import write_atomically

ALGORITHM = "ssh-ed25519"
ADMIN = "@admin"  # never a sandbox id: those are [a-z0-9]{8}
_ID = re.compile(r"^[a-z0-9]{8}$")


@dataclass(frozen=True)
class Credential:
    private_key_pem: bytes
    public_key: str  # OpenSSH one-line form


def bridge_dir(state_dir: Path) -> Path:
    path = state_dir / "bridge"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _registry(state_dir: Path) -> Path:
    return bridge_dir(state_dir) / "clients.json"


def _lock(state_dir: Path) -> FileLock:
    return FileLock(bridge_dir(state_dir) / "clients.lock")


def _write_private(path: Path, data: bytes) -> None:
    write_atomically(path, data, mode=0o600)


def _load_or_create(path: Path) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_private_key(path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, asyncssh.KeyImportError) as exc:
        raise LockiError(
            f"cannot read the bridge key `{path}`: {exc}",
            hint=f"delete `{path}`; locki makes a new one (sandboxes then need `locki apply`)",
        ) from exc
    key = asyncssh.generate_private_key(ALGORITHM)
    _write_private(path, key.export_private_key("openssh"))
    return key


def host_key(state_dir: Path) -> asyncssh.SSHKey:
    """The daemon's host key, made on first use."""
    with _lock(state_dir):
        return _load_or_create(bridge_dir(state_dir) / "host_key")


def host_public_key(state_dir: Path) -> str:
    return _public(host_key(state_dir))


def admin_key(state_dir: Path) -> asyncssh.SSHKey:
    """locki's own client key for the daemon's control requests."""
    with _lock(state_dir):
        return _load_or_create(bridge_dir(state_dir) / "admin_key")


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


def _public(key: asyncssh.SSHKey) -> str:
    # Type and key data only: the comment is the client's business.
    return " ".join(key.export_public_key("openssh").decode("ascii").split()[:2])


def _read(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(_registry(state_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise LockiError(
            f"cannot read `{_registry(state_dir)}`: {exc}",
            hint="delete it, then run `locki apply` to issue every sandbox a new credential",
        ) from exc
    clients = data.get("clients", {}) if isinstance(data, dict) else {}
    return clients if isinstance(clients, dict) else {}


def _write(state_dir: Path, clients: dict[str, Any]) -> None:
    text = json.dumps({"version": 1, "clients": clients}, indent=2, sort_keys=True) + "\n"
    _write_private(_registry(state_dir), text.encode())


def _client_key_path(state_dir: Path, sandbox_id: str) -> Path:
    if not _ID.match(sandbox_id):
        raise LockiError(f"`{sandbox_id}` is not a sandbox id")
    folder = bridge_dir(state_dir) / "clients"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{sandbox_id}.key"


def issue(state_dir: Path, sandbox_id: str, *, rotate: bool = False) -> Credential:
    """The sandbox's credential: the one already issued, or a new one (always with `rotate`).

    Re-issuing the same key keeps injection idempotent: a container's live SSH
    connection (ControlPersist) stays valid when the reconciler injects again.
    """
    path = _client_key_path(state_dir, sandbox_id)
    with _lock(state_dir):
        clients = _read(state_dir)
        if not rotate and path.exists():
            pem = path.read_bytes()
            key = asyncssh.import_private_key(pem)
            if clients.get(fingerprint(key), {}).get("sandbox") == sandbox_id:
                return Credential(pem, _public(key))
        key = asyncssh.generate_private_key(ALGORITHM, comment=f"locki-{sandbox_id}")
        pem = key.export_private_key("openssh")
        _write_private(path, pem)
        clients = {fp: e for fp, e in clients.items() if e.get("sandbox") != sandbox_id}
        clients[fingerprint(key)] = {"sandbox": sandbox_id, "public_key": _public(key)}
        _write(state_dir, clients)
        return Credential(pem, _public(key))


def issued(state_dir: Path, sandbox_id: str) -> str | None:
    """The public key currently issued to the sandbox, without issuing one."""
    for entry in _read(state_dir).values():
        if isinstance(entry, dict) and entry.get("sandbox") == sandbox_id:
            public = entry.get("public_key")
            return public if isinstance(public, str) else None
    return None


def revoke(state_dir: Path, sandbox_id: str) -> None:
    """Forget the sandbox's credential; absent ones are fine."""
    path = _client_key_path(state_dir, sandbox_id)
    with _lock(state_dir):
        clients = _read(state_dir)
        kept = {fp: e for fp, e in clients.items() if e.get("sandbox") != sandbox_id}
        if kept != clients:
            _write(state_dir, kept)
        path.unlink(missing_ok=True)


def lookup(state_dir: Path, key: asyncssh.SSHKey) -> str | None:
    """The sandbox id `key` was issued to, `ADMIN` for locki's own key, else None."""
    fp = fingerprint(key)
    admin = bridge_dir(state_dir) / "admin_key"
    if admin.exists() and fingerprint(asyncssh.read_private_key(admin)) == fp:
        return ADMIN
    entry = _read(state_dir).get(fp)
    if not isinstance(entry, dict):
        return None
    sandbox = entry.get("sandbox")
    return sandbox if isinstance(sandbox, str) and _ID.match(sandbox) else None
