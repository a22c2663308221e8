"""Port forwards: host loopback port -> a port inside the sandbox, as Incus proxy devices.

Each forward is one proxy device per loopback address (`locki-fwd4-<port>` on 127.0.0.1,
`locki-fwd6-<port>` on ::1, so `localhost` works either way), bound on the host and
connecting to 127.0.0.1:<guest> inside, which also reaches services listening on
0.0.0.0. Never another host interface. Devices live in the container's own config, so
they come back with every container or VM restart; the reconciler adds missing ones and
removes stale ones.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from locki.core import ports
from locki.core.incus import Incus

PREFIXES = {"locki-fwd4-": "tcp:127.0.0.1", "locki-fwd6-": "tcp:[::1]"}
log = structlog.get_logger("locki.resources.forward")


def devices(host: int, guest: int) -> dict[str, dict[str, str]]:
    """The proxy devices of one forward, by name."""
    wanted = {}
    for prefix, listen in PREFIXES.items():
        if prefix == "locki-fwd6-" and not ports.ipv6_loopback():
            continue
        wanted[f"{prefix}{host}"] = {
            "type": "proxy",
            "bind": "host",
            "listen": f"{listen}:{host}",
            "connect": f"tcp:127.0.0.1:{guest}",
        }
    return wanted


def observed(container_devices: Mapping[str, Mapping[str, str]]) -> dict[int, int]:
    """host port -> guest port of the forwards a container has (any address family)."""
    found: dict[int, int] = {}
    for name, config in container_devices.items():
        for prefix in PREFIXES:
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                guest = config.get("connect", "").rsplit(":", 1)[-1]
                found[int(name[len(prefix):])] = int(guest) if guest.isdigit() else 0
    return found


def complete(container_devices: Mapping[str, Mapping[str, str]], host: int, guest: int) -> bool:
    """Whether every device of the forward exists exactly as it should."""
    return all(container_devices.get(name) == config
               for name, config in devices(host, guest).items())


async def ensure(incus: Incus, container: str, host: int, guest: int, *,
                 sandbox_id: str) -> None:
    for name, config in devices(host, guest).items():
        await incus.run("config", "device", "remove", container, name, check=False)
        await incus.run("config", "device", "add", container, name, config["type"],
                        *(f"{k}={v}" for k, v in config.items() if k != "type"))
    log.info("forward.added", sandbox=sandbox_id, container=container, host=host, guest=guest)


async def remove(incus: Incus, container: str, host: int, *, sandbox_id: str) -> None:
    for prefix in PREFIXES:
        await incus.run("config", "device", "remove", container, f"{prefix}{host}",
                        check=False)
    log.info("forward.removed", sandbox=sandbox_id, container=container, host=host)
