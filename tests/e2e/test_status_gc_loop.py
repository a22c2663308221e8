"""`locki status`, `locki gc` and the daemon's background loop, on the real daemon.

An unreachable runtime is simulated for one locki only: its `incus` client is pointed
(INCUS_DIR) at an empty folder instead of the shared daemon's socket, which other tests
use at the same time; linking the real socket into that folder "restarts" it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tomlkit
from filelock import FileLock

from tests.conftest import git
from tests.e2e.conftest import IMAGE, Locki, incus

pytestmark = pytest.mark.e2e
REAL_SOCKET = Path(os.environ.get("INCUS_DIR", "/var/lib/incus")) / "unix.socket"


def _new(locki: Locki, repo: Path, *args: str) -> dict[str, str]:
    made = locki("new", "--json", *args, cwd=repo)
    assert made.returncode == 0, made.stderr
    result: dict[str, str] = json.loads(made.stdout)
    return result


def _status(locki: Locki, cwd: Path, **env: str) -> tuple[int, dict[str, object]]:
    shown = locki("status", "--json", cwd=cwd, extra_env=env)
    assert shown.returncode in (0, 4), shown.stderr
    doc: dict[str, object] = json.loads(shown.stdout)
    return shown.returncode, doc


def _rows(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    rows = doc["sandboxes"]
    assert isinstance(rows, list)
    return {str(r["id"]): r for r in rows}


def _wait(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return check()


def _names(locki: Locki) -> set[str]:
    """Every instance in the project but locki's templates: foreign ones included."""
    return {str(i["name"]) for i in locki.instances()
            if not str(i["name"]).startswith("locki-template-")}


def _foreign(locki: Locki) -> set[str]:
    """Two containers in this installation's project that are not its own: one labelled
    by another installation, one with no locki labels at all. Created, never started."""
    other = ("locki-zzzz0000", ["-c", "user.locki.installation=otherins",
                                "-c", "user.locki.sandbox=zzzz0000"])
    bare = ("someone-elses", [])
    for name, config in (other, bare):
        incus("--project", locki.project, "create", "-q", IMAGE, name, "--profile", "locki",
              *config)
    return {other[0], bare[0]}


