"""kill -9 anywhere, Ctrl-C, and many writers at once: the next apply always converges.

locki is killed with SIGKILL at named points through its test-only hook
(`LOCKI_TEST_CRASH_AT`, locki/core/crash.py): after a side effect and before the
journal entry is cleared, inside an atomic write, and while git or incus runs (with
`midway:` the child dies too, leaving a half checkout or a half-deleted folder). After
each, one `locki apply` must exit 0 and the four records must agree: the desired
state, the Incus project, `git worktree list` and the `*#locki-*` branches, with no
journal entry, draft file or scratch folder left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from locki.core.paths import slug
from locki.state.models import DesiredState
from locki.state.store import load
from tests.conftest import git
from tests.e2e.conftest import Locki, incus

pytestmark = pytest.mark.e2e

CRASH = "LOCKI_TEST_CRASH_AT"
KILLED = -signal.SIGKILL


def _repo_for(request: pytest.FixtureRequest, point: str) -> Path:
    """The repo a case needs: a big one only where a kill must land inside git's work."""
    name = "bulky" if point.startswith("midway:worktree") else "repo"
    path: Path = request.getfixturevalue(name)
    return path


@pytest.fixture
def bulky(repo: Path) -> Path:
    """The repo with 12000 files on its default branch: a checkout or a removal takes long
    enough (~0.3 s) for a kill to land in the middle of it."""
    for i in range(12000):
        folder = repo / f"d{i % 40}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i}.txt").write_text(f"{i}\n" * 20)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "bulk")
    git(repo, "push", "-q", "origin", "main")
    return repo


def _desired(locki: Locki) -> DesiredState:
    # Validated by the model: the state file is well-formed after every interruption.
    return load(locki.config_dir / "sandboxes.toml", DesiredState)


def _worktree(locki: Locki, repo: Path, sid: str) -> Path:
    return locki.data_dir / "worktrees" / f"{slug(repo.name)}-locki-{sid}"


def _agree(locki: Locki, repo: Path) -> set[str]:
    """Assert the desired state, Incus, git and locki's own files agree; return the ids."""
    desired = _desired(locki).sandbox
    assert all(spec.state != "removed" for spec in desired.values()), desired
    ids = set(desired)
    has_project = (locki.data_dir / "installation-id").exists()
    boxes = {str(c["name"]): c for c in locki.containers()} if has_project else {}
    assert set(boxes) == {f"locki-{sid}" for sid in ids}
    for sid, spec in desired.items():
        box = boxes[f"locki-{sid}"]
        assert str(box["status"]).lower() == spec.state
        device = box["devices"]["worktree"]  # type: ignore[index]
        assert device["source"] == str(_worktree(locki, repo, sid))

    listing = git(repo, "worktree", "list", "--porcelain")
    recorded = {Path(line.split(" ", 1)[1]) for line in listing.splitlines()
                if line.startswith("worktree ")} - {repo}
    expected = {_worktree(locki, repo, sid) for sid in ids}
    assert recorded == expected, listing
    assert "locked" not in listing
    folders = locki.data_dir / "worktrees"
    present = set(folders.iterdir()) if folders.exists() else set()
    assert present == expected  # no scratch folder, nothing half-deleted
    for path in expected:
        assert git(path, "status", "--porcelain") == ""  # a complete checkout

    refs = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()
    assert {ref.rsplit("#locki-", 1)[1] for ref in refs if "#locki-" in ref} == ids

    journal = locki.data_dir.parent.parent / "state" / "locki" / "journal"
    assert not list(journal.iterdir()) if journal.exists() else True
    assert not list(locki.config_dir.glob(".*.tmp"))
    plan = locki("plan", "--detailed-exitcode", cwd=repo)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    return ids


CREATE_POINTS = [
    "write:sandboxes.toml",  # the new entry's write, before its rename
    "branch.create",
    "worktree.add",  # populated beside its place, not moved in yet
    "midway:worktree add",  # git killed mid-checkout: a locked, half-filled worktree
    "container.create",
    "during:create --quiet",  # incus still creating when locki dies
    "device.add",
    "container.start",
    "step:bridge.inject",
]


def _landed(locki: Locki, repo: Path, point: str) -> None:
    """The kill left what the point promises (so each case tests what it claims)."""
    listing = git(repo, "worktree", "list", "--porcelain")
    if point in ("worktree.add", "midway:worktree add"):
        assert "/.partial/" in listing  # populated beside its place, never moved in
    if point == "midway:worktree add":
        assert "locked initializing" in listing  # git itself died mid-checkout
    if point == "branch.create":
        assert "#locki-" in git(repo, "branch", "--list", "*#locki-*")
        assert "#locki-" not in listing
    if point in ("container.create", "device.add"):
        [box] = locki.containers()
        assert ("worktree" in box["devices"]) == (point == "device.add")  # type: ignore[operator]
        assert box["status"] == "Stopped"


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_killed_while_creating_the_next_apply_converges(
    locki: Locki, request: pytest.FixtureRequest, point: str
) -> None:
    where = _repo_for(request, point)
    killed = locki("new", cwd=where, extra_env={CRASH: point})
    assert killed.returncode == KILLED, killed.stderr
    _landed(locki, where, point)

    healed = locki("apply", cwd=where)
    assert healed.returncode == 0, healed.stderr
    ids = _agree(locki, where)
    assert len(ids) == (0 if point.startswith("write:") else 1)
    if not point.startswith("write:"):
        assert "found in the journal" in healed.stderr


