"""The Lima runtime end to end: the fake `limactl` for the VM, the real Incus behind it.

The fake keeps a real instance folder under locki's LIMA_HOME, validates the config and
records each call; its "VM" is this host, so the Incus socket Lima forwards is the
host's real one and every container below is a real container.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from locki.resources.vm import provision
from tests.e2e.conftest import Locki, incus

READ = ["shell", "--workdir", "locki", "--", "sh", "-c", provision.READ_MARKERS]


@pytest.fixture
def lima_locki(fake_limactl: Path, locki: Locki) -> Iterator[Locki]:
    locki.env.pop("LOCKI_RUNTIME")  # the default runtime, as users get it
    locki.env["PATH"] = f"{fake_limactl.parent}:{locki.env['PATH']}"
    yield locki


def _lima_home(locki: Locki) -> Path:
    return Path(locki.env["XDG_STATE_HOME"]) / "locki" / "lima"


def _calls(locki: Locki) -> list[list[str]]:
    path = _lima_home(locki) / "_fake" / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _words(call: list[str]) -> list[str]:
    """A call without the paths that differ per run."""
    return [w for w in call if not w.startswith("/")]


def _instance(locki: Locki) -> dict[str, object] | None:
    import subprocess

    listed = subprocess.run(["limactl", "list", "--json"], capture_output=True, text=True,
                            env={**locki.env, "LIMA_HOME": str(_lima_home(locki))}, check=True)
    lines = listed.stdout.splitlines()
    entry: dict[str, object] | None = json.loads(lines[0]) if lines else None
    return entry


def _markers(locki: Locki) -> Path:
    return _lima_home(locki) / "locki" / "guest" / "var-lib-locki" / "provision"


def test_first_run_builds_the_vm_then_the_sandbox_in_it(lima_locki: Locki, repo: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    made = lima_locki("new", "--json", cwd=repo)
    assert made.returncode == 0, made.stderr
    sid = json.loads(made.stdout)["id"]
    worktree = Path(json.loads(made.stdout)["worktree"])

    calls = [_words(c) for c in _calls(lima_locki)]
    assert calls == [
        ["list", "--json"],                              # new: no VM to check the image
        ["list", "--json"],                              # observe: no VM
        ["list", "--json"],                              # create: still none
        ["--tty=false", "create", "--name=locki"],       # from locki.yaml
        ["list", "--json"],
        ["--tty=false", "start", "locki"],               # boots and provisions
        READ,                                            # reads the markers
        ["list", "--json"],                              # second pass: observe again
        READ,
    ]
    entry = _instance(lima_locki)
    assert entry is not None and entry["status"] == "Running"
    config = json.loads((Path(str(entry["dir"])) / "lima.yaml").read_text())
    data = Path(lima_locki.env["XDG_DATA_HOME"]) / "locki"
    assert [m["location"] for m in config["mounts"]] == [str(data / "worktrees"),
                                                         str(data / "home")]
    assert all(m["writable"] for m in config["mounts"]) and "base" not in config
    assert sorted(p.name for p in _markers(lima_locki).iterdir()) == [
        "access", "cache", "daemon", "network", "packages", "profile", "storage"]

    # The container is real, reached through the forwarded socket; git in it goes
    # through the bridge socket Lima forwards into the VM.
    names = [c["name"] for c in lima_locki.containers()]
    assert names == [f"locki-{sid}"]
    ran = lima_locki("x", "-m", sid, "--", "sh", "-c", "git status --short --branch; "
                     "echo made > inside.txt", cwd=repo)
    assert ran.returncode == 0, ran.stderr
    assert f"untitled#locki-{sid}" in ran.stdout
    assert (worktree / "inside.txt").stat().st_uid == os.getuid()
    assert lima_locki("plan", "--detailed-exitcode", cwd=repo).returncode == 0

    # The daemon's freezer speaks to the VM's Incus through the forwarded socket (on a
    # Mac there is no cgroup of the container to write on the host).
    import asyncio

    from locki.bridge import freeze
    from locki.core import runtime
    from locki.core.paths import Paths

    paths = Paths.from_env()
    socket = runtime.incus_api(paths, None)
    assert socket == str(Path(lima_locki.env["XDG_RUNTIME_DIR"]) / "locki" / "incus.sock")
    monkeypatch.setattr(freeze, "_cgroup", lambda name, project: None)
    asyncio.run(freeze._state(f"locki-{sid}", lima_locki.project, "freeze", socket))
    assert lima_locki.containers()[0]["status"] == "Frozen"
    asyncio.run(freeze._state(f"locki-{sid}", lima_locki.project, "unfreeze", socket))
    assert lima_locki.containers()[0]["status"] == "Running"
    assert runtime.incus_api(paths, "incus") is None

    # A ready sandbox: `locki x` takes the lean path, straight through the forwarded
    # socket, without a single `limactl` call.
    before = len(_calls(lima_locki))
    lean = lima_locki("x", "-m", sid, "--", "cat", "inside.txt", cwd=repo)
    assert lean.returncode == 0 and lean.stdout == "made\n", lean.stderr
    assert len(_calls(lima_locki)) == before


def test_config_drift_is_a_replace_that_needs_force(lima_locki: Locki, repo: Path) -> None:
    made = lima_locki("new", "--json", cwd=repo)
    assert made.returncode == 0, made.stderr
    worktree = Path(json.loads(made.stdout)["worktree"])
    (worktree / "work.txt").write_text("kept\n")
    before = lima_locki.containers()[0]["config"]
    (lima_locki.config_dir / "config.toml").write_text("[vm]\ncpus = 3\n")

    shown = lima_locki("plan", "--json", cwd=repo)
    assert shown.returncode == 0, shown.stderr
    vm_action = json.loads(shown.stdout)["actions"][0]
    assert vm_action["address"] == "vm" and vm_action["action"] == "replace"
    cpus = _instance(lima_locki)["cpus"]  # type: ignore[index]
    assert vm_action["destructive"] and f"cpus {cpus} -> 3" in vm_action["reason"]

    refused = lima_locki("apply", cwd=repo)
    assert refused.returncode == 1 and "would destroy work" in refused.stderr
    entry = _instance(lima_locki)
    assert entry is not None and entry["cpus"] != 3

    forced = lima_locki("apply", "--force", cwd=repo)
    assert forced.returncode == 0, forced.stderr
    entry = _instance(lima_locki)
    assert entry is not None and entry["cpus"] == 3 and entry["status"] == "Running"
    after = lima_locki.containers()[0]["config"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert after["volatile.uuid"] != before["volatile.uuid"]  # a new container
    assert (worktree / "work.txt").read_text() == "kept\n"
    assert lima_locki("plan", "--detailed-exitcode", cwd=repo).returncode == 0


def test_vm_stop_and_delete_keep_the_work_and_apply_rebuilds(lima_locki: Locki,
                                                             repo: Path) -> None:
    made = lima_locki("new", "--json", cwd=repo)
    assert made.returncode == 0, made.stderr
    sid = json.loads(made.stdout)["id"]
    worktree = Path(json.loads(made.stdout)["worktree"])

    shown = lima_locki("vm", "status", cwd=repo)
    assert shown.returncode == 0 and "VM `locki`: running (qemu, " in shown.stdout
    assert "changed" not in shown.stdout and "provisioning" not in shown.stdout
    assert lima_locki("vm", "stop", cwd=repo).returncode == 0
    status = lima_locki("vm", "status", "--json", cwd=repo)
    assert json.loads(status.stdout)["status"] == "stopped"
    listing = lima_locki("list", "--json", cwd=repo)
    assert listing.returncode == 4  # unknown, never an empty list
    assert [row["state"] for row in json.loads(listing.stdout)] == ["unknown"]
    again = lima_locki("vm", "stop", cwd=repo)
    assert again.returncode == 0 and "was not running" in again.stdout

    started = lima_locki("apply", cwd=repo)
    assert started.returncode == 0, started.stderr
    assert lima_locki.sandboxes(repo)[0]["state"] == "running"

    refused = lima_locki("vm", "delete", cwd=repo)
    assert refused.returncode == 1 and sid in refused.stderr and "--force" in refused.stderr
    assert _instance(lima_locki) is not None
    deleted = lima_locki("vm", "delete", "--force", cwd=repo)
    assert deleted.returncode == 0 and "kept" in deleted.stdout
    assert _instance(lima_locki) is None
    assert lima_locki.containers() == []  # they lived in the VM (here: its project)
    assert worktree.is_dir()
    assert sid in (lima_locki.config_dir / "sandboxes.toml").read_text()
    gone = lima_locki("vm", "delete", cwd=repo)
    assert gone.returncode == 0 and "there was none" in gone.stdout
    none = lima_locki("vm", "status", cwd=repo)
    assert none.returncode == 0 and "no VM `locki` yet" in none.stdout

    rebuilt = lima_locki("apply", cwd=repo)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert _instance(lima_locki) is not None
    assert [c["name"] for c in lima_locki.containers()] == [f"locki-{sid}"]
    ran = lima_locki("x", "-m", sid, "--", "git", "status", "--short", cwd=repo)
    assert ran.returncode == 0, ran.stderr

    # Without a VM nothing is in it: removing a sandbox needs no VM and builds none.
    assert lima_locki("vm", "delete", "--force", cwd=repo).returncode == 0
    removed = lima_locki("remove", "-m", sid, cwd=repo)
    assert removed.returncode == 0, removed.stderr
    assert _instance(lima_locki) is None and not worktree.exists()
    assert sid not in (lima_locki.config_dir / "sandboxes.toml").read_text()


def test_unfinished_provisioning_steps_run_again(lima_locki: Locki, repo: Path) -> None:
    made = lima_locki("new", "--json", cwd=repo)
    assert made.returncode == 0, made.stderr
    markers = _markers(lima_locki)
    (markers / "storage").unlink()              # as if that step had failed
    (markers / "network").write_text("old\n")   # a step whose version changed
    kept = (markers / "packages").stat().st_mtime_ns

    shown = lima_locki("plan", "--json", cwd=repo)
    actions = {a["address"]: a for a in json.loads(shown.stdout)["actions"]}
    assert actions["vm"]["action"] == "update"
    assert "not done: storage, network" in actions["vm"]["reason"]
    assert actions[f"sandbox.{json.loads(made.stdout)['id']}.container"]["action"] == "noop"

    applied = lima_locki("apply", cwd=repo)
    assert applied.returncode == 0, applied.stderr
    assert (markers / "storage").exists() and (markers / "network").read_text() != "old\n"
    assert (markers / "packages").stat().st_mtime_ns == kept  # finished steps are skipped
    assert any("bash -s" in " ".join(c) for c in _calls(lima_locki))
    assert lima_locki("plan", "--detailed-exitcode", cwd=repo).returncode == 0


def test_doctor_names_what_blocks_each_runtime(lima_locki: Locki, repo: Path) -> None:
    empty = lima_locki("list", cwd=repo)  # no VM and no sandbox: nothing is unknown
    assert empty.returncode == 0 and "No sandboxes yet" in empty.stderr
    checked = lima_locki("doctor", "--json", cwd=repo)
    report = json.loads(checked.stdout)
    by_name = {c["name"]: c for c in report["checks"]}
    assert report["runtime"] == "lima" and by_name["limactl"]["ok"]
    assert by_name["vm"]["ok"] is False and by_name["vm"]["blocking"] is False
    if by_name["qemu"]["ok"]:
        assert checked.returncode == 0
    else:  # this machine: Lima would need QEMU, and doctor says so
        assert checked.returncode == 1 and "install QEMU" in by_name["qemu"]["fix"]
    text = lima_locki("doctor", cwd=repo)
    assert "fix: `locki apply` (or `locki x`) creates it" in text.stdout

    host = lima_locki("--runtime", "incus", "doctor", "--json", cwd=repo)
    assert host.returncode == 0, host.stdout
    assert {c["name"] for c in json.loads(host.stdout)["checks"] if c["ok"]} >= {
        "incus", "incus daemon", "git", "disk"}

    path = ":".join(p for p in lima_locki.env["PATH"].split(":") if "fake-bin" not in p)
    missing = lima_locki("doctor", cwd=repo, extra_env={"PATH": path})
    assert missing.returncode == 1
    assert "FAIL  limactl" in missing.stdout and "brew install lima" in missing.stdout
    blocked = lima_locki("list", cwd=repo, extra_env={"PATH": path})
    assert blocked.returncode == 1 and "`limactl` on PATH" in blocked.stderr
    assert incus("project", "list", "-f", "csv").returncode == 0


def test_without_an_incus_client_on_the_host_calls_go_through_limactl_shell(
        lima_locki: Locki, repo: Path, tmp_path: Path) -> None:
    """A Mac usually has no `incus` client: every Incus call then runs in the VM."""
    import shutil

    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("git", "env", "sh", "bash", "unshare", "ssh", "cat", "id"):
        found = shutil.which(name)
        assert found, name
        (tools / name).symlink_to(found)
    fake_bin = next(p for p in lima_locki.env["PATH"].split(":") if p.endswith("fake-bin"))
    path = {"PATH": f"{fake_bin}:{tools}"}
    made = lima_locki("new", "--json", cwd=repo, extra_env=path)
    assert made.returncode == 0, made.stderr
    sid = json.loads(made.stdout)["id"]
    through = [c for c in _calls(lima_locki) if "incus" in c]
    assert through and all(c[:5] == ["shell", "--workdir", "/", "locki", "--"] and
                           c[5] == "incus" for c in through)
    assert any("create" in c for c in through)  # the container, made inside the VM
    ran = lima_locki("x", "-m", sid, "--", "sh", "-c", "git status --short --branch; "
                     "test -x /usr/local/bin/mise && head -1 /etc/claude-code/CLAUDE.md",
                     cwd=repo, extra_env=path)
    assert ran.returncode == 0, ran.stderr
    assert f"untitled#locki-{sid}" in ran.stdout
    # The template's files were staged where the VM sees them (the fake's guest, like a
    # VM, does not see locki's cache folder), and the staging folder is gone.
    assert "You are working in a locki sandbox" in ran.stdout
    worktrees = Path(lima_locki.env["XDG_DATA_HOME"]) / "locki" / "worktrees"
    assert not list(worktrees.glob(".stage-*"))
