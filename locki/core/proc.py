"""The process runner: every child process locki starts for a result goes through here.

It is the seam tests use to stand in for programs that cannot exist on a machine
(`limactl`). Each run is logged as a debug event with its argv, exit code and duration.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from locki.core import crash
from locki.core.errors import CommandFailed, LockiError, TimedOut, TransientError

log = structlog.get_logger("locki.proc")

# Set while apply runs its steps: children get their own session, so the Ctrl-C a
# terminal sends to its whole foreground group reaches locki alone, which then stops at
# a step boundary instead of seeing git or incus die halfway through one.
OWN_SESSION: ContextVar[bool] = ContextVar("locki_proc_own_session", default=False)


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


async def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> Completed:
    """Run `argv` to completion and return its decoded output. With `timeout`, a child
    still running after that many seconds is killed and LockiError raised."""
    args = [str(a) for a in argv]
    started = time.monotonic()
    crash.during(args)
    try:
        detached = OWN_SESSION.get()
        with anyio.fail_after(timeout):
            proc = await anyio.run_process(
                args, input=stdin, cwd=cwd, env=dict(env) if env is not None else None,
                check=False, start_new_session=detached,
                stdin=subprocess.DEVNULL if detached and stdin is None else None,
            )
    except TimeoutError:
        raise TimedOut(args, timeout or 0) from None
    except FileNotFoundError as exc:
        if cwd is not None and not cwd.is_dir():
            raise LockiError(f"folder `{cwd}` does not exist (needed to run `{args[0]}`)") from exc
        raise LockiError(
            f"`{args[0]}` is not installed or not on PATH", hint="install it, then try again"
        ) from exc
    if detached and proc.returncode == -signal.SIGINT:
        # A Ctrl-C sent to locki's terminal group in the instant between this child's fork
        # and its setsid reached the child too. Apply steps are idempotent: retried.
        raise TransientError(f"`{args[0]}` caught the Ctrl-C meant for locki as it started")
    result = Completed(
        argv=args,
        returncode=proc.returncode,
        stdout=proc.stdout.decode(errors="replace"),
        stderr=proc.stderr.decode(errors="replace"),
    )
    log.debug(
        "proc.run",
        argv=args,
        cwd=str(cwd) if cwd else None,
        rc=result.returncode,
        ms=round((time.monotonic() - started) * 1000),
    )
    if check and not result.ok:
        raise CommandFailed(args, result.returncode, result.stderr)
    return result


async def run_untrusted(argv: Sequence[str], *, timeout: float, limit: int) -> str | None:
    """The stdout of a command whose output a sandbox controls (`incus exec` of a program
    in its container), or None when it ran longer than `timeout` seconds or wrote more
    than `limit` bytes: then it is killed. The caller usually holds the writer lock, so a
    program that never ends or never stops writing must not hold every locki up with it."""
    args = [str(a) for a in argv]
    started = time.monotonic()
    chunks: list[bytes] = []
    size, code = 0, None
    with anyio.move_on_after(timeout):
        async with await anyio.open_process(args, stdin=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL) as child:
            if child.stdout is None:  # never: stdout is a pipe by default
                return None
            async for chunk in child.stdout:
                size += len(chunk)
                if size > limit:
                    child.kill()
                    break
                chunks.append(chunk)
            else:
                code = await child.wait()
    log.debug("proc.run_untrusted", argv=args, rc=code, bytes=size,
              ms=round((time.monotonic() - started) * 1000))
    return b"".join(chunks).decode(errors="replace") if code == 0 else None


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without variables that would redirect git."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(extra or {})
    return env
