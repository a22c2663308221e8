"""The installation's own Incus project and the profile its sandboxes use.

Everything locki creates lives in `locki-<installation id>`, so two users (or two test
runs) sharing one daemon never see each other's instances. The project shares the
default project's images (an alias already imported works) and networks; it owns its
profiles. The profile gives every sandbox a root disk, a port-isolated NIC on an existing
bridge and nesting (so docker and podman work inside).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from locki.core.errors import LockiError
from locki.core.incus import Incus
from locki.resources.model import Health, ProjectObs

PROFILE = "locki"
LABEL = "user.locki.installation"
log = structlog.get_logger("locki.resources.project")
# The sandboxes' NIC, less the bridge it joins. Port isolation: NICs that have it cannot
# reach each other over the bridge (every locki sandbox, of any installation), only the
# bridge's gateway (DNS, NAT) and ports without it.
NIC = {"type": "nic", "name": "eth0", "security.port_isolation": "true"}


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    installation_id: str
    storage_pool: str | None = None
    network: str | None = None
    extra_devices: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    extra_config: tuple[tuple[str, str], ...] = ()

    def devices(self) -> dict[str, dict[str, str]]:
        return {name: dict(config) for name, config in self.extra_devices}

    def config(self) -> dict[str, str]:
        return {"security.nesting": "true", **dict(self.extra_config),
                LABEL: self.installation_id}


def project_name(installation_id: str) -> str:
    return f"locki-{installation_id}"


def _profile_drift(profile: dict[str, Any], spec: ProjectSpec) -> str | None:
    """What of the profile differs from `spec` (config.toml's `[incus]` included)."""
    devices = profile.get("devices") or {}
    root, nic = devices.get("root") or {}, devices.get("eth0") or {}
    if spec.network and nic.get("network") != spec.network:
        return f"network `{nic.get('network')}` -> `{spec.network}` (config.toml)"
    if spec.storage_pool and root.get("pool") != spec.storage_pool:
        return f"storage pool `{root.get('pool')}` -> `{spec.storage_pool}` (config.toml)"
    ok = (root.get("type") == "disk" and NIC.items() <= nic.items()
          and (profile.get("config") or {}) == spec.config()
          and all(devices.get(name) == want for name, want in spec.devices().items()))
    return None if ok else "profile incomplete"


async def observe(incus: Incus, spec: ProjectSpec) -> ProjectObs:
    project = await incus.query(f"/1.0/projects/{spec.name}", missing_ok=True)
    if project is None:
        return ProjectObs(Health.MISSING, f"Incus project `{spec.name}` does not exist")
    owner = project.get("config", {}).get(LABEL)
    if owner != spec.installation_id:
        return ProjectObs(
            Health.BROKEN, f"project `{spec.name}` belongs to installation `{owner}`"
        )
    profile = await incus.query(f"/1.0/profiles/{PROFILE}?project={spec.name}", missing_ok=True)
    if profile is None:
        return ProjectObs(Health.OK, f"profile `{PROFILE}` missing", profile_ok=False)
    drift = _profile_drift(profile, spec)
    return ProjectObs(Health.OK, drift or "present", profile_ok=drift is None)


async def _defaults(incus: Incus) -> tuple[str, str]:
    """The pool and bridge of the default project's default profile."""
    profile = await incus.query("/1.0/profiles/default?project=default", missing_ok=True) or {}
    pool = network = None
    for device in profile.get("devices", {}).values():
        if device.get("type") == "disk" and device.get("path") == "/":
            pool = device.get("pool")
        if device.get("type") == "nic" and device.get("network"):
            network = device.get("network")
    if pool is None or network is None:
        raise LockiError(
            "cannot tell which storage pool and bridge sandboxes should use: the default "
            "profile has no root disk or no NIC",
            hint="set [incus] storage_pool and network in ~/.config/locki/config.toml",
        )
    return pool, network


async def ensure(incus: Incus, spec: ProjectSpec) -> None:
    """Create the project and its profile, or bring the profile up to date."""
    if await incus.query(f"/1.0/projects/{spec.name}", missing_ok=True) is None:
        await incus.query(
            "/1.0/projects",
            method="POST",
            data={
                "name": spec.name,
                "description": "locki sandboxes",
                "config": {
                    "features.images": "false",
                    "features.profiles": "true",
                    LABEL: spec.installation_id,
                },
            },
        )
        log.info("project.created", project=spec.name)
    default_pool, default_network = (
        (spec.storage_pool, spec.network)
        if spec.storage_pool and spec.network
        else await _defaults(incus)
    )
    body = {
        "description": "locki sandboxes",
        "config": spec.config(),
        "devices": {
            "root": {"type": "disk", "path": "/", "pool": spec.storage_pool or default_pool},
            "eth0": {**NIC, "network": spec.network or default_network},
            **spec.devices(),
        },
    }
    path = f"/1.0/profiles/{PROFILE}?project={spec.name}"
    if await incus.query(path, missing_ok=True) is None:
        await incus.query(
            f"/1.0/profiles?project={spec.name}", method="POST", data={"name": PROFILE, **body}
        )
        log.info("profile.created", project=spec.name, profile=PROFILE)
    else:
        await incus.query(path, method="PUT", data=body)
        log.info("profile.updated", project=spec.name, profile=PROFILE)


async def delete(incus: Incus, spec: ProjectSpec) -> None:
    """Remove the project once it holds nothing (used by tests and `locki gc`)."""
    for name in await incus.query(f"/1.0/instances?project={spec.name}", missing_ok=True) or []:
        await incus.run("delete", "--force", name.rsplit("/", 1)[-1], project=spec.name)
    await incus.query(f"/1.0/profiles/{PROFILE}?project={spec.name}", method="DELETE",
                      missing_ok=True)
    await incus.query(f"/1.0/projects/{spec.name}", method="DELETE", missing_ok=True)
