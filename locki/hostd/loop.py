"""The background reconcile loop, run inside the host daemon beside the bridge.

Level-triggered: every pass observes everything afresh and acts on what it sees, so an
event missed (the daemon was down, the runtime restarted) is caught by the next one.
Passes run on a timer (`[daemon] reconcile_interval`, LOCKI_RECONCILE_INTERVAL; 0
turns the loop off) and soon after anything changes in the worktrees folder (inotify,
through watchfiles). A pass:

- skips when another locki holds the writer lock (it never waits for one);
- does nothing at all while the runtime cannot be observed, and destroys nothing while
  any repository cannot be;
- stops containers idle for longer than `[daemon] idle_stop_after` by marking them
  `stopped` in the desired state (`locki x` marks them running again);
- applies the plan's maintenance: it retires sandboxes whose worktree folder was
  deleted (branches stay), re-adds forwards, restarts containers that should run, and
  restores tampered `.git` pointers. It creates no sandbox, replaces no container, never
  touches the daemon itself and runs nothing destructive: those wait for a command.

Any failure of a pass is logged and the loop goes on; it ends only with the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path

import structlog
import watchfiles
from pydantic import ValidationError

from locki.core import activity
from locki.core.errors import LockiError
from locki.core.files import write_atomically
from locki.core.paths import Paths
from locki.hostd import idle
from locki.reconciler import context
from locki.reconciler.apply import apply
from locki.reconciler.model import Action, Kind, Plan
from locki.reconciler.observe import observe
from locki.reconciler.plan import plan
from locki.state.models import DaemonSettings

log = structlog.get_logger("locki.hostd.loop")
# Heavy or user-initiated: a command does these, never the background.
NOT_IN_BACKGROUND = frozenset({
    "container.create", "container.replace", "worktree.create", "include.create",
})
WATCH_DEBOUNCE_MS = 400
OFF_RECHECK = 60.0  # with the loop turned off, how often its setting is read again


def settings(config: DaemonSettings) -> DaemonSettings:
    """The user's settings, with the environment's overrides (for tests and scripts)."""
    overrides: dict[str, float] = {}
    for key, var in (("reconcile_interval", "LOCKI_RECONCILE_INTERVAL"),
                     ("idle_stop_after", "LOCKI_IDLE_STOP_AFTER")):
        if os.environ.get(var):
            try:
                overrides[key] = float(os.environ[var])
            except ValueError:
                log.warning("loop.bad_env", variable=var, value=os.environ[var])
    try:
        return DaemonSettings.model_validate({**config.model_dump(), **overrides})
    except ValidationError:
        log.warning("loop.bad_env", overrides=overrides, why="out of range; ignored")
        return config


def background_actions(result: Plan) -> tuple[Action, ...]:
    """The plan's actions the loop may run: whole chains of one sandbox, none of which
    is destructive or user-initiated, and no deletion while anything is unknown."""
    chains: dict[str, list[Action]] = {}
    for action in result.changes:
        if action.sandbox is not None:  # the project and the daemon: commands' business
            chains.setdefault(action.sandbox, []).append(action)
    chosen: list[Action] = []
    for actions in chains.values():
        if any(a.destructive or a.op in NOT_IN_BACKGROUND for a in actions):
            continue
        if result.unknown and any(a.kind in (Kind.DELETE, Kind.REPLACE) for a in actions):
            continue
        chosen += actions
    return tuple(chosen)


async def one_pass(paths: Paths, *, trigger: str) -> str:
    """One reconcile pass; returns what it did (`busy`, `unknown`, `done`, `idle`)."""
    ctx = context.build(paths)
    with ctx.try_writer("locki daemon (background reconcile)") as taken:
        if not taken:
            log.debug("loop.skipped", trigger=trigger, why="another locki holds the lock")
            return "busy"
        desired = ctx.read_desired()
        observed = await observe(ctx, desired)
        if not observed.runtime_known:
            log.info("loop.held", trigger=trigger, why=observed.runtime_reason)
            return "unknown"
        wanted = settings(ctx.config.daemon)
        stopped = await idle.stop_idle(ctx, desired, observed, wanted, now=time.time())
        if stopped:
            desired = ctx.read_desired()
        result = plan(desired, observed)
        chosen = background_actions(result)
        if chosen:
            log.info("loop.apply", trigger=trigger, actions=[a.address for a in chosen])
            await apply(ctx, desired, Plan(chosen, result.unknown))
        for sid in set(observed.containers) - set(desired.sandbox):
            log.debug("loop.orphan_kept", sandbox=sid, why="`locki gc --force` removes it")
        known = {*desired.sandbox, *observed.containers}
        _forget_stamps(paths, known)
        return "done" if chosen or stopped else "idle"


def _forget_stamps(paths: Paths, known: set[str]) -> None:
    with contextlib.suppress(OSError):
        for stamp in activity.stamps(paths.state_dir).iterdir():
            if stamp.name not in known:
                stamp.unlink(missing_ok=True)


def _watched(root: Path) -> list[Path]:
    """The worktrees folder, each worktree in it and each include (`<worktree>.include/*`):
    an entry of the first appearing or going, or a `.git` of the others changing."""
    folders = [root]
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                inner = list(entry.iterdir()) if entry.name.endswith(".include") else []
                folders += [entry, *(i for i in inner if i.is_dir() and not i.is_symlink())]
    return folders


async def _watch(paths: Paths, poke: asyncio.Event, stopping: asyncio.Event) -> None:
    """Poke the loop when an entry of the worktrees folder appears or goes, or when a
    worktree's `.git` pointer is written (the sandbox rewriting it, so that the user's
    own git on the host would run programs it chose, is undone within a pass)."""
    root = paths.worktrees
    root.mkdir(parents=True, exist_ok=True)

    def relevant(_: watchfiles.Change, path: str) -> bool:
        folder = os.path.dirname(path)
        return folder == str(root) or os.path.basename(path) == ".git" or (
            folder.endswith(".include") and os.path.dirname(folder) == str(root))

    # Not recursive: only the worktrees' own folders and pointers matter, not the files
    # inside them (a recursive watch costs an inotify watch per folder of every checkout).
    while not stopping.is_set():
        folders = _watched(root)
        async for changes in watchfiles.awatch(*folders, recursive=False,
                                               stop_event=stopping, debounce=WATCH_DEBOUNCE_MS,
                                               watch_filter=relevant):
            log.debug("loop.worktrees_changed", changes=len(changes))
            poke.set()
            if any(os.path.basename(p) != ".git" for _, p in changes):
                break  # the set of worktrees may have changed: watch it anew


async def run(paths: Paths, stopping: asyncio.Event) -> None:
    """Passes until `stopping` is set: on the timer, and when the watcher pokes."""
    poke = asyncio.Event()
    watcher = asyncio.create_task(_watch(paths, poke, stopping))
    trigger = "start"
    try:
        while not stopping.is_set():
            interval = _interval(paths)
            result, error = "off", None
            if interval > 0:
                try:
                    result = await one_pass(paths, trigger=trigger)
                except LockiError as exc:
                    result, error = "failed", exc.message
                    log.warning("loop.pass_failed", trigger=trigger, error=exc.message)
                except Exception as exc:
                    result, error = "failed", f"unexpected: {exc!r} (see bridge.jsonl)"
                    log.exception("loop.pass_crashed", trigger=trigger)
            _report(paths, trigger=trigger, result=result, error=error, interval=interval)
            trigger = await _next(poke, stopping, interval or OFF_RECHECK)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher


def _report(paths: Paths, **fields: object) -> None:
    entry = {"at": time.time(), "pid": os.getpid(), **fields}
    with contextlib.suppress(OSError):
        write_atomically(activity.loop_report(paths.state_dir), json.dumps(entry).encode())


def _interval(paths: Paths) -> float:
    """The configured period; with a broken config.toml, the default (or the env's)."""
    try:
        config = context.build(paths).config.daemon
    except Exception:  # whatever is wrong with the config, the loop must go on
        config = DaemonSettings()
    return settings(config).reconcile_interval


async def _next(poke: asyncio.Event, stopping: asyncio.Event, interval: float) -> str:
    """Wait for the timer, a poke or the stop; say which it was."""
    waits = {asyncio.create_task(poke.wait()): "worktrees",
             asyncio.create_task(stopping.wait()): "stop"}
    done, pending = await asyncio.wait(waits, timeout=interval,
                                       return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    poke.clear()
    return waits[next(iter(done))] if done else "timer"