REMOVE_POINTS = [
    "write:sandboxes.toml",  # `state = "removed"` never landed: the sandbox stays
    "step:bridge.revoke",
    "during:delete --force",  # incus still deleting when locki dies
    "container.delete",
    "midway:worktree remove",  # git killed mid-delete: a half-emptied worktree
    "worktree.remove",
    "branches.delete",  # one of its branches deleted, the other not yet
    "step:state.forget",
]


@pytest.mark.parametrize("point", REMOVE_POINTS)
def test_killed_while_removing_the_next_apply_converges(
    locki: Locki, request: pytest.FixtureRequest, point: str
) -> None:
    where = _repo_for(request, point)
    made = locki("new", "--json", "--branch", "topic", cwd=where)
    assert made.returncode == 0, made.stderr
    sid = json.loads(made.stdout)["id"]
    git(where, "branch", f"second#locki-{sid}", "origin/main")  # two branches to delete

    # With --force git skips its own scan for changes, so a midway kill lands in the
    # deletion itself rather than in the scan before it.
    force = ["--force"] if point.startswith("midway:") else []
    killed = locki("rm", "-m", sid, "--delete-branch", *force, cwd=where,
                   extra_env={CRASH: point})
    assert killed.returncode == KILLED, killed.stderr
    if point == "midway:worktree remove":
        path = _worktree(locki, where, sid)
        left = sum(1 for _ in path.rglob("*.txt"))
        assert 0 < left < 12000  # half deleted: it looks like "uncommitted changes" now
        shown = json.loads(locki("plan", "--json", cwd=where).stdout)
        [removal] = [a for a in shown["actions"] if a["op"] == "worktree.remove"]
        assert removal["resumes"] and not removal["destructive"]
        assert [e["op"] for e in shown["interrupted"]] == ["worktree.remove"]
    if point == "branches.delete":
        assert len(git(where, "branch", "--list", f"*#locki-{sid}").split()) == 1

    healed = locki("apply", cwd=where)
    assert healed.returncode == 0, healed.stderr
    assert _agree(locki, where) == ({sid} if point.startswith("write:") else set())


@pytest.mark.parametrize("point", ["step:bridge.revoke", "container.delete"])
def test_a_forced_removal_killed_early_is_finished_without_asking(
    locki: Locki, repo: Path, point: str
) -> None:
    made = locki("new", "--json", cwd=repo)
    assert made.returncode == 0, made.stderr
    sid = json.loads(made.stdout)["id"]
    path = _worktree(locki, repo, sid)
    with (path / "README.md").open("a") as dirty:
        dirty.write("unsaved\n")

    killed = locki("rm", "-m", sid, "--force", "--delete-branch", cwd=repo,
                   extra_env={CRASH: point})
    assert killed.returncode == KILLED, killed.stderr
    assert path.exists()  # killed before the worktree's turn
    assert _desired(locki).sandbox[sid].discard_work
    shown = json.loads(locki("plan", "--json", cwd=repo).stdout)
    assert [e["force"] for e in shown["interrupted"]] == [True]
    [removal] = [a for a in shown["actions"] if a["op"] == "worktree.remove"]
    assert removal["resumes"] and not removal["destructive"]

    # Not asked again: --force was given when the removal began.
    healed = locki("apply", cwd=repo)
    assert healed.returncode == 0, healed.stderr
    assert not path.exists()
    assert _agree(locki, repo) == set()


@pytest.mark.parametrize("point", ["midway:image import", "image.import"])
def test_killed_while_importing_an_image(
    locki: Locki, repo: Path, variant_archive: tuple[Path, str], point: str
) -> None:
    variant, fingerprint = variant_archive
    incus("image", "delete", fingerprint, check=False)
    (repo / "image.tar.zst").hardlink_to(variant)
    (repo / "locki.toml").write_text('incus_image = "image.tar.zst"\n')
    env = {"LOCKI_IMAGE": ""}
    killed = locki("new", cwd=repo, extra_env={**env, CRASH: point})
    assert killed.returncode == KILLED, killed.stderr
    present = incus("image", "show", fingerprint, check=False).returncode == 0
    assert present == (point == "image.import")  # midway: the upload died with the client

    healed = locki("apply", cwd=repo, extra_env=env)
    assert healed.returncode == 0, healed.stderr
    assert len(_agree(locki, repo)) == 1
    [box] = locki.containers()
    assert box["config"]["volatile.base_image"] == fingerprint  # type: ignore[index]
    locki("rm", "-m", box["name"].removeprefix("locki-"), cwd=repo)  # type: ignore[attr-defined]
    incus("image", "delete", fingerprint, check=False)  # test_images imports it afresh