def _start_daemon(locki: Locki, **env: str) -> None:
    """The host daemon as `ensure_daemon` starts it, with this test's environment."""
    paths = [locki.config_dir, locki.data_dir, Path(locki.env["XDG_STATE_HOME"]) / "locki",
             Path(locki.env["XDG_RUNTIME_DIR"]) / "locki"]
    argv = [sys.executable, "-m", "locki.hostd", "--detach"]
    for flag, path in zip(("--config-dir", "--data-dir", "--state-dir", "--runtime-dir"),
                          paths, strict=True):
        argv += [flag, str(path)]
    subprocess.run(argv, env={**locki.env, **env}, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait(lambda: subprocess.run(
        [sys.executable, "-m", "locki", "daemon", "status"], env=locki.env,
        capture_output=True).returncode == 0, 15), "the daemon did not come up"


def test_status_tells_conditions_and_changes_nothing(locki: Locki, repo: Path) -> None:
    box = _new(locki, repo)
    sid, worktree = box["id"], Path(box["worktree"])
    code, doc = _status(locki, repo)
    row = _rows(doc)[sid]
    assert code == 0
    assert (row["condition"], row["reason"], row["state"]) == ("Ready", "Converged", "running")
    assert doc["loop"] == {"running": True, "last_pass": doc["loop"]["last_pass"],
                           "result": "off", "error": None, "interval": 0}
    assert row["branch"] == f"untitled#locki-{sid}" and row["dirty"] is False

    # Read-only: a stale index that `git status` would refresh (and lock) stays as it is.
    index = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir")) \
        / "worktrees" / worktree.name / "index"
    before = index.read_bytes(), index.stat().st_mtime_ns
    (worktree / "README.md").touch()
    state_before = (locki.config_dir / "sandboxes.toml").read_text()
    incus("--project", locki.project, "stop", f"locki-{sid}")
    code, doc = _status(locki, repo)
    row = _rows(doc)[sid]
    assert (row["condition"], row["reason"]) == ("Drifted", "ContainerStart")
    assert f"sandbox.{sid}.container" in row["pending"]
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    assert (locki.config_dir / "sandboxes.toml").read_text() == state_before
    subprocess.run(["git", "status"], cwd=worktree, check=True, capture_output=True)
    assert index.stat().st_mtime_ns != before[1], "the check above could not have failed"
    assert _names(locki) == {f"locki-{sid}"}
    assert incus("--project", locki.project, "list", "-c", "s", "--format", "csv",
                 f"locki-{sid}").stdout.strip() == "STOPPED"

    # A container nobody desires is reported, not hidden.
    text = (locki.config_dir / "sandboxes.toml").read_text()
    (locki.config_dir / "sandboxes.toml").write_text(text.split("[sandbox.")[0])
    code, doc = _status(locki, repo)
    assert (_rows(doc)[sid]["condition"], _rows(doc)[sid]["reason"]) == ("Orphaned", "NotDesired")


def test_unreachable_runtime_is_unknown_then_the_loop_converges(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    box = _new(locki, repo)
    sid, worktree = box["id"], Path(box["worktree"])
    foreign = _foreign(locki)
    dead = tmp_path / "incus-down"
    dead.mkdir()
    assert locki("daemon", "stop", cwd=repo).returncode == 0
    _start_daemon(locki, INCUS_DIR=str(dead), LOCKI_RECONCILE_INTERVAL="1")

    state_file = locki.config_dir / "sandboxes.toml"
    shutil.rmtree(worktree)  # the user deletes the worktree while Incus is "down"
    time.sleep(4)  # several loop periods, and a watcher event
    code, doc = _status(locki, repo, INCUS_DIR=str(dead))
    assert code == 4
    assert [(r["id"], r["condition"], r["state"]) for r in _rows(doc).values()] == \
        [(sid, "Unknown", "unknown")]
    assert doc["loop"]["result"] == "unknown"  # the loop held off too
    shown = locki("status", cwd=repo, extra_env={"INCUS_DIR": str(dead)})
    assert shown.returncode == 4 and "Unknown" in shown.stdout
    assert f"[sandbox.{sid}]" in state_file.read_text()
    assert _names(locki) == {f"locki-{sid}", *foreign}  # nothing was destroyed

    (dead / "unix.socket").symlink_to(REAL_SOCKET)  # the runtime is back
    assert _wait(lambda: f"locki-{sid}" not in _names(locki), 10), "the loop did not retire it"
    assert _wait(lambda: f"[sandbox.{sid}]" not in state_file.read_text(), 5)
    assert _names(locki) == foreign
    assert f"untitled#locki-{sid}" in git(repo, "branch", "--list")
    assert str(worktree) not in git(repo, "worktree", "list")


def test_an_idle_container_is_stopped_and_locki_x_restarts_it(locki: Locki, repo: Path) -> None:
    env = {"LOCKI_RECONCILE_INTERVAL": "1", "LOCKI_IDLE_STOP_AFTER": "3"}
    ran = locki("x", "--", "true", cwd=repo, extra_env=env)  # starts the daemon with env
    assert ran.returncode == 0, ran.stderr
    sid = str(locki.sandboxes(repo)[0]["id"])

    def status() -> str:
        return incus("--project", locki.project, "list", "-c", "s", "--format", "csv",
                     f"locki-{sid}").stdout.strip()

    assert status() == "RUNNING"
    assert _wait(lambda: status() == "STOPPED", 15), "the idle container kept running"
    assert 'state = "stopped"' in (locki.config_dir / "sandboxes.toml").read_text()
    code, doc = _status(locki, repo)
    assert code == 0
    assert _rows(doc)[sid]["condition"] == "Ready" and _rows(doc)[sid]["last_used"]

    again = locki("x", "--", "echo", "awake", cwd=repo, extra_env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "awake"
    assert 'state = "running"' in (locki.config_dir / "sandboxes.toml").read_text()


def test_gc_removes_only_this_installations_garbage(locki: Locki, repo: Path) -> None:
    keep = _new(locki, repo)
    gone = _new(locki, repo, "--branch", "done")
    foreign = _foreign(locki)
    kept_id, gone_id = keep["id"], gone["id"]
    gone_tree = Path(gone["worktree"])
    (gone_tree / "notes.txt").write_text("unsaved\n")  # uncommitted work
    # A merged branch of a sandbox long gone, and an unmerged one with its own commit.
    git(repo, "branch", "old#locki-aaaa1111", "main")
    git(repo, "switch", "-q", "-c", "wip#locki-bbbb2222")
    (repo / "wip.txt").write_text("wip\n")
    git(repo, "add", "wip.txt")
    git(repo, "commit", "-q", "-m", "wip")
    git(repo, "switch", "-q", "main")
    # Both were this installation's sandboxes (in its ledger). A merged branch that only
    # looks like one (by hand, or another installation's) is never touched.
    ledger = Path(locki.env["XDG_STATE_HOME"]) / "locki" / "sandbox-ids"
    with ledger.open("a") as handle:
        handle.write("aaaa1111\nbbbb2222\n")
    git(repo, "branch", "x#locki-zzzzzzzz", "main")

    state_file = locki.config_dir / "sandboxes.toml"
    doc = tomlkit.parse(state_file.read_text())
    del doc["sandbox"][gone_id]
    state_file.write_text(doc.as_string())

    dry = locki("gc", "--dry-run", "--json", cwd=repo)
    assert dry.returncode == 0, dry.stderr
    plan = {a["address"]: a for a in json.loads(dry.stdout)["actions"]}
    assert plan[f"sandbox.{gone_id}.container"]["destructive"] is True
    assert plan[f"sandbox.{gone_id}.folder.{gone_tree.name}"]["destructive"] is True
    assert plan["sandbox.aaaa1111.branch.old#locki-aaaa1111"]["action"] == "delete"
    assert plan["sandbox.bbbb2222.branch.wip#locki-bbbb2222"]["action"] == "noop"
    assert not [a for a in plan if "zzzzzzzz" in a]
    assert _names(locki) == {f"locki-{kept_id}", f"locki-{gone_id}", *foreign}

    plain = locki("gc", cwd=repo)
    assert plain.returncode == 0, plain.stderr
    assert "Held back" in plain.stderr
    assert f"locki-{gone_id}" in _names(locki) and gone_tree.exists()
    branches = git(repo, "branch", "--list", "--format=%(refname:short)").splitlines()
    assert "old#locki-aaaa1111" not in branches and "wip#locki-bbbb2222" in branches

    forced = locki("gc", "--force", cwd=repo)
    assert forced.returncode == 0, forced.stderr
    assert _names(locki) == {f"locki-{kept_id}", *foreign}
    assert not gone_tree.exists() and str(gone_tree) not in git(repo, "worktree", "list")
    branches = git(repo, "branch", "--list", "--format=%(refname:short)").splitlines()
    # Checked out in the worktree gc just removed: it goes with the next run (merged).
    assert f"done#locki-{gone_id}" in branches
    assert "wip#locki-bbbb2222" in branches  # unmerged: only with --branches
    unmerged = locki("gc", "--branches", cwd=repo)
    assert unmerged.returncode == 0, unmerged.stderr
    branches = git(repo, "branch", "--list", "--format=%(refname:short)").splitlines()
    assert f"done#locki-{gone_id}" not in branches
    assert "wip#locki-bbbb2222" in branches  # its commit exists nowhere else: --force
    assert locki("gc", "--branches", "--force", cwd=repo).returncode == 0
    assert "wip#locki-bbbb2222" not in git(repo, "branch", "--list")
    assert "x#locki-zzzzzzzz" in git(repo, "branch", "--list")  # not this installation's
    assert f"[sandbox.{kept_id}]" in state_file.read_text()
    code, doc = _status(locki, repo)
    assert code == 0
    assert _rows(doc)[kept_id]["condition"] == "Ready" and set(_rows(doc)) == {kept_id}


def test_gc_deletes_an_image_it_imported_once_nothing_uses_it(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    # The test image repacked at another level than test_images' variant: a fingerprint
    # no other test (and no other installation) has.
    incus("image", "export", IMAGE, str(tmp_path / "exported"))
    exported = next(tmp_path.glob("exported*"))
    (repo / "images").mkdir()
    archive = repo / "images" / "gc-x86_64.tar.zst"
    subprocess.run(f"zstd -dc '{exported}' | zstd -q -2 -T0 -o '{archive}'", shell=True,
                   check=True)
    exported.unlink()
    fingerprint = hashlib.sha256(archive.read_bytes()).hexdigest()
    (repo / "locki.toml").write_text('incus_image = "images/gc-*.tar.zst"\n')
    try:
        made = locki("new", cwd=repo, extra_env={"LOCKI_IMAGE": ""})
        assert made.returncode == 0, made.stderr
        iid = locki.project.removeprefix("locki-")
        owner = incus("image", "get-property", fingerprint, "user.locki.imported-by")
        assert owner.stdout.strip() == iid

        in_use = locki("gc", "--dry-run", "--json", cwd=repo)
        assert in_use.returncode == 0, in_use.stderr
        assert f"image.{fingerprint[:12]}" not in in_use.stdout
        assert "imported images kept" not in in_use.stdout  # use was told, and it is used
        assert locki("rm", "--force", cwd=repo).returncode == 0
        (repo / "locki.toml").unlink()  # nothing desires the archive any more
        collected = locki("gc", cwd=repo)
        assert collected.returncode == 0, collected.stderr
        assert f"image.{fingerprint[:12]}" in collected.stdout
        assert incus("image", "show", fingerprint, check=False).returncode != 0
        assert incus("image", "show", IMAGE, check=False).returncode == 0  # not ours: kept
    finally:
        incus("image", "delete", fingerprint, check=False)


LOOP = {"LOCKI_RECONCILE_INTERVAL": "1"}


def test_the_loop_keeps_forwards_and_pointers_and_waits_for_the_lock(
    locki: Locki, repo: Path
) -> None:
    ran = locki("x", "--", "true", cwd=repo, extra_env=LOOP)
    assert ran.returncode == 0, ran.stderr
    sid = str(locki.sandboxes(repo)[0]["id"])
    name = f"locki-{sid}"
    added = locki("pf", ":3000", "--json", cwd=repo)
    assert added.returncode == 0, added.stderr
    host = json.loads(added.stdout)[0]["host"]

    def devices() -> set[str]:
        shown = incus("--project", locki.project, "config", "device", "list", name)
        return set(shown.stdout.split())

    incus("--project", locki.project, "config", "device", "remove", name, f"locki-fwd4-{host}")
    assert _wait(lambda: f"locki-fwd4-{host}" in devices(), 10), "the forward stayed down"

    # A broken desired state stops nothing but the passes; fixed, they go on.
    state_file = locki.config_dir / "sandboxes.toml"
    good = state_file.read_text()
    state_file.write_text(good + "[broken\n")
    pointer = next((locki.data_dir / "worktrees").glob(f"*-locki-{sid}")) / ".git"
    honest = pointer.read_text()
    pointer.write_text("gitdir: /tmp/not-the-repo\n")
    time.sleep(3)
    assert pointer.read_text() == "gitdir: /tmp/not-the-repo\n"
    state_file.write_text(good)
    assert _wait(lambda: pointer.read_text() == honest, 10), "the pointer was not restored"

    # While another locki holds the writer lock, passes are skipped, never queued.
    held = FileLock(Path(locki.env["XDG_RUNTIME_DIR"]) / "locki" / "apply.lock")
    with held:
        shutil.rmtree(pointer.parent)
        time.sleep(3)
        assert name in _names(locki)
    assert _wait(lambda: name not in _names(locki), 10), "the loop did not retire it"
    log = (Path(locki.env["XDG_STATE_HOME"]) / "locki" / "logs" / "bridge.jsonl").read_text()
    assert '"loop.pass_failed"' in log and "is not valid TOML" in log


def test_a_service_behind_a_forward_counts_as_use_when_asked(locki: Locki, repo: Path) -> None:
    (locki.config_dir).mkdir(parents=True, exist_ok=True)
    (locki.config_dir / "config.toml").write_text(
        "[daemon]\nreconcile_interval = 1\nidle_stop_after = 3\nservices_count = true\n")
    ran = locki("x", "--", "true", cwd=repo, extra_env={"LOCKI_RECONCILE_INTERVAL": ""})
    assert ran.returncode == 0, ran.stderr
    sid = str(locki.sandboxes(repo)[0]["id"])
    assert locki("pf", ":3000", cwd=repo).returncode == 0
    served = locki("x", "--", "systemd-run", "--unit", "web", "python3", "-m", "http.server",
                   "3000", cwd=repo)
    assert served.returncode == 0, served.stderr

    def status() -> str:
        return incus("--project", locki.project, "list", "-c", "s", "--format", "csv",
                     f"locki-{sid}").stdout.strip()

    time.sleep(6)  # twice the idle limit
    assert status() == "RUNNING", "a listening forwarded service did not count as use"
    assert locki("x", "--", "systemctl", "stop", "web", cwd=repo).returncode == 0
    assert _wait(lambda: status() == "STOPPED", 15), "idle without its service, it kept running"


def test_deleting_a_worktree_wakes_the_loop_before_its_timer(locki: Locki, repo: Path) -> None:
    slow = {"LOCKI_RECONCILE_INTERVAL": "120"}  # the timer alone would take minutes
    box = _new(locki, repo)
    assert locki("daemon", "stop", cwd=repo).returncode == 0
    _start_daemon(locki, **slow)
    time.sleep(2)  # its first pass (at start) is over; the next timed one is far away
    started = time.monotonic()
    shutil.rmtree(box["worktree"])
    assert _wait(lambda: f"locki-{box['id']}" not in _names(locki), 20), "inotify missed it"
    took = time.monotonic() - started
    assert _wait(lambda: box["id"] not in (locki.config_dir / "sandboxes.toml").read_text(), 5)
    print(f"retired {took:.1f}s after the folder was deleted")


def test_gc_finds_merged_branches_after_the_last_sandbox_of_a_repo_went(
        locki: Locki, repo: Path) -> None:
    box = _new(locki, repo)
    branch = f"untitled#locki-{box['id']}"
    assert locki("remove", cwd=repo).returncode == 0
    assert branch in git(repo, "branch", "--list")  # remove keeps branches
    assert locki.sandboxes(repo) == []
    dry = locki("gc", "--dry-run", cwd=repo)
    assert dry.returncode == 0, dry.stderr
    assert branch in dry.stdout
    done = locki("gc", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert branch not in git(repo, "branch", "--list")
