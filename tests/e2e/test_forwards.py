"""Port forwards as desired state, on a real daemon: loopback only, no collisions."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Locki, incus

pytestmark = pytest.mark.e2e
SERVE = "cd /tmp && nohup python3 -m http.server 8000 --bind {bind} >/dev/null 2>&1 &"


def _get(url: str) -> int:
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status)
        except OSError:
            time.sleep(0.2)
    return 0


def _listeners(port: int) -> set[str]:
    """Local addresses listening on `port`, from the kernel's socket tables."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port and len(address) == width:
                found.add(address)
    return found


def test_forward_serves_on_loopback_only_and_follows_the_sandbox(
    locki: Locki, repo: Path
) -> None:
    started = locki("x", "--", "sh", "-c", SERVE.format(bind="127.0.0.1"), cwd=repo)
    assert started.returncode == 0, started.stderr
    added = locki("port-forward", ":8000", "--json", cwd=repo)
    assert added.returncode == 0, added.stderr
    [fwd] = json.loads(added.stdout)
    host = fwd["host"]
    assert fwd["url"] == f"http://localhost:{host}"
    assert _get(f"http://127.0.0.1:{host}/") == 200
    assert _get(f"http://localhost:{host}/") == 200
    assert _get(f"http://[::1]:{host}/") == 200
    # Loopback only: 127.0.0.1 and ::1, never 0.0.0.0 or another interface.
    assert _listeners(host) == {"0100007F", "00000000000000000000000001000000"}

    box = locki.sandboxes(repo)[0]
    assert box["forwards"] == [{"host": host, "guest": 8000}]
    name = f"locki-{box['id']}"
    incus("--project", locki.project, "restart", "--force", name)
    assert locki("x", "--", "sh", "-c", SERVE.format(bind="0.0.0.0"), cwd=repo).returncode == 0
    assert _get(f"http://localhost:{host}/") == 200

    incus("--project", locki.project, "config", "device", "remove", name, f"locki-fwd4-{host}")
    assert f"+ sandbox.{box['id']}.forward.{host}" not in locki("plan", cwd=repo).stdout
    assert f"~ sandbox.{box['id']}.forward.{host}" in locki("plan", cwd=repo).stdout
    assert locki("apply", cwd=repo).returncode == 0
    assert _get(f"http://127.0.0.1:{host}/") == 200

    assert locki("rm", "--force", cwd=repo).returncode == 0
    assert _listeners(host) == set()

    # Removed and made again with the same forward: the port is free, nothing is stale.
    again = locki("x", "--", "sh", "-c", SERVE.format(bind="127.0.0.1"), cwd=repo)
    assert again.returncode == 0, again.stderr
    readded = locki("port-forward", f"{host}:8000", "--json", cwd=repo)
    assert readded.returncode == 0, readded.stderr
    assert _get(f"http://localhost:{host}/") == 200
    [fresh] = locki.containers()
    assert fresh["name"] != name
    devices = sorted(d for d in (fresh.get("devices") or {}) if d.startswith("locki-fwd"))
    assert devices == [f"locki-fwd4-{host}", f"locki-fwd6-{host}"]
    assert locki.sandboxes(repo)[0]["forwards"] == [{"host": host, "guest": 8000}]


def test_taken_ports_are_refused_before_anything_changes(locki: Locki, repo: Path) -> None:
    first = json.loads(locki("new", "--json", cwd=repo).stdout)["id"]
    second = json.loads(locki("new", "--json", cwd=repo).stdout)["id"]
    assert locki("pf", "-m", first, "23456:80", cwd=repo).returncode == 0
    state = (locki.config_dir / "sandboxes.toml").read_text()

    clash = locki("pf", "-m", second, "23456:80", cwd=repo)
    assert clash.returncode == 1
    assert f"host port 23456 is forwarded by sandbox {first}" in clash.stderr
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 23457))
        squatter.listen()
        taken = locki("pf", "-m", second, "23457:80", cwd=repo)
    assert taken.returncode == 1
    assert "host port 23457 is taken by pid" in taken.stderr
    low = locki("pf", "-m", second, "80", cwd=repo)
    assert low.returncode == 1
    assert "below 1024" in low.stderr
    bad = locki("pf", "-m", second, "http", cwd=repo)
    assert bad.returncode == 2
    assert (locki.config_dir / "sandboxes.toml").read_text() == state

    leased = json.loads(locki("pf", "-m", second, ":80", "--json", cwd=repo).stdout)
    assert leased[0]["host"] != 23456
    assert locki("pf", "-m", first, "--clear", cwd=repo).returncode == 0
    boxes = {b["id"]: b for b in locki.sandboxes(repo)}
    assert boxes[first]["forwards"] == []
    assert _listeners(23456) == set()
    # The freed port can be taken by the other sandbox now.
    assert locki("pf", "-m", second, "23456:80", cwd=repo).returncode == 0
    # `--remove :GUEST` takes every forward of that port inside (the leased one too);
    # a spec that names none is refused and changes nothing.
    state = (locki.config_dir / "sandboxes.toml").read_text()
    assert locki("pf", "-m", second, "--remove", ":81", cwd=repo).returncode == 1
    assert (locki.config_dir / "sandboxes.toml").read_text() == state
    assert locki("pf", "-m", second, "--remove", ":80", cwd=repo).returncode == 0
    assert {b["id"]: b["forwards"] for b in locki.sandboxes(repo)} == {first: [], second: []}
    assert _listeners(23456) == set()


