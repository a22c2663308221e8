"""The bridge daemon's life: handshake, version replacement, stop, and where it listens."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from locki.bridge import client, server
from locki.core.paths import Paths

pytestmark = pytest.mark.e2e


@pytest.fixture
def paths(home: Path) -> Iterator[Paths]:
    found = Paths.from_env()
    yield found
    asyncio.run(client.stop(found))


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # an unreaped zombie runs nothing


def _daemons(paths: Paths) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        daemon = b"locki.hostd" in argv or b"locki.bridge.daemon" in argv
        ours = daemon and os.fsencode(paths.runtime_dir) in argv
        if ours and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _listening_inodes() -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if table.startswith("udp") or fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def test_daemon_answers_on_a_private_unix_socket_only(paths: Paths) -> None:
    asyncio.run(client.ensure_daemon(paths))
    assert asyncio.run(client.ping(paths)) == server.code_version()
    sock = server.socket_path(paths)
    assert sock.stat().st_mode & 0o777 == 0o600
    assert paths.runtime_dir.stat().st_mode & 0o777 == 0o700
    assert (paths.state_dir / "bridge" / "host_key").stat().st_mode & 0o777 == 0o600

    pid = client.daemon_pid(paths)
    assert pid is not None and _daemons(paths) == [pid]
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            sockets.add(target[len("socket:["):-1])
    assert sockets, "the daemon holds no sockets at all?"
    assert not sockets & _listening_inodes(), "the daemon listens on TCP or UDP"


def test_ensure_is_idempotent_and_single(paths: Paths) -> None:
    async def twice() -> None:
        await asyncio.gather(client.ensure_daemon(paths), client.ensure_daemon(paths))

    asyncio.run(twice())
    first = _daemons(paths)
    assert len(first) == 1
    asyncio.run(client.ensure_daemon(paths))
    assert _daemons(paths) == first


def test_a_daemon_of_another_version_is_replaced(paths: Paths) -> None:
    client.start(paths, version="0.0.1+old")
    deadline = time.monotonic() + 20
    while asyncio.run(client.ping(paths)) != "0.0.1+old":
        assert time.monotonic() < deadline, "the old daemon never answered"
        time.sleep(0.1)
    old = client.daemon_pid(paths)
    assert old is not None

    asyncio.run(client.ensure_daemon(paths))
    assert asyncio.run(client.ping(paths)) == server.code_version()
    new = client.daemon_pid(paths)
    assert new is not None and new != old
    deadline = time.monotonic() + 15
    while _alive(old):
        assert time.monotonic() < deadline, "the old daemon is still running"
        time.sleep(0.1)
    assert _daemons(paths) == [new]


def test_stop_ends_the_daemon_and_is_idempotent(paths: Paths) -> None:
    asyncio.run(client.ensure_daemon(paths))
    pid = client.daemon_pid(paths)
    assert pid is not None
    asyncio.run(client.stop(paths))
    assert asyncio.run(client.ping(paths)) is None
    assert not server.socket_path(paths).exists()
    deadline = time.monotonic() + 15
    while _alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    asyncio.run(client.stop(paths))  # nothing running: fine


def test_daemon_leaves_when_its_socket_is_taken_away(paths: Paths) -> None:
    asyncio.run(client.ensure_daemon(paths))
    pid = client.daemon_pid(paths)
    assert pid is not None
    server.socket_path(paths).unlink()
    deadline = time.monotonic() + 15
    while _alive(pid):
        assert time.monotonic() < deadline, "the daemon outlived its socket"
        time.sleep(0.1)
