"""The Lima VM `locki`: the security boundary of the default runtime.

locki writes the whole VM config itself (`config`): no `base` template, so none of
Lima's template mounts (the home folder!) are merged in; exactly two host mounts, the
worktrees root and the shared home, each at its identical path and writable; CPU, memory
and disk sized from the host unless config.toml says; `vz` on macOS, `qemu` elsewhere.
Lima forwards the VM's Incus socket to the host and the host's bridge socket into the
VM, so locki talks to Incus without a `limactl shell` per call and the sandboxes reach
the bridge daemon.

The config's hash is stored on the instance as the Lima param `LockiConfigHash` (shown by
`limactl list --json`): a VM built from another config is drift, planned as a replace
that needs --force, never applied silently. Incus is installed and initialised inside
by the provisioning script (`provision.py`): each step leaves a marker holding its
own version, so a failed or changed step runs again at the next boot or apply while
finished steps are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from locki.core import lima
from locki.core.errors import LockiError
from locki.core.paths import Paths
from locki.resources.model import Health
from locki.resources.vm import provision

log = structlog.get_logger("locki.resources.vm")

GIB = 1024**3
HASH_PARAM = "LockiConfigHash"
# Debian 13 cloud images: Incus 6 is in its main suite.
IMAGES = {
    "x86_64": "https://cloud.debian.org/images/cloud/trixie/latest/"
              "debian-13-genericcloud-amd64.qcow2",
    "aarch64": "https://cloud.debian.org/images/cloud/trixie/latest/"
               "debian-13-genericcloud-arm64.qcow2",
}


@dataclass(frozen=True)
class VmSpec:
    worktrees: Path
    home: Path
    bridge_host_socket: Path
    bridge_guest_socket: str
    incus_host_socket: Path
    cpus: int
    memory_gib: int
    disk_gib: int
    vm_type: str
    arch: str
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)

    def steps(self) -> list[provision.Step]:
        return provision.provision_steps(self.uid, self.gid, self.disk_gib)

    def config(self) -> dict[str, Any]:
        """The Lima config without its hash param (what the hash is taken of)."""
        mounts = [{"location": str(path), "mountPoint": str(path), "writable": True}
                  for path in (self.worktrees, self.home)]
        return {
            "minimumLimaVersion": ".".join(map(str, lima.MINIMUM_VERSION)),
            "vmType": self.vm_type,
            "arch": self.arch,
            "images": [{"location": IMAGES[self.arch], "arch": self.arch}],
            "cpus": self.cpus,
            "memory": f"{self.memory_gib}GiB",
            "disk": f"{self.disk_gib}GiB",
            "mountType": "virtiofs" if self.vm_type == "vz" else "9p",
            "mounts": mounts,
            "containerd": {"system": False, "user": False},
            "ssh": {"loadDotSSHPubKeys": False, "forwardAgent": False},
            "portForwards": [
                {"guestSocket": provision.GUEST_INCUS_SOCKET,
                 "hostSocket": str(self.incus_host_socket)},
                {"guestSocket": self.bridge_guest_socket,
                 "hostSocket": str(self.bridge_host_socket), "reverse": True},
            ],
            "provision": [{"mode": "system", "script": provision.provision_script(self.steps())}],
        }

    @property
    def config_hash(self) -> str:
        canonical = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]

    def document(self) -> str:
        """The file `limactl create` gets: JSON, which Lima's YAML parser reads as YAML."""
        return json.dumps({**self.config(), "param": {HASH_PARAM: self.config_hash}},
                          indent=2) + "\n"


def host_arch() -> str:
    machine = platform.machine().lower()
    return "aarch64" if machine in ("arm64", "aarch64") else "x86_64"


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * GIB


