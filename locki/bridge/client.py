"""Talking to the bridge daemon from the host: ping, start, stop.

Liveness is a handshake, never a pid file: `ping` connects to the daemon's socket with
locki's admin key, checks the daemon's pinned host key and asks for its version. A
daemon that does not answer, or answers with another version (older code), is replaced
by `ensure_daemon`, under a lock so that two callers never start two daemons.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import structlog
from filelock import FileLock, Timeout

import locki
from locki.bridge import keys, server
from locki.core.errors import LockiError
from locki.core.paths import Paths

log = structlog.get_logger("locki.bridge.client")
# What the daemon keeps of the caller's environment: git's own is rebuilt per command;
# the GH_* login variables reach host gh only (`gh_run.env`), never a container.
_ENV = ("HOME", "PATH", "USER", "LOGNAME", "LANG", "LC_ALL", "SSH_AUTH_SOCK", "TZ",
        "LOCKI_RUNTIME", "INCUS_DIR", "INCUS_SOCKET", "LOCKI_RECONCILE_INTERVAL",
        "LOCKI_IDLE_STOP_AFTER", "GH_TOKEN", "GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN", "GH_HOST",
        "GH_CONFIG_DIR")


async def _connect(paths: Paths, timeout: float) -> asyncssh.SSHClientConnection:
    path = server.socket_path(paths)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, str(path)),
                               timeout)
    except BaseException:
        sock.close()
        raise
    host = keys.host_key(paths.state_dir).convert_to_public()
    return await asyncio.wait_for(
        asyncssh.connect(
            sock=sock, username="locki", client_keys=[keys.admin_key(paths.state_dir)],
            known_hosts=([host], [], []), config=None, agent_path=None,
            preferred_auth="publickey", x11_forwarding=False,
        ),
        timeout,
    )


async def _control(paths: Paths, request: str, timeout: float) -> str | None:
    try:
        async with await _connect(paths, timeout) as conn:
            result = await asyncio.wait_for(conn.run(f"locki-bridge {request}"), timeout)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        log.debug("bridge.control_failed", request=request, error=str(exc))
        return None
    if result.exit_status != 0:
        return None
    return str(result.stdout).strip()


async def ping(paths: Paths, *, timeout: float = 5.0) -> str | None:
    """The running daemon's version, or None when nothing answers."""
    return await _control(paths, "ping", timeout)


def daemon_pid(paths: Paths) -> int | None:
    """The pid of the process listening on the socket, from the kernel (Linux only)."""
    if sys.platform != "linux":
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(server.socket_path(paths)))
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid if uid == os.getuid() else None


def _running(pid: int | None) -> bool:
    """Whether the daemon `pid` still runs (Linux): not an unreaped zombie, which runs
    nothing, nor another program that was given the number since."""
    if pid is None:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return "\nState:\tZ" not in status and any(
        name in cmdline for name in (b"locki.hostd", b"locki.bridge.daemon"))


async def _gone(paths: Paths, timeout: float, pid: int | None = None) -> bool:
    """Nothing listens on the socket, and the process that did (`pid`) has exited: a
    daemon unlinks its socket first and only then finishes its running commands."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon_pid(paths) is None and not _running(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def stop(paths: Paths, *, timeout: float = 15.0) -> None:
    """Ask the daemon to stop and wait until it has; a daemon that is not there is fine."""
    pid = daemon_pid(paths)
    if await _control(paths, "stop", 5.0) is None and pid is None:
        server.socket_path(paths).unlink(missing_ok=True)  # nobody listens on it
        return
    if await _gone(paths, timeout, pid):
        log.info("bridge.stopped")
        return
    # It took the request (or never answered) and still listens or runs: the kernel told
    # us which process owns the socket, so end that one, not a guess from a pid file.
    if _running(pid) and pid is not None:
        log.warning("bridge.stop_forced", pid=pid)
        os.kill(pid, signal.SIGKILL)
        if await _gone(paths, 5.0, pid):
            return
    raise LockiError(
        f"the bridge daemon on `{server.socket_path(paths)}` did not stop",
        hint="see `bridge.jsonl` in locki's log folder",
    )


def _lock(paths: Paths) -> FileLock:
    return FileLock(paths.private_runtime_dir() / "bridge.lock")


def daemon_argv(paths: Paths, *, version: str | None = None) -> list[str]:
    argv = [
        sys.executable, "-m", "locki.hostd", "--detach",
        "--config-dir", str(paths.config_dir), "--data-dir", str(paths.data_dir),
        "--state-dir", str(paths.state_dir), "--runtime-dir", str(paths.runtime_dir),
    ]
    return [*argv, "--version", version] if version else argv


def start(paths: Paths, *, version: str | None = None) -> None:
    """Launch the daemon detached: its own session, stdio to a log file, cwd `/`."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    env = {k: os.environ[k] for k in _ENV if k in os.environ}
    # The daemon must import this very code (its version is compared with ours).
    env["PYTHONPATH"] = str(Path(locki.__file__).parent.parent)
    with open(paths.logs / "bridge.out", "ab") as out:
        # `--detach` forks once more and the first child exits at once: we reap it
        # here, and the daemon is nobody's zombie.
        subprocess.run(
            daemon_argv(paths, version=version), stdin=subprocess.DEVNULL, stdout=out,
            stderr=out, cwd="/", env=env, start_new_session=True, check=True, timeout=30,
        )


async def ensure_daemon(paths: Paths, *, timeout: float = 20.0) -> None:
    """A daemon running this code answers on the socket when this returns."""
    want = server.code_version()
    lock = _lock(paths)
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock.acquire(blocking=False)
            break
        except Timeout:
            if time.monotonic() > deadline:
                raise LockiError(f"another locki holds `{lock.lock_file}`") from None
            await asyncio.sleep(0.05)
    try:
        got = await ping(paths)
        if got == want:
            return
        if got is not None:
            log.info("bridge.restarting", running=got, wanted=want)
            await stop(paths)
        start(paths)
        while time.monotonic() < deadline:
            got = await ping(paths, timeout=2.0)
            # Recomputed: an upgrade landing meanwhile changes what the new daemon hashed.
            want = server.code_version()
            if got == want:
                log.info("bridge.started", version=want)
                return
            await asyncio.sleep(0.1)
        raise LockiError(
            f"the bridge daemon did not come up (it answers {got!r}, wanted {want!r})",
            hint=f"see `{paths.logs / 'bridge.out'}` and `{paths.logs / 'bridge.jsonl'}`",
        )
    finally:
        lock.release()
