"""The apply journal: each action written down before its side effect, cleared after.

One small JSON file per action in flight under `~/.local/state/locki/journal/`, each
written atomically. Only the holder of the writer lock writes here, so what a writer
finds on disk was left by a run that died (kill -9, a closed laptop, a failed step):
the next apply reports it, re-observes and converges from what it finds, since every
driver is idempotent and a half-made resource looks, to observation, like one to
finish. The one thing observation cannot tell is intent: an interrupted removal leaves
a half-deleted worktree that looks like uncommitted work, so a removal found in the
journal is finished without asking again (its guard passed when it began).

Readers never lock: `locki plan` shows the entries, and `locki gc` skips every
resource `pending_addresses` names, in flight or interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from locki.core.files import write_atomically
from locki.core.lock import command_line
from locki.core.paths import Paths

if TYPE_CHECKING:
    from locki.reconciler.model import Action

log = structlog.get_logger("locki.reconciler.journal")

RESUMED_WITHOUT_ASKING = frozenset({"worktree.remove", "include.remove"})


@dataclass(frozen=True)
class Entry:
    """One action that began: what, by whom, when, and how it ended if it failed."""

    address: str
    op: str
    sandbox: str | None
    item: str | None
    pid: int
    host: str
    command: str
    started: float
    force: bool = False
    failed: str | None = None

    @property
    def since(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.started))

    def describe(self) -> str:
        how = f"failed: {self.failed}" if self.failed else "interrupted"
        return (f"{self.address} ({self.op}) {how}; begun by {self.command} "
                f"(pid {self.pid} on {self.host}, started {self.since})")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Journal:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _file(self, address: str, op: str) -> Path:
        # Addresses hold include names; a digest is always a safe file name.
        digest = hashlib.sha256(f"{address}\0{op}".encode()).hexdigest()[:24]
        return self.root / f"{digest}.json"

    def _write(self, entry: Entry) -> None:
        write_atomically(self._file(entry.address, entry.op),
                         json.dumps(entry.to_json()).encode(), mode=0o600)

    def begin(self, action: Action, *, force: bool) -> Entry:
        """Record `action` before its side effect (call while holding the writer lock)."""
        entry = Entry(action.address, action.op, action.sandbox, action.item, os.getpid(),
                      socket.gethostname(), command_line(), time.time(), force=force)
        self._write(entry)
        return entry

    def failed(self, entry: Entry, message: str) -> None:
        """Keep the entry of a failed action, saying why: the next run resumes it."""
        self._write(Entry(**{**entry.to_json(), "failed": message}))

    def done(self, entry: Entry) -> None:
        self._file(entry.address, entry.op).unlink(missing_ok=True)

    def clear(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.done(entry)

    def entries(self) -> tuple[Entry, ...]:
        """What is on disk, oldest first. A file that does not parse is skipped (and
        logged): the journal only informs, observation decides."""
        found = []
        for path in sorted(self.root.glob("*.json")) if self.root.is_dir() else []:
            try:
                found.append(Entry(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("journal.unreadable", file=str(path), error=str(exc))
        return tuple(sorted(found, key=lambda e: e.started))

    def tidy(self) -> None:
        """Drop drafts of entries whose writer died mid-write (writer lock held)."""
        for draft in self.root.glob(".*.tmp") if self.root.is_dir() else []:
            draft.unlink(missing_ok=True)


def pending_addresses(paths: Paths) -> frozenset[str]:
    """The plan addresses of every apply action begun and not finished. For `locki gc`.

    An address is what `locki plan` prints: `project`, `sandbox.<id>` (its state entry),
    `sandbox.<id>.worktree`, `sandbox.<id>.container`, `sandbox.<id>.include.<name>...`.
    Each is either in flight right now (an apply holds the writer lock) or was
    interrupted (its run died; the next apply finishes or undoes it). Either way its
    resource is half-made or half-gone on purpose: a collector must leave every
    resource of sandbox `<id>` alone while `sandbox_pending(addresses, id)` is true.
    Reads files only: no lock taken, nothing written, never raises on a bad entry.
    """
    return frozenset(entry.address for entry in Journal(paths.journal).entries())


def sandbox_pending(addresses: frozenset[str], sandbox_id: str) -> bool:
    """Whether any address in `addresses` belongs to sandbox `sandbox_id`."""
    own = f"sandbox.{sandbox_id}"
    return any(a == own or a.startswith(own + ".") for a in addresses)
