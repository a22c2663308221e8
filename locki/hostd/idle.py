"""Idle containers: stopped after `[daemon] idle_stop_after` seconds without use.

Use is what leaves a trace: `locki x` and bridged commands touch the sandbox's stamp
(`locki.core.activity`), an open `incus exec` session (an agent's shell, a long test
run) is a running Incus operation, and a container start counts too. With
`services_count`, a process listening inside on one of the sandbox's forwarded ports (a
dev server) counts as use as well. A sandbox without a stamp starts being tracked now,
so a container is never stopped before it was seen idle for the whole period.

Stopping is a desired-state change: the entry becomes `state = "stopped"` (the plan
then stops the container), and `locki x` sets it back to running and starts it.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from locki.core import activity, proc
from locki.core.errors import LockiError
from locki.reconciler.context import Context
from locki.reconciler.model import Observed
from locki.resources.model import ContainerObs
from locki.state.models import DaemonSettings, DesiredState

log = structlog.get_logger("locki.hostd.idle")
LISTEN = "0A"  # the state column of /proc/net/tcp for a listening socket
PROBE_SECONDS = 10.0
PROBE_BYTES = 4 << 20  # /proc/net/tcp has 150 bytes a socket: 4 MiB is ~28000 sockets


def started_at(box: ContainerObs) -> float | None:
    """When Incus last started the container (its `last_used_at`), as epoch seconds."""
    if not box.last_started:
        return None
    text = box.last_started.rstrip("Z")
    head, _, fraction = text.partition(".")
    try:
        moment = datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return None
    return moment + float(f"0.{fraction[:6] or 0}")


def listening_ports(proc_net: str) -> set[int]:
    """Ports in LISTEN state in the text of /proc/net/tcp and tcp6."""
    ports = set()
    for line in proc_net.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == LISTEN and ":" in fields[1]:
            try:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
            except ValueError:
                continue
    return ports


def idle_for(last: float | None, started: float | None, now: float) -> float | None:
    """Seconds since the latest use or start; None when nothing was recorded yet."""
    moments = [m for m in (last, started) if m is not None]
    return now - max(moments) if last is not None and moments else None


async def _busy(ctx: Context) -> set[str]:
    """Names of containers with a running Incus operation (an `incus exec` session)."""
    found = await ctx.incus.query(f"/1.0/operations?project={ctx.project.name}&recursion=1")
    names = set()
    for op in (found or {}).get("running", []) or []:
        for url in (op.get("resources") or {}).get("instances", []) or []:
            names.add(str(url).split("?", 1)[0].rsplit("/", 1)[-1])
    return names


async def _serves(ctx: Context, box: ContainerObs, guests: set[int]) -> bool:
    """Whether a process inside listens on a forwarded port. `cat` is the container's
    own (the sandbox may have replaced it), so its run is bounded in time and output
    (the loop holds the writer lock meanwhile); an answer it does not give counts as
    use: a container is never stopped on a guess."""
    argv = ctx.incus.argv("exec", box.name, "--", "cat", "/proc/net/tcp", "/proc/net/tcp6")
    text = await proc.run_untrusted(argv, timeout=PROBE_SECONDS, limit=PROBE_BYTES)
    if text is None:
        log.warning("idle.probe_failed", sandbox=box.sandbox_id,
                    container=box.name, why="no answer in time, too long, or failed")
        return True
    return bool(listening_ports(text) & guests)


async def stop_idle(ctx: Context, desired: DesiredState, observed: Observed,
                    wanted: DaemonSettings, *, now: float) -> list[str]:
    """Mark idle sandboxes stopped in the desired state; return their ids."""
    if wanted.idle_stop_after <= 0:
        return []
    state_dir = ctx.paths.state_dir
    candidates = {sid: box for sid, box in observed.containers.items()
                  if box.running and sid in desired.sandbox
                  and desired.sandbox[sid].state == "running"}
    if not candidates:
        return []
    try:
        busy = await _busy(ctx)
    except LockiError as exc:
        log.info("idle.unknown", why=exc.message)
        return []  # activity unknown: stop nothing
    idle = []
    for sid, box in sorted(candidates.items()):
        guests = {f.guest for f in desired.sandbox[sid].forwards}
        if box.name in busy or (wanted.services_count and guests
                                and await _serves(ctx, box, guests)):
            activity.touch(state_dir, sid, when=now)
            continue
        quiet = idle_for(activity.last_used(state_dir, sid), started_at(box), now)
        if quiet is None:
            activity.touch(state_dir, sid, when=now)  # tracked from now on
        elif quiet >= wanted.idle_stop_after:
            idle.append(sid)
    return _mark_stopped(ctx, idle, wanted, now)


def _mark_stopped(ctx: Context, idle: list[str], wanted: DaemonSettings,
                  now: float) -> list[str]:
    if not idle:
        return []
    stopped = []
    with ctx.state.edit() as editor:
        for sid in idle:
            spec = editor.state.sandbox.get(sid)
            last = activity.last_used(ctx.paths.state_dir, sid) or 0.0
            # Re-checked under the lock: a `locki x` may have just used it.
            if spec is None or spec.state != "running" or now - last < wanted.idle_stop_after:
                continue
            editor.set_state(sid, "stopped")
            stopped.append(sid)
            log.info("idle.stopping", sandbox=sid, idle_seconds=round(now - last),
                     limit=wanted.idle_stop_after)
    return stopped
