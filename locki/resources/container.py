"""The sandbox's Incus system container.

Unprivileged, nesting on, created from the desired image with locki's profile, labelled
with `user.locki.*` keys (installation, sandbox, repo, worktree, image), and given one
device: the worktree at its identical absolute path. Files a sandbox writes there belong
to the host user on the host: with a root host user the mount is idmapped (`shift`);
otherwise the container's root is mapped onto the host user (`raw.idmap`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from locki.core import crash, sandbox_exec
from locki.core.errors import CommandFailed, LockiError
from locki.core.incus import Incus
from locki.resources.model import ContainerObs

PREFIX = "user.locki."
DEVICE = "worktree"
INCLUDE_PREFIX = "locki-inc-"
log = structlog.get_logger("locki.resources.container")


@dataclass(frozen=True)
class ContainerSpec:
    sandbox_id: str
    installation_id: str
    image: str
    repo: Path
    worktree: Path
    profile: str
    uid: int = os.getuid()
    gid: int = os.getgid()

    @property
    def name(self) -> str:
        return container_name(self.sandbox_id)


container_name = sandbox_exec.container_name


def parse(instance: Mapping[str, Any], installation_id: str) -> ContainerObs | None:
    """An observation of `instance` if this installation made it, else None."""
    # An instance Incus is still creating (a copy in progress) lists `config` and
    # `devices` as null; observation reports, it never raises.
    config = instance.get("config") or {}
    if config.get(PREFIX + "installation") != installation_id:
        return None
    sandbox_id = config.get(PREFIX + "sandbox")
    if not sandbox_id:
        return None
    devices = instance.get("devices") or {}
    device = devices.get(DEVICE) or {}
    mounted_same = device.get("path") == device.get("source")
    status = str(instance.get("status", "Unknown"))
    return ContainerObs(
        name=str(instance["name"]),
        sandbox_id=sandbox_id,
        running=status == "Running",
        status=status.lower(),
        image=config.get(PREFIX + "image"),
        worktree_source=device.get("source") if mounted_same else None,
        labels={k.removeprefix(PREFIX): v for k, v in config.items() if k.startswith(PREFIX)},
        devices={str(k): {str(a): str(b) for a, b in v.items()}
                 for k, v in devices.items()},
        last_started=str(instance.get("last_used_at") or "") or None,
    )


def _labels(spec: ContainerSpec) -> dict[str, str]:
    return {
        PREFIX + "installation": spec.installation_id,
        PREFIX + "sandbox": spec.sandbox_id,
        PREFIX + "repo": str(spec.repo),
        PREFIX + "worktree": str(spec.worktree),
        PREFIX + "image": spec.image,
    }


def idmap_config(uid: int, gid: int) -> dict[str, str]:
    """Container root as the host user, unless that user is root (then devices shift)."""
    if uid == 0:
        return {}
    return {"raw.idmap": f"uid {uid} 0\ngid {gid} 0"}


def _idmap(spec: ContainerSpec) -> dict[str, str]:
    return idmap_config(spec.uid, spec.gid)


def _disk_args(spec: ContainerSpec, source: Path, path: Path) -> list[str]:
    args = ["disk", f"source={source}", f"path={path}"]
    return [*args, "shift=true"] if spec.uid == 0 else args


def _device_args(spec: ContainerSpec) -> list[str]:
    return _disk_args(spec, spec.worktree, spec.worktree)


def include_device(name: str) -> str:
    """The device of include `name` (device names allow few characters: a digest)."""
    return INCLUDE_PREFIX + hashlib.sha256(name.encode()).hexdigest()[:16]


def include_devices(devices: Mapping[str, Mapping[str, str]]) -> dict[str, tuple[str, str]]:
    """device name -> (source, path) of the include devices a container has."""
    return {name: (config.get("source", ""), config.get("path", ""))
            for name, config in devices.items() if name.startswith(INCLUDE_PREFIX)}


async def ensure_include(incus: Incus, spec: ContainerSpec, name: str, source: Path,
                         path: Path) -> None:
    """Mount include `name` (a worktree at `source` on the host) at `path` inside."""
    device = include_device(name)
    await incus.run("config", "device", "remove", spec.name, device, check=False)
    await incus.run("config", "device", "add", spec.name, device, *_disk_args(spec, source, path))
    log.info("container.include_mounted", sandbox=spec.sandbox_id, container=spec.name,
             include=name, source=str(source))


async def remove_device(incus: Incus, container: str, device: str, *, sandbox_id: str) -> None:
    result = await incus.run("config", "device", "remove", container, device, check=False)
    if not result.ok and "not found" not in result.stderr.lower() \
            and "doesn't exist" not in result.stderr.lower():
        await incus.run("config", "device", "remove", container, device)
    log.info("container.device_removed", sandbox=sandbox_id, container=container, device=device)


async def create(incus: Incus, spec: ContainerSpec, *, start: bool, template: str) -> None:
    """Create the container as a copy of the instance `template` (copy-on-write on
    btrfs or zfs, so near-instant), with the sandbox's own labels and devices."""
    await _ensure_template_ready(incus, template)
    config = {**_labels(spec), **_idmap(spec)}
    args = ["copy", template, spec.name]
    for key, value in config.items():
        args += ["--config", f"{key}={value}"]
    try:
        await incus.run(*args)
        log.info("container.created", sandbox=spec.sandbox_id, container=spec.name,
                 image=spec.image, template=template)
        crash.reached("container.create")
        # A fresh copy has no worktree device yet (templates never do).
        await incus.run("config", "device", "add", spec.name, DEVICE, *_device_args(spec))
    except CommandFailed as exc:
        if "already exists" not in exc.stderr:
            raise
        await ensure_device(incus, spec)
    crash.reached("device.add")
    if start:
        await ensure_running(incus, spec.name, sandbox_id=spec.sandbox_id)


