"""The bridge as a resource: the profile's proxy device and each container's credential.

The reconciler merges `profile_device` into locki's profile (device `locki-bridge`), so
every sandbox reaches the daemon's unix socket at 127.0.0.1:7022 on its own loopback.
After a container is created (from a template that holds no credential) and started,
`inject` writes into it, container-local and never in the shared home:

- `/etc/locki/bridge/id` (0600), the sandbox's own private key;
- `/etc/locki/bridge/ssh_config` and `known_hosts`, pinning the daemon's host key;
- `/etc/locki/bridge/worktrees-root`, so the shim bridges only inside worktrees;
- the shims `/usr/local/lib/locki/bin/{git,locki,gh}`, linked into `/usr/local/bin/`. Debian and
  Fedora keep the real git in /usr/bin, and `/usr/local/bin` precedes `/usr/bin` in the
  PATH `incus exec` gives non-login commands as well as in login shells, so the link
  covers both; `/etc/profile.d/locki-bridge.sh` also puts the shim's folder first for
  login shells whose PATH was set some other way;
- `/etc/tmpfiles.d/locki-bridge.conf`, recreating `/run/locki` (the SSH control
  socket's folder, a tmpfs) at boot;
- `/etc/locki/bridge/stamp`, a hash of all of the above, for `check`.

Idempotent: the same credential is re-issued until it is revoked, files are replaced
atomically. `revoke` forgets the credential; the daemon refuses it from then on, live
connections included.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import structlog

from locki.bridge import keys, server
from locki.core.incus import Incus
from locki.core.paths import Paths

DEVICE = "locki-bridge"
LABEL = "user.locki.bridge"
CONF = "/etc/locki/bridge"
SHIM = "/usr/local/lib/locki/bin/git"
log = structlog.get_logger("locki.resources.bridge")

_INSTALL = r"""
set -eu
d=/etc/locki/bridge
mkdir -p "$d" /usr/local/lib/locki/bin /usr/local/bin /etc/profile.d /etc/tmpfiles.d
chmod 755 /etc/locki "$d"
put() { printf '%s' "$2" > "$1.locki-new"; chmod "$3" "$1.locki-new"; mv -f "$1.locki-new" "$1"; }
(umask 077; cat > "$d/id.locki-new")
chmod 600 "$d/id.locki-new"
mv -f "$d/id.locki-new" "$d/id"
put "$d/ssh_config" "$1" 644
put "$d/known_hosts" "$2" 644
put "$d/worktrees-root" "$3" 644
put /usr/local/lib/locki/bin/git "$4" 755
put /etc/profile.d/locki-bridge.sh "$5" 644
put /etc/tmpfiles.d/locki-bridge.conf "$6" 644
ln -sf /usr/local/lib/locki/bin/git /usr/local/bin/git
put /usr/local/lib/locki/bin/locki "$7" 755
ln -sf /usr/local/lib/locki/bin/locki /usr/local/bin/locki
put /usr/local/lib/locki/bin/gh "$7" 755
ln -sf /usr/local/lib/locki/bin/gh /usr/local/bin/gh
mkdir -p -m 700 /run/locki
put "$d/stamp" "$8" 644
"""

_PROFILE = """\
# locki: git in a sandbox's worktree goes through the host bridge.
case ":$PATH:" in
    *:/usr/local/lib/locki/bin:*) ;;
    *) PATH="/usr/local/lib/locki/bin:$PATH"; export PATH ;;
esac
"""


def profile_device(paths: Paths, socket: str | None = None) -> dict[str, str]:
    """The proxy device: container loopback port -> the daemon's unix socket on the Incus
    host (`socket`: where that host sees it; by default this machine's path)."""
    return {
        "type": "proxy",
        "bind": "container",
        "listen": f"tcp:127.0.0.1:{server.PORT}",
        # The plain path, without creating the folder: planning does no I/O.
        "connect": f"unix:{socket or paths.runtime_dir / server.SOCKET_NAME}",
    }


def ssh_config() -> str:
    return f"""\
# Written by locki; rewritten on every apply.
Host locki-bridge
    HostName 127.0.0.1
    Port {server.PORT}
    User locki
    IdentityFile {CONF}/id
    IdentitiesOnly yes
    IdentityAgent none
    HostKeyAlias locki-bridge
    HostKeyAlgorithms ssh-ed25519
    UserKnownHostsFile {CONF}/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    CheckHostIP no
    UpdateHostKeys no
    BatchMode yes
    RequestTTY no
    ForwardAgent no
    ForwardX11 no
    ClearAllForwardings yes
    SendEnv GIT_INDEX_FILE
    PermitLocalCommand no
    ControlMaster auto
    ControlPath /run/locki/bridge-%C
    ControlPersist 60s
    ServerAliveInterval 15
    ConnectTimeout 10
    LogLevel QUIET
"""


def shim(name: str = "git") -> str:
    return (resources.files("locki.bridge") / "guest" / name).read_text(encoding="utf-8")


def _files(paths: Paths, public_key: str) -> list[str]:
    """The public files, in `_INSTALL`'s argument order, the stamp last."""
    host = keys.host_public_key(paths.state_dir)
    files = [
        ssh_config(),
        f"locki-bridge {host}\n",
        f"{paths.worktrees}\n",
        shim(),
        _PROFILE,
        "d /run/locki 0700 root root -\n",
        shim("locki"),
    ]
    digest = hashlib.sha256("\0".join([public_key, *files]).encode()).hexdigest()
    return [*files, digest + "\n"]


async def inject(incus: Incus, container_name: str, sandbox_id: str, paths: Paths) -> None:
    """Give the running container its credential, the client config and the git shim.

    The stamp is also recorded as the container label `user.locki.bridge`, so observing
    every sandbox's credential costs nothing beyond the one instance listing.
    """
    credential = keys.issue(paths.state_dir, sandbox_id)
    files = _files(paths, credential.public_key)
    # The private key travels on stdin: an argument would show in the host's process list.
    await incus.run(
        "exec", container_name, "--", "sh", "-c", _INSTALL, "locki-inject", *files,
        stdin=credential.private_key_pem,
    )
    await incus.run("config", "set", container_name, f"{LABEL}={files[-1].strip()}")
    log.info("bridge.injected", sandbox=sandbox_id, container=container_name)


def expected_stamp(paths: Paths, sandbox_id: str) -> str | None:
    """The stamp a container with this sandbox's current credential carries, if issued."""
    public = keys.issued(paths.state_dir, sandbox_id)
    return None if public is None else _files(paths, public)[-1].strip()


async def check(incus: Incus, container_name: str, sandbox_id: str, paths: Paths) -> bool:
    """Whether the container holds the current credential and files (reads the stamp)."""
    public = keys.issued(paths.state_dir, sandbox_id)
    if public is None:
        return False
    found = await incus.run("exec", container_name, "--", "cat", f"{CONF}/stamp", check=False)
    return found.ok and found.stdout == _files(paths, public)[-1]


async def revoke(paths: Paths, sandbox_id: str) -> None:
    """Forget the sandbox's credential (the container is going away, or is distrusted)."""
    keys.revoke(paths.state_dir, sandbox_id)
    log.info("bridge.revoked", sandbox=sandbox_id)
