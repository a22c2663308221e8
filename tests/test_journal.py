"""The apply journal and the writer lock, without a runtime."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from locki.core import lock
from locki.core.files import write_atomically
from locki.core.paths import Paths
from locki.reconciler.journal import Journal, pending_addresses, sandbox_pending
from locki.reconciler.model import Action, Kind


def _action(address: str, op: str = "container.create", sid: str | None = "abcd1234") -> Action:
    return Action(address, Kind.CREATE, op, "because", sid)


def _paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "r")


def test_an_entry_is_on_disk_between_begin_and_done(tmp_path: Path) -> None:
    journal = Journal(_paths(tmp_path).journal)
    entry = journal.begin(_action("sandbox.abcd1234.container"), force=False)
    [found] = journal.entries()
    assert found == entry
    assert (found.pid, found.host) == (os.getpid(), socket.gethostname())
    assert found.command.startswith("locki")
    assert pending_addresses(_paths(tmp_path)) == {"sandbox.abcd1234.container"}
    journal.done(entry)
    assert journal.entries() == ()
    assert pending_addresses(_paths(tmp_path)) == frozenset()


def test_a_failed_step_keeps_its_entry_with_the_reason(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    entry = journal.begin(_action("sandbox.abcd1234.worktree", "worktree.remove"), force=True)
    journal.failed(entry, "git failed")
    [found] = journal.entries()
    assert (found.failed, found.force) == ("git failed", True)
    assert "failed: git failed" in found.describe()
    assert "(pid " in found.describe()


def test_entries_are_oldest_first_and_garbage_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    first = journal.begin(_action("sandbox.b.container"), force=False)
    time.sleep(0.01)
    second = journal.begin(_action("sandbox.a.worktree", "worktree.create"), force=False)
    (tmp_path / "journal" / "junk.json").write_text("{not json")
    (tmp_path / "journal" / "other.json").write_text(json.dumps({"address": "x"}))
    assert journal.entries() == (first, second)


def test_tidy_drops_drafts_of_a_writer_killed_mid_write(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    entry = journal.begin(_action("project", "project.ensure", None), force=False)
    draft = tmp_path / "journal" / ".abc.json.x1y2.tmp"
    draft.write_text("{")
    journal.tidy()
    assert not draft.exists()
    assert journal.entries() == (entry,)


def test_sandbox_pending_matches_the_sandbox_and_its_parts_only() -> None:
    addresses = frozenset({"sandbox.abcd1234.include.lib.worktree", "project"})
    assert sandbox_pending(addresses, "abcd1234")
    assert not sandbox_pending(addresses, "abcd123")  # a prefix of the id is another one
    assert sandbox_pending(frozenset({"sandbox.abcd1234"}), "abcd1234")
    assert not sandbox_pending(frozenset({"project"}), "abcd1234")


def test_pending_addresses_of_a_fresh_installation_is_empty(tmp_path: Path) -> None:
    assert pending_addresses(_paths(tmp_path)) == frozenset()


def _hold(path: Path) -> subprocess.Popen[str]:
    """Another process holding the lock (as `locki apply` would), until its stdin closes."""
    code = ("import sys; from pathlib import Path; from locki.core import lock\n"
            f"with lock.exclusive(Path({str(path)!r}), timeout=5, purpose='testing'):\n"
            "    print('held', flush=True); sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, "apply"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_the_lock_asks_the_kernel_and_names_its_holder(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    path = tmp_path / "apply.lock"
    assert not lock.held(path)
    holder = _hold(path)
    try:
        assert lock.held(path)
        assert f"(pid {holder.pid} on {socket.gethostname()}, started " in lock.describe(path)
        started = time.monotonic()
        with pytest.raises(lock.LockTimeout) as err, lock.exclusive(path, timeout=0.5,
                                                                    purpose="applying"):
            pass
        assert time.monotonic() - started >= 0.5
        assert f"pid {holder.pid}" in err.value.message
        assert f"waiting for locki apply (pid {holder.pid}" in capsys.readouterr().err
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert not lock.held(path)


def test_a_stale_holder_record_never_blocks(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A record naming a live pid (here our own parent) while nobody holds the lock: the
    lock is free, so it is taken at once; the record is only ever a message."""
    path = tmp_path / "apply.lock"
    path.touch()
    record = {"pid": os.getppid(), "host": socket.gethostname(), "command": "locki apply",
              "since": time.time() - 3600}
    write_atomically(lock.holder_path(path), json.dumps(record).encode())
    with lock.exclusive(path, timeout=0, purpose="applying"):
        mine = json.loads(lock.holder_path(path).read_text())
        assert mine["pid"] == os.getpid()
    assert "waiting" not in capsys.readouterr().err
    assert not lock.holder_path(path).exists()


def test_a_child_hit_by_the_ctrl_c_meant_for_apply_is_retried() -> None:
    """During apply children get their own session; one that still died of SIGINT caught
    it between fork and setsid, so the (idempotent) step is retried, not failed."""
    import anyio

    from locki.core import proc
    from locki.core.errors import TransientError

    async def run(detached: bool) -> int:
        token = proc.OWN_SESSION.set(detached)
        try:
            return (await proc.run(["sh", "-c", "kill -INT $$"], check=False)).returncode
        finally:
            proc.OWN_SESSION.reset(token)

    assert anyio.run(run, False) == -2  # outside apply: reported as it is
    with pytest.raises(TransientError, match="Ctrl-C meant for locki"):
        anyio.run(run, True)
