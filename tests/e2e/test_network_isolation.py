"""Sandboxes cannot reach each other over the bridge; the gateway and the git bridge stay.

Every address used is on the project's bridge (lockibr0, 10.210.77.0/24) or loopback.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Locki, incus

pytestmark = pytest.mark.e2e

PORT = 5555
GATEWAY = "10.210.77.1"
LISTEN = (f"import socket\ns = socket.create_server(('0.0.0.0', {PORT}))\n"
          "while True:\n    c, _ = s.accept(); c.sendall(b'hello'); c.close()\n")
CONNECT = ("import socket, sys\n"
           "try:\n"
           "    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
           "except OSError as e:\n    print('refused', e); sys.exit(3)\n"
           "print('connected'); c.close()\n")


def _new(locki: Locki, repo: Path) -> str:
    made = locki("new", "--json", cwd=repo)
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["id"])


def _address(locki: Locki, sid: str) -> str:
    for _ in range(60):
        shown = incus("--project", locki.project, "list", f"locki-{sid}", "--format", "json")
        for item in json.loads(shown.stdout) or []:
            nic = ((item.get("state") or {}).get("network") or {}).get("eth0", {})
            for address in nic.get("addresses", []):
                if address["family"] == "inet":
                    assert address["address"].startswith("10.210.77.")
                    return str(address["address"])
        time.sleep(1)
    raise AssertionError(f"sandbox {sid} got no IPv4 address on the bridge")


def _connect(locki: Locki, sid: str, host: str, port: int) -> str:
    tried = incus("--project", locki.project, "exec", f"locki-{sid}", "--",
                  "python3", "-c", CONNECT, host, str(port), check=False)
    return tried.stdout.strip()


def _listen(locki: Locki, sid: str) -> None:
    incus("--project", locki.project, "exec", f"locki-{sid}", "--", "sh", "-c",
          "setsid python3 -c \"$0\" </dev/null >/dev/null 2>&1 &", LISTEN)
    for _ in range(30):  # up once the sandbox itself can connect to it
        if _connect(locki, sid, "127.0.0.1", PORT) == "connected":
            return
        time.sleep(0.5)
    raise AssertionError("the listener in the sandbox never came up")


def _isolated(locki: Locki, sid: str) -> bool:
    """Whether the kernel marks the sandbox's port on the bridge isolated."""
    for _ in range(20):  # a NIC being re-plugged has no host side for a moment
        got = incus("--project", locki.project, "config", "get", f"locki-{sid}",
                    "volatile.eth0.host_name", check=False)
        if got.returncode == 0 and got.stdout.strip():
            shown = json.loads(_run("bridge", "-d", "-j", "link", "show", "dev",
                                    got.stdout.strip()))
            return bool(shown and shown[0].get("isolated"))
        time.sleep(0.5)
    raise AssertionError(f"sandbox {sid} has no NIC on the bridge: {got.stderr}")


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def _templates(locki: Locki) -> list[str]:
    return [str(i["name"]) for i in locki.instances()
            if "user.locki.sandbox" not in (i.get("config") or {})]


def _host_reaches(address: str) -> bool:
    try:
        with socket.create_connection((address, PORT), timeout=3):
            return True
    except OSError:
        return False


def test_a_sandbox_cannot_reach_another_over_the_bridge(locki: Locki, repo: Path) -> None:
    a, b = _new(locki, repo), _new(locki, repo)
    _listen(locki, b)
    address_b = _address(locki, b)
    # The listener answers on B's bridge address: the host (the bridge itself) reaches it.
    assert _host_reaches(address_b)

    assert _connect(locki, a, address_b, PORT).startswith("refused")
    assert _isolated(locki, a) and _isolated(locki, b)
    # The gateway still serves A (dnsmasq's DNS on port 53), and so does the git bridge.
    assert _connect(locki, a, GATEWAY, 53) == "connected"
    status = locki("x", "-m", a, "--", "git", "status", "--short", "--branch", cwd=repo)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"## untitled#locki-{a}")


def test_a_profile_without_isolation_is_brought_up_to_date(locki: Locki, repo: Path) -> None:
    sid = _new(locki, repo)
    project = ("--project", locki.project)
    # Template names are the same in every installation on a daemon, and Incus will not
    # re-plug the NIC of an instance whose name another project's instance on the bridge
    # holds (other test runs build this template too): drop ours, apply builds it again.
    for name in _templates(locki):
        incus(*project, "delete", "--force", name)
    incus(*project, "profile", "device", "unset", "locki", "eth0", "security.port_isolation")
    assert not _isolated(locki, sid)
    planned = locki("plan", "--detailed-exitcode", cwd=repo)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert "~ project" in planned.stdout and "profile incomplete" in planned.stdout
    applied = locki("apply", cwd=repo)
    assert applied.returncode == 0, applied.stderr
    got = incus(*project, "profile", "device", "get", "locki", "eth0", "security.port_isolation")
    assert got.stdout.strip() == "true"
    # The running sandbox's bridge port is isolated now, and it still reaches the gateway.
    assert _isolated(locki, sid)
    _address(locki, sid)
    assert _connect(locki, sid, GATEWAY, 53) == "connected"
    again = locki("plan", "--detailed-exitcode", cwd=repo)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_changed_network_in_config_toml_is_planned_not_ignored(
        locki: Locki, repo: Path) -> None:
    assert locki("new", cwd=repo).returncode == 0
    config = locki.config_dir / "config.toml"
    config.write_text('[incus]\nnetwork = "nosuchbr"\n')
    planned = locki("plan", "--detailed-exitcode", cwd=repo)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert "~ project" in planned.stdout and "nosuchbr" in planned.stdout
    applied = locki("apply", cwd=repo)
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert "nosuchbr" in applied.stderr
    config.unlink()
    assert locki("plan", "--detailed-exitcode", cwd=repo).returncode == 0
