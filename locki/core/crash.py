"""A test-only hook that kills locki with SIGKILL at a named point. Inert unless set.

`LOCKI_TEST_CRASH_AT=<point>` makes locki kill itself with SIGKILL (no cleanup, no
`finally`, exactly what `kill -9` does) the moment it reaches `<point>`, which the
crash tests use to prove that the next `locki apply` converges from anywhere. Points:

- `<step>` after that step's side effect, before the journal entry is cleared
  (`branch.create`, `worktree.add`, `container.create`, `device.add`, `container.start`,
  `container.delete`, `worktree.remove`, `branches.delete`, `image.import`, ...);
- `write:<file name>` inside an atomic write, after the temporary file is written and
  before it is renamed into place;
- `during:<words>` while a child process whose argv contains `<words>` runs: the child
  is started and locki dies under it, as when a user kills the CLI mid-command;
- `midway:<words>` the same, and the child is killed too a moment after it started,
  as a power cut or a killed process group would (git stops mid-checkout).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

VARIABLE = "LOCKI_TEST_CRASH_AT"


def reached(point: str) -> None:
    """Die here when the hook names `point`."""
    if os.environ.get(VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def during(argv: Sequence[str]) -> None:
    """Start `argv` and die under it when the hook names words of it."""
    mode, _, words = os.environ.get(VARIABLE, "").partition(":")
    if mode not in ("during", "midway") or not words or words not in " ".join(argv):
        return
    import subprocess

    # Its own process group, so `midway` kills git's helpers (it forks some) with it.
    child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    if mode == "during":
        time.sleep(0.3)  # let it get going: locki dies mid-command, not before it
    else:
        _until_busy(child.pid)
        os.killpg(child.pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _until_busy(group: int, ticks: int = 3) -> None:
    """Wait until the child's process group has used `ticks` clock ticks of CPU: it is
    then mid-work on however loaded a machine (a fixed sleep may end before it starts)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        used = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:
                if fields[0] == "Z" and int(stat.parent.name) == group:
                    return  # finished before it could be interrupted
                used += int(fields[11]) + int(fields[12])
        if used >= ticks:
            return
        time.sleep(0.001)