def _spawn(locki: Locki, cwd: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "locki", *args], cwd=cwd,
                            env={**locki.env, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_eight_parallel_new_make_eight_sandboxes(locki: Locki, repo: Path) -> None:
    runs = [_spawn(locki, repo, "new", "--stopped", "--json") for _ in range(8)]
    outputs = [(*p.communicate(timeout=300), p.returncode) for p in runs]
    assert [code for _, _, code in outputs] == [0] * 8, outputs
    made = [json.loads(out)["id"] for out, _, _ in outputs]
    assert len(set(made)) == 8  # each once
    assert _agree(locki, repo) == set(made)
    assert all(spec.state == "stopped" for spec in _desired(locki).sandbox.values())


def _journal_entry(locki: Locki, timeout: float = 60) -> None:
    """Wait until an apply has recorded a step: it holds the writer lock then."""
    journal = locki.data_dir.parent.parent / "state" / "locki" / "journal"
    deadline = time.monotonic() + timeout
    while not (journal.exists() and any(journal.glob("*.json"))):
        assert time.monotonic() < deadline, "no apply step began"
        time.sleep(0.005)


def test_a_waiting_apply_names_the_holder_and_times_out(locki: Locki, repo: Path) -> None:
    holder = _spawn(locki, repo, "new")
    _journal_entry(locki)
    os.kill(holder.pid, signal.SIGSTOP)  # frozen while holding the writer lock
    try:
        started = time.monotonic()
        waited = locki("--lock-timeout", "2", "apply", cwd=repo)
        assert waited.returncode == 1, waited.stderr
        assert time.monotonic() - started >= 2
        named = f"locki new (pid {holder.pid} on {os.uname().nodename}, started "
        assert f"waiting for {named}" in waited.stderr
        assert f"gave up after 2s waiting for {named}" in waited.stderr
        shown = locki("plan", "--json", cwd=repo)  # read-only: takes no lock, never waits
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["in_progress"][0]["pid"] == holder.pid
        patient = _spawn(locki, repo, "apply")
        time.sleep(1.5)
        assert patient.poll() is None  # still waiting
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    finished = holder.communicate(timeout=300)
    assert holder.returncode == 0, finished
    _, err = patient.communicate(timeout=300)
    assert patient.returncode == 0, err
    assert f"waiting for locki new (pid {holder.pid}" in err
    assert len(_agree(locki, repo)) == 1


def test_a_killed_holder_left_as_a_zombie_does_not_block(locki: Locki, repo: Path) -> None:
    holder = _spawn(locki, repo, "new")
    _journal_entry(locki)
    os.kill(holder.pid, signal.SIGKILL)
    time.sleep(0.2)
    # Not reaped yet: the pid still exists, as under a PID 1 that never reaps.
    state = Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state == "Z"
    started = time.monotonic()
    healed = locki("--lock-timeout", "0", "apply", cwd=repo)
    assert healed.returncode == 0, healed.stderr
    assert "waiting for" not in healed.stderr
    assert time.monotonic() - started < 60
    assert len(_agree(locki, repo)) == 1
    holder.communicate()


def test_ctrl_c_stops_at_a_step_boundary(locki: Locki, repo: Path) -> None:
    run = _spawn(locki, repo, "new")
    _journal_entry(locki)
    os.killpg(run.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
    _, err = run.communicate(timeout=300)
    assert run.returncode == 130, err
    assert "stopping after the running step" in err
    assert "interrupted: " in err and "  done: " in err and "  not done: " in err
    journal = locki.data_dir.parent.parent / "state" / "locki" / "journal"
    assert not list(journal.glob("*.json"))  # the running step finished and was cleared
    healed = locki("apply", cwd=repo)
    assert healed.returncode == 0, healed.stderr
    assert "found in the journal" not in healed.stderr
    assert len(_agree(locki, repo)) == 1


def test_a_second_ctrl_c_stops_at_once_and_apply_still_converges(
    locki: Locki, repo: Path
) -> None:
    run = _spawn(locki, repo, "new")
    _journal_entry(locki)
    os.killpg(run.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)  # the running step is cancelled, its entry stays
    _, err = run.communicate(timeout=300)
    # 130, or death by the second SIGINT itself when it lands as locki exits (a shell
    # reports that as 130 too).
    assert run.returncode in (130, -signal.SIGINT), err
    assert "interrupted: " in err
    healed = locki("apply", cwd=repo)
    assert healed.returncode == 0, healed.stderr
    assert len(_agree(locki, repo)) == 1