async def _ensure_template_ready(incus: Incus, template: str) -> None:
    """Refuse to copy from a template whose setup did not complete."""
    found = await incus.query(f"/1.0/instances/{template}?project={incus.project}",
                              missing_ok=True)
    config = (found or {}).get("config") or {}
    if not config.get(PREFIX + "ready") or (found or {}).get("status") != "Stopped":
        raise LockiError(
            f"template `{template}` is missing or its setup did not complete",
            hint="run `locki apply`: it builds the template again first",
        )


async def ensure_device(incus: Incus, spec: ContainerSpec) -> None:
    await incus.run("config", "device", "remove", spec.name, DEVICE, check=False)
    await incus.run("config", "device", "add", spec.name, DEVICE, *_device_args(spec))
    log.info("container.device", sandbox=spec.sandbox_id, container=spec.name,
             device=DEVICE, source=str(spec.worktree))


async def ensure_running(incus: Incus, name: str, *, sandbox_id: str) -> None:
    result = await incus.run("start", name, check=False)
    if not result.ok and "already running" not in result.stderr:
        await incus.run("start", name)
    log.info("container.started", sandbox=sandbox_id, container=name)
    crash.reached("container.start")


async def ensure_stopped(incus: Incus, name: str, *, sandbox_id: str) -> None:
    result = await incus.run("stop", name, check=False)
    if not result.ok and "already stopped" not in result.stderr:
        await incus.run("stop", name)
    log.info("container.stopped", sandbox=sandbox_id, container=name)


async def delete(incus: Incus, name: str, *, sandbox_id: str) -> None:
    result = await incus.run("delete", "--force", name, check=False)
    if not result.ok and "not found" not in result.stderr.lower():
        await incus.run("delete", "--force", name)
    log.info("container.deleted", sandbox=sandbox_id, container=name)
    crash.reached("container.delete")


def exec_argv(
    incus: Incus, name: str, *, cwd: Path, command: Sequence[str], env: Mapping[str, str]
) -> list[str]:
    """The argv that runs `command` in the container, in `cwd`, with `env` set."""
    return incus.argv(*sandbox_exec.exec_args(name, cwd=cwd, command=command, env=env))