def sized_from_host(paths: Paths, *, cpus: int | None = None, memory_gib: int | None = None,
                    disk_gib: int | None = None, bridge_guest_socket: str) -> VmSpec:
    """Half the host's CPUs and memory (at least 2 and 2 GiB), disk up to 100 GiB but at
    most half the host disk. Only stable host facts count: free space does not, or the
    config (and its hash) would change from one day to the next."""
    # Shortcoming: the host ends of the two socket forwards live in the runtime folder,
    # so a locki run with another XDG_RUNTIME_DIR (cron, `sudo -u`) sees VM drift; Lima
    # cannot change forwards of an existing instance here. It can go once the sockets
    # move to a fixed short path of their own.
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    fs = os.statvfs(paths.state_dir)
    total_gib = fs.f_blocks * fs.f_frsize // GIB
    return VmSpec(
        worktrees=paths.worktrees,
        home=paths.home,
        bridge_host_socket=paths.runtime_dir / "bridge.sock",
        bridge_guest_socket=bridge_guest_socket,
        incus_host_socket=lima.incus_socket(paths),
        cpus=cpus or max(2, (os.cpu_count() or 2) // 2),
        memory_gib=memory_gib or max(2, _host_memory() // GIB // 2),
        disk_gib=disk_gib or max(20, min(100, total_gib // 2)),
        vm_type="vz" if lima.host_os() == "Darwin" else "qemu",
        arch=host_arch(),
    )


@dataclass(frozen=True)
class VmObs:
    health: Health
    reason: str
    status: str | None = None  # Lima's: Running, Stopped, Broken, …
    config_hash: str | None = None
    pending: tuple[str, ...] = ()  # provisioning steps not done (when running)
    info: dict[str, Any] = field(default_factory=dict)
    drift: tuple[str, ...] = ()  # what differs from the wanted config, when it does

    @property
    def running(self) -> bool:
        return self.status == "Running"


_COMPARED = ("vmType", "arch", "cpus", "memory", "disk", "mountType")


def drift(spec: VmSpec, have: Any) -> tuple[str, ...]:
    """What differs between the config the VM was built from (`config` in its listing)
    and the wanted one. Lima fills in its defaults there, so only what locki sets is
    compared, and of lists only the fields locki writes."""
    if not isinstance(have, dict):
        return ()
    want = spec.config()
    found = [f"{key} {have.get(key)} -> {want[key]}" for key in _COMPARED
             if have.get(key) != want[key]]

    def rows(config: dict[str, Any], key: str, fields: tuple[str, ...]) -> list[Any]:
        return [tuple(item.get(f) for f in fields) for item in config.get(key) or []
                if isinstance(item, dict)]

    for key, fields in (("mounts", ("location", "mountPoint", "writable")),
                        ("portForwards", ("guestSocket", "hostSocket", "reverse"))):
        if rows(have, key, fields) != rows(want, key, fields):
            found.append(key)
    if rows(have, "provision", ("script",)) != rows(want, "provision", ("script",)):
        found.append("provisioning script")
    return tuple(found)


async def markers(limactl: lima.Limactl) -> dict[str, str]:
    """step -> version of the markers in the running VM."""
    result = await limactl.shell("sh", "-c", provision.READ_MARKERS)
    found = {}
    for line in result.stdout.splitlines():
        name, _, version = line.partition(" ")
        if name and version:
            found[name] = version.strip()
    return found


async def observe(limactl: lima.Limactl, spec: VmSpec) -> VmObs:
    """What `limactl list --json` says of `locki`, and, when it runs, its markers."""
    try:
        entry = await limactl.instance()
    except LockiError as exc:
        return VmObs(Health.UNKNOWN, f"`limactl list` failed: {exc.message}")
    if entry is None:
        return VmObs(Health.MISSING, f"no VM `{lima.INSTANCE}` yet")
    status = str(entry.get("status") or "Unknown")
    params = entry.get("param") or {}
    have = params.get(HASH_PARAM) if isinstance(params, dict) else None
    errors = "; ".join(str(e) for e in entry.get("errors") or [])
    if status == "Broken":
        return VmObs(Health.BROKEN, f"Lima reports it broken: {errors or 'no reason'}",
                     status, have, info=entry)
    pending: tuple[str, ...] = ()
    if status == "Running":
        try:
            pending = provision.pending_steps(spec.steps(), await markers(limactl))
        except LockiError as exc:
            return VmObs(Health.UNKNOWN, f"cannot read its provisioning: {exc.message}",
                         status, have, info=entry)
    return VmObs(Health.OK, status.lower(), status, have, pending, info=entry,
                 drift=drift(spec, entry.get("config")) if have != spec.config_hash else ())


def _write_config(paths: Paths, spec: VmSpec) -> Path:
    path = paths.lima_home / "locki.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec.document())
    return path


async def create(limactl: lima.Limactl, paths: Paths, spec: VmSpec) -> None:
    """Create and start the VM from locki's config; creating what exists succeeds."""
    config = _write_config(paths, spec)
    if await limactl.instance() is None:
        await limactl.run("--tty=false", "create", f"--name={lima.INSTANCE}", str(config))
        log.info("vm.created", vm=lima.INSTANCE, config_hash=spec.config_hash,
                 cpus=spec.cpus, memory_gib=spec.memory_gib, disk_gib=spec.disk_gib)
    await start(limactl, spec)


async def start(limactl: lima.Limactl, spec: VmSpec) -> None:
    """Boot the VM (Lima runs the provisioning script at every boot), then check it."""
    entry = await limactl.instance()
    if entry is None or entry.get("status") != "Running":
        for folder in (spec.worktrees, spec.home):
            folder.mkdir(parents=True, exist_ok=True)  # Lima refuses a missing mount
        result = await limactl.run("--tty=false", "start", lima.INSTANCE, check=False)
        if not result.ok:
            raise LockiError(
                f"the VM `{lima.INSTANCE}` did not start: {_last(result.stderr)}",
                hint=f"see {limactl.paths.lima_home / lima.INSTANCE / 'ha.stderr.log'}; "
                "`locki apply` runs the unfinished provisioning steps again",
            )
        log.info("vm.started", vm=lima.INSTANCE)
    await ensure_provisioned(limactl, spec)


async def ensure_provisioned(limactl: lima.Limactl, spec: VmSpec) -> None:
    """Run the steps whose markers are missing or stale, in the running VM."""
    pending = provision.pending_steps(spec.steps(), await markers(limactl))
    if not pending:
        return
    script = provision.provision_script(spec.steps()).encode()
    result = await limactl.shell(
        "sh", "-c", 'exec sudo LOCKI_USER="$(id -un)" bash -s', stdin=script, check=False)
    if not result.ok:
        raise LockiError(
            f"provisioning the VM failed ({', '.join(pending)}): {_last(result.stderr)}",
            hint="the finished steps are kept; fix the cause, then `locki apply` again",
        )
    log.info("vm.provisioned", vm=lima.INSTANCE, steps=list(pending))


async def stop(limactl: lima.Limactl) -> bool:
    """Stop the VM; False when it was not running."""
    entry = await limactl.instance()
    if entry is None or entry.get("status") != "Running":
        return False
    await limactl.run("--tty=false", "stop", lima.INSTANCE)
    log.info("vm.stopped", vm=lima.INSTANCE)
    return True


async def delete(limactl: lima.Limactl, paths: Paths) -> bool:
    """Delete the VM and everything in it; False when there was none. Worktrees, the
    shared home, config and desired state live on the host and stay."""
    if await limactl.instance() is None:
        return False
    await limactl.run("--tty=false", "delete", "--force", lima.INSTANCE)
    (paths.lima_home / "locki.yaml").unlink(missing_ok=True)
    log.info("vm.deleted", vm=lima.INSTANCE)
    return True


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"

