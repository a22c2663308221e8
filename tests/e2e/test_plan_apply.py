"""Editing the desired state by hand, then `plan` and `apply`, on a real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, Locki, incus

pytestmark = pytest.mark.e2e


def _in_a_terminal(locki: Locki, cwd: Path, answer: str, *args: str,
                   prompt: bytes = b"Type `yes`") -> tuple[int, str]:
    """Run locki with a pseudo-terminal, answer its question, return (code, output)."""
    leader, follower = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "locki", *args], cwd=cwd, env=locki.env,
                            stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 120
    while prompt not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(leader, 4096)
        except OSError:
            break
    os.write(leader, answer.encode() + (b"" if answer.endswith("\r") else b"\n"))
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    code = proc.wait(timeout=120)
    os.close(leader)
    return code, seen.decode(errors="replace")


def test_changing_the_image_by_hand_is_a_guarded_replace(locki: Locki, repo: Path) -> None:
    made = locki("x", "--", "sh", "-c", "echo keep > /root/marker", cwd=repo)
    assert made.returncode == 0, made.stderr
    state = locki.config_dir / "sandboxes.toml"
    fingerprint = incus("image", "info", IMAGE).stdout.split("Fingerprint: ")[1].split()[0]
    text = state.read_text().replace(f'image = "{IMAGE}"', f'image = "{fingerprint}"')
    state.write_text(text + "# edited by hand\n")

    planned = locki("plan", cwd=repo)
    assert "-/+ sandbox." in planned.stdout
    assert "[destroys work]" in planned.stdout
    refused = locki("apply", cwd=repo)
    assert refused.returncode == 1
    assert "would destroy work" in refused.stderr
    code, output = _in_a_terminal(locki, repo, "no", "apply")
    assert code == 1, output
    blocked = locki("x", "--", "true", cwd=repo)
    assert blocked.returncode == 125
    assert "would destroy work" in blocked.stderr
    name = f"locki-{locki.sandboxes(repo)[0]['id']}"
    kept = incus("--project", locki.project, "exec", name, "--", "cat", "/root/marker")
    assert kept.stdout == "keep\n"

    code, output = _in_a_terminal(locki, repo, "yes", "apply")
    assert code == 0, output
    assert "1 to replace" in output
    gone = locki("x", "--", "sh", "-c", "test -e /root/marker; echo $?", cwd=repo)
    assert gone.stdout == "1\n"
    assert "# edited by hand" in state.read_text()
    assert locki("plan", "--detailed-exitcode", cwd=repo).returncode == 0


def test_stopping_by_hand_edit_and_json_plan(locki: Locki, repo: Path) -> None:
    assert locki("new", cwd=repo).returncode == 0
    state = locki.config_dir / "sandboxes.toml"
    state.write_text(state.read_text().replace('state = "running"', 'state = "stopped"'))
    planned = locki("plan", "--json", cwd=repo)
    doc = json.loads(planned.stdout)
    changes = [a for a in doc["actions"] if a["action"] != "noop"]
    assert [(a["address"].split(".")[-1], a["op"]) for a in changes] == [
        ("container", "container.stop")
    ]
    assert all(a["reason"] for a in doc["actions"])
    assert locki("apply", cwd=repo).returncode == 0
    assert locki.sandboxes(repo)[0]["state"] == "stopped"
    # `locki x` wants it running again, and says so in the desired state.
    assert locki("x", "--", "true", cwd=repo).returncode == 0
    assert 'state = "running"' in state.read_text()


def test_several_sandboxes_ask_on_a_terminal_and_name_them_without(
    locki: Locki, repo: Path
) -> None:
    ids = sorted(json.loads(locki("new", "--json", cwd=repo).stdout)["id"] for _ in range(2))
    plain = locki("x", "--", "true", cwd=repo)
    assert plain.returncode == 125
    assert f"has 2 sandboxes: {ids[0]}, {ids[1]}" in plain.stderr
    assert "-m ID" in plain.stderr
    # Down once, then Enter: the second sandbox in id order.
    code, output = _in_a_terminal(locki, repo, "\x1b[B\r", "x", "--", "sh", "-c",
                                  "echo in=$LOCKI_SANDBOX", prompt=b"Which sandbox?")
    assert code == 0, output
    assert f"in={ids[1]}" in output
