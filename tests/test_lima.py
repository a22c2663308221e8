"""The Lima VM's config, provisioning script and uid mapping, without a VM.

The generated config is fed to the fake `limactl` (which validates it as Lima does), the
provisioning script runs for real in bash against a temporary marker folder.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from locki.cli.main import run
from locki.core import runtime
from locki.core.paths import Paths
from locki.resources import container, vm
from locki.resources.vm import provision


def _spec(home: Path, **changes: object) -> vm.VmSpec:
    paths = Paths.from_env()
    spec = vm.sized_from_host(paths, bridge_guest_socket="/run/user/501/locki-bridge.sock")
    return replace(spec, **changes)  # type: ignore[arg-type]


def test_config_has_exactly_the_two_mounts_and_nothing_of_a_template(home: Path) -> None:
    spec = _spec(home)
    config = spec.config()
    data = home / ".local/share/locki"
    assert config["mounts"] == [
        {"location": str(data / "worktrees"), "mountPoint": str(data / "worktrees"),
         "writable": True},
        {"location": str(data / "home"), "mountPoint": str(data / "home"), "writable": True},
    ]
    assert "base" not in config  # a base template would merge its own mounts (~) in
    assert config["vmType"] == ("vz" if os.uname().sysname == "Darwin" else "qemu")
    assert config["mountType"] == ("virtiofs" if config["vmType"] == "vz" else "9p")
    assert config["cpus"] >= 2 and config["memory"].endswith("GiB")
    assert config["containerd"] == {"system": False, "user": False}
    assert config["portForwards"] == [
        {"guestSocket": "/var/lib/incus/unix.socket",
         "hostSocket": str(home.parent / "run/locki/incus.sock")},
        {"guestSocket": "/run/user/501/locki-bridge.sock",
         "hostSocket": str(home.parent / "run/locki/bridge.sock"), "reverse": True},
    ]
    document = json.loads(spec.document())
    assert document["param"] == {vm.HASH_PARAM: spec.config_hash}


def test_hash_follows_every_setting(home: Path) -> None:
    spec = _spec(home)
    assert _spec(home).config_hash == spec.config_hash  # stable from run to run
    for change in ({"cpus": spec.cpus + 1}, {"memory_gib": 3}, {"disk_gib": 55},
                   {"worktrees": Path("/elsewhere")}, {"uid": 4242}):
        changed = replace(spec, **change)  # type: ignore[arg-type]
        assert changed.config_hash != spec.config_hash, change


def test_fake_limactl_accepts_the_config_and_refuses_what_lima_refuses(
        home: Path, fake_limactl: Path, tmp_path: Path) -> None:
    env = {**os.environ, "LIMA_HOME": str(tmp_path / "lima")}
    good = tmp_path / "locki.yaml"
    good.write_text(_spec(home).document())
    created = subprocess.run([str(fake_limactl), "--tty=false", "create", "--name=locki",
                              str(good)], env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    again = subprocess.run([str(fake_limactl), "create", "--name=locki", str(good)], env=env,
                           capture_output=True, text=True)
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = subprocess.run([str(fake_limactl), "list", "--json"], env=env,
                            capture_output=True, text=True, check=True)
    entry = json.loads(listed.stdout.splitlines()[0])
    assert entry["name"] == "locki" and entry["status"] == "Stopped"
    assert entry["param"][vm.HASH_PARAM] == _spec(home).config_hash

    bad_cases = {
        "base": {"base": ["template:fedora"]},
        "vmType": {"vmType": "vz" if os.uname().sysname != "Darwin" else "hyperv"},
        "cpus": {"cpus": 0},
        "memory": {"memory": "lots"},
        "mounts[0].location": {"mounts": [{"location": "relative/path", "writable": True}]},
        "reverse": {"portForwards": [{"guestPort": 80, "reverse": True}]},
        "unknown field": {"mountz": []},
    }
    for needle, change in bad_cases.items():
        broken = tmp_path / "bad.yaml"
        broken.write_text(json.dumps({**json.loads(good.read_text()), **change}))
        result = subprocess.run([str(fake_limactl), "create", "--name=bad", str(broken)],
                                env=env, capture_output=True, text=True)
        assert result.returncode == 1 and "level=fatal" in result.stderr, needle
        assert needle.split(".")[0].split("[")[0] in result.stderr, (needle, result.stderr)


def _run_script(script: str, markers: Path) -> subprocess.CompletedProcess[str]:
    text = script.replace(f"M={provision.MARKERS}", f"M={markers}")
    return subprocess.run(["bash", "-s"], input=text, capture_output=True, text=True,
                          env={**os.environ, "LOCKI_USER": "root"})


def test_provisioning_reruns_a_failed_step_and_only_what_follows(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    allow = tmp_path / "allow"
    steps = [
        provision.Step("first", f"test -e {tmp_path}/first", f"echo first >> {runs}; "
                f"touch {tmp_path}/first"),
        provision.Step("second", f"test -e {tmp_path}/second", f"echo second >> {runs}; "
                f"test -e {allow} && touch {tmp_path}/second"),
        provision.Step("third", "true", f"echo third >> {runs}"),
    ]
    markers = tmp_path / "markers"
    failed = _run_script(provision.provision_script(steps), markers)
    assert failed.returncode != 0
    assert sorted(p.name for p in markers.iterdir()) == ["first"]
    assert runs.read_text().split() == ["first", "second"]

    allow.touch()
    done = _run_script(provision.provision_script(steps), markers)
    assert done.returncode == 0, done.stderr
    assert runs.read_text().split() == ["first", "second", "second"]  # first is not re-run
    assert "first: done" in done.stdout and "third: ok" in done.stdout
    assert {p.name: p.read_text().strip() for p in markers.iterdir()} == {
        s.name: s.version for s in steps}

    changed = [steps[0], provision.Step("second", steps[1].check, steps[1].run + " # v2"), steps[2]]
    again = _run_script(provision.provision_script(changed), markers)
    assert again.returncode == 0 and "second: ok" in again.stdout  # new version: checked again
    assert (markers / "second").read_text().strip() == changed[1].version


def _any_spec() -> vm.VmSpec:
    return vm.VmSpec(worktrees=Path("/w"), home=Path("/h"), bridge_host_socket=Path("/s"),
                     bridge_guest_socket="/g", incus_host_socket=Path("/i"), cpus=2,
                     memory_gib=2, disk_gib=20, vm_type="qemu", arch="x86_64", uid=0, gid=0)


def test_pending_steps_are_the_missing_and_the_stale() -> None:
    spec = _any_spec()
    done = {s.name: s.version for s in spec.steps()}
    steps = spec.steps()
    assert provision.pending_steps(steps, done) == ()
    assert provision.pending_steps(steps, {**done, "network": "old"}) == ("network",)
    without = {k: v for k, v in done.items() if k != "storage"}
    assert provision.pending_steps(steps, without) == ("storage",)


def test_provisioning_never_lets_incus_choose_a_subnet() -> None:
    script = provision.provision_script(_any_spec().steps())
    assert "incus admin init" not in script
    assert f"network create {provision.VM_BRIDGE} ipv4.address={provision.VM_SUBNET}" in script
    assert "btrfs" in script
    completed = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert completed.returncode == 0, completed.stderr


def test_lima_idmap_follows_the_host_user() -> None:
    """In Lima the VM user has the host uid and the mounts show files with it; each
    container maps its root onto that uid, which the VM delegates to root."""
    mac = replace(_any_spec(), uid=501, gid=20)
    subids = next(s for s in mac.steps() if s.name == "subids")
    assert "root:501:1" in subids.check and "--add-subuids 501-501" in subids.run
    assert "subids" not in [s.name for s in _any_spec().steps()]  # a root host: shift=true
    box = container.ContainerSpec(sandbox_id="abcd1234", installation_id="i", image="img",
                                  repo=Path("/r"), worktree=Path("/w"), profile="locki",
                                  uid=501, gid=20)
    assert container._idmap(box) == {"raw.idmap": "uid 501 0\ngid 20 0"}
    assert "shift=true" not in container._device_args(box)


def test_lima_is_the_default_and_needs_limactl(home: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Exception) as caught:
        runtime.choose(None, None)
    assert "limactl" in str(caught.value)
    assert run(["list"]) == 1
    err = capsys.readouterr().err
    assert "`limactl` on PATH" in err and "brew install lima" in err
    assert "LOCKI_RUNTIME=incus" in err
    assert isinstance(runtime.choose("incus", "lima"), runtime.HostIncus)


def test_lima_runtime_reaches_incus_through_the_forwarded_socket(
        home: Path, fake_limactl: Path) -> None:
    chosen = runtime.choose(None, None)
    paths = Paths.from_env()
    assert isinstance(chosen, runtime.LimaVM)
    prefix = chosen.incus_prefix()
    assert prefix[:3] == ["env", f"INCUS_SOCKET={paths.runtime_dir}/incus.sock",
                          f"INCUS_CONF={paths.lima_home}/incus-client"]
    assert chosen.bridge_socket(paths) == f"/run/user/{os.getuid()}/locki-bridge.sock"
    from locki.cli import fast

    lean = fast._client(paths, "lima")
    assert lean is not None and lean[0][:3] == prefix[:3]  # the same socket and config
    assert lean[1] == prefix[1].split("=", 1)[1] and Path(prefix[3]).name == lean[0][3]


def test_without_a_host_incus_client_every_call_goes_through_limactl_shell(
        home: Path, fake_limactl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake_limactl.parent))  # limactl only: no `incus` here
    paths = Paths.from_env()
    prefix = runtime.choose(None, None).incus_prefix()
    assert prefix == ["env", f"LIMA_HOME={paths.lima_home}", str(fake_limactl), "shell",
                      "--workdir", "/", "locki", "--", "incus"]


def test_on_a_mac_the_vm_is_vz_with_virtiofs(home: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    from locki.core import lima

    monkeypatch.setattr(lima, "host_os", lambda: "Darwin")
    monkeypatch.setattr(vm.platform, "machine", lambda: "arm64")
    config = _spec(home).config()
    assert (config["vmType"], config["mountType"], config["arch"]) == (
        "vz", "virtiofs", "aarch64")
    assert config["images"] == [{"location": vm.IMAGES["aarch64"], "arch": "aarch64"}]
    assert len(config["mounts"]) == 2


def test_doctor_refuses_a_lima_too_old_for_the_config(home: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    old = tmp_path / "old-bin" / "limactl"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 'limactl version 0.23.2'\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", f"{old.parent}:{os.environ['PATH']}")
    assert run(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    limactl = next(c for c in report["checks"] if c["name"] == "limactl")
    assert not limactl["ok"] and "upgrade Lima to 1.1.0" in limactl["fix"]


def test_without_a_host_client_a_repo_archive_is_refused_clearly(
        home: Path, tmp_path: Path, fake_limactl: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio

    from locki.core.errors import LockiError
    from locki.reconciler import context, templates
    from locki.state.models import SandboxSpec

    monkeypatch.setenv("PATH", f"{fake_limactl.parent}:/usr/bin:/bin")
    monkeypatch.setattr(runtime.shutil, "which",
                        lambda name: None if name == "incus" else str(fake_limactl))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "img.tar.gz").write_bytes(b"not really an image")
    ctx = context.build(Paths.from_env())
    spec = SandboxSpec(repo=tmp_path / "r", base="main", image="img.tar.gz")
    with pytest.raises(LockiError) as caught:
        anyio.run(templates._source, ctx, spec)
    assert "does not see the repository" in caught.value.message
    assert "brew install incus" in (caught.value.hint or "")
    assert anyio.run(templates._source, ctx, spec.model_copy(update={"image": "alias"})) \
        == "alias"


def test_doctor_names_npm_until_mise_is_cached(home: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Templates need mise, fetched with `npm pack`: without npm no template builds."""
    import anyio

    from locki.cli import doctor
    from locki.resources import provision

    bare = tmp_path / "bare-bin"
    bare.mkdir()
    (bare / "git").symlink_to("/usr/bin/git")
    monkeypatch.setenv("PATH", str(bare))
    paths = Paths.from_env()
    _, found = anyio.run(doctor.checks, paths, "incus")
    npm = next(c for c in found if c.name == "npm")
    assert not npm.ok and npm.blocking and "apt install npm" in (npm.fix or "")

    cached = provision.mise_binary(paths.cache)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x7fELF")
    _, found = anyio.run(doctor.checks, paths, "incus")
    assert next(c for c in found if c.name == "npm").ok