def test_repo_default_forwards_never_collide(locki: Locki, repo: Path) -> None:
    (repo / "locki.toml").write_text('forwards = ["24680:8000"]\n')
    for _ in range(2):
        assert locki("new", cwd=repo).returncode == 0
    hosts = sorted(f["host"] for b in locki.sandboxes(repo) for f in b["forwards"])
    assert len(hosts) == 2
    assert hosts[0] == 24680 or hosts[1] == 24680
    assert hosts[0] != hosts[1]
    assert locki("plan", "--detailed-exitcode", cwd=repo).returncode == 0


def test_an_agent_forwards_its_own_port_through_the_bridge(locki: Locki, repo: Path) -> None:
    other = json.loads(locki("new", "--json", cwd=repo).stdout)["id"]
    started = locki("x", "-n", "--", "sh", "-c", SERVE.format(bind="0.0.0.0"), cwd=repo)
    assert started.returncode == 0, started.stderr
    me = next(b["id"] for b in locki.sandboxes(repo) if b["id"] != other)
    inside = locki("x", "-m", me, "--", "locki", "port-forward", ":8000", cwd=repo)
    assert inside.returncode == 0, inside.stderr
    url = inside.stdout.split()[0]
    assert url.startswith("http://localhost:")
    assert _get(url + "/") == 200
    boxes = {b["id"]: b for b in locki.sandboxes(repo)}
    assert len(boxes[me]["forwards"]) == 1
    assert boxes[other]["forwards"] == []
    for words in (["port-forward", "8080:8000"], ["port-forward", "-m", other, ":80"],
                  ["x", "--", "true"], ["port-forward", "--clear"], ["remove", "--force"]):
        denied = locki("x", "-m", me, "--", "locki", *words, cwd=repo)
        assert denied.returncode == 1, words
        assert "denied" in denied.stderr
    assert {b["id"]: b["forwards"] for b in locki.sandboxes(repo)} == {
        k: v["forwards"] for k, v in boxes.items()}


def test_forwards_from_inside_are_idempotent_and_capped(locki: Locki, repo: Path) -> None:
    me = json.loads(locki("new", "--json", cwd=repo).stdout)["id"]

    def inside(*specs: str) -> tuple[int, str, str]:
        done = locki("x", "-m", me, "--", "locki", "port-forward", *specs, cwd=repo)
        return done.returncode, done.stdout, done.stderr

    code, first, err = inside(":8000")
    assert code == 0, err
    # `:8000` again, from inside or from the host: the same lease, nothing new.
    assert inside(":8000") == (0, first, "")
    [again] = json.loads(locki("pf", "-m", me, ":8000", "--json", cwd=repo).stdout)
    [box] = locki.sandboxes(repo)
    assert box["forwards"] == [{"host": again["host"], "guest": 8000}]
    assert first.split()[0] == again["url"]

    # The per-sandbox cap holds on the bridged path: 32 forwards, then a clear refusal.
    for batch in range(3):
        code, _, err = inside(*(f":{9000 + 8 * batch + n}" for n in range(8)))
        assert code == 0, err
    assert inside(*(f":{9100 + n}" for n in range(8)))[0] == 1  # would make 33
    code, _, err = inside(*(f":{9100 + n}" for n in range(7)))
    assert code == 0, err
    code, _, err = inside(":9999")
    assert code == 1 and "at most 32 forwards" in err, err
    assert inside(":8000")[0] == 0  # already forwarded: still an answer at the cap
    [box] = locki.sandboxes(repo)
    forwarded = box["forwards"]
    assert isinstance(forwarded, list) and len(forwarded) == 32
    assert len({f["host"] for f in forwarded}) == len({f["guest"] for f in forwarded}) == 32
    devices = incus("--project", locki.project, "config", "device", "list",
                    f"locki-{me}").stdout.split()
    assert len([d for d in devices if d.startswith("locki-fwd4-")]) == 32
    assert locki("rm", "--force", "-m", me, cwd=repo).returncode == 0
