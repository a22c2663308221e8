"""The bridge daemon process, started by `ensure_daemon` as `python -m locki.hostd`.

It serves SSH on one unix socket in locki's private runtime folder (0600) and on nothing
else: no TCP listener at all. Containers reach the socket through the Incus proxy
device in locki's profile. It stops when asked (admin key), on SIGTERM/SIGINT, or when
its socket is removed or replaced (its runtime folder is gone, or a newer daemon took
over), after letting running commands finish for a while. A `background` task given by
the entry point (the reconcile loop, which the bridge may not import) runs beside the
server and is stopped with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from locki.bridge import server
from locki.core import log as logging_setup
from locki.core.paths import Paths

log = structlog.get_logger("locki.bridge.daemon")
DRAIN_SECONDS = 10.0
# Runs until the event is set; given the daemon's paths.
Background = Callable[[Paths, asyncio.Event], Coroutine[Any, Any, None]]


def _ours(path: Path, inode: int) -> bool:
    try:
        return path.stat().st_ino == inode
    except FileNotFoundError:
        return False


async def _watch(path: Path, inode: int, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        if not _ours(path, inode):
            log.info("bridge.socket_gone", socket=str(path))
            stopping.set()
        await asyncio.sleep(2.0)


async def run(paths: Paths, version: str, background: Background | None = None) -> int:
    path = server.socket_path(paths)
    bridge = server.Bridge(paths, server.allow_list, version)
    if server.answering(path):
        log.warning("bridge.already_running", socket=str(path))
        return 1
    sock = server.bind(path)
    inode = path.stat().st_ino
    acceptor = await server.listen(bridge, sock)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bridge.stopping.set)
    log.info("bridge.listening", socket=str(path), version=version, pid=os.getpid())
    watcher = asyncio.create_task(_watch(path, inode, bridge.stopping))
    extra: asyncio.Task[None] | None = None
    if background is not None:
        extra = asyncio.create_task(background(paths, bridge.stopping))
    await bridge.stopping.wait()

    acceptor.close()
    if _ours(path, inode):
        path.unlink()
    for _ in range(int(DRAIN_SECONDS * 10)):
        if bridge.active == 0:
            break
        await asyncio.sleep(0.1)
    watcher.cancel()
    if extra is not None:
        # A reconcile pass under way gets the same drain time, then is cancelled.
        done, _ = await asyncio.wait([extra], timeout=DRAIN_SECONDS)
        if not done:
            extra.cancel()
    bridge.close()
    log.info("bridge.stopped", unfinished=bridge.active)
    return 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m locki.hostd")
    for name in ("config-dir", "data-dir", "state-dir", "runtime-dir"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--detach", action="store_true", help="fork and return at once")
    # For tests of the upgrade path: answer pings with this instead of the code's version.
    parser.add_argument("--version", dest="version", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, background: Background | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    paths = Paths(args.config_dir, args.data_dir, args.state_dir, args.runtime_dir)
    if args.detach and os.fork() != 0:
        os._exit(0)  # the starter reaps this parent; the daemon is reparented
    logging_setup.configure(paths.logs, filename="bridge.jsonl")
    try:
        return asyncio.run(run(paths, args.version or server.code_version(), background))
    except Exception:
        log.exception("bridge.crashed")
        return 3


if __name__ == "__main__":
    sys.exit(main())
