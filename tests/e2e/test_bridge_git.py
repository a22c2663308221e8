"""The git bridge end to end: a real daemon, real containers, OpenSSH inside, real git.

The reconciler does not wire the bridge in yet, so each test does what apply will do:
`locki new`, then the daemon, the profile's proxy device and the credential injection.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from locki.bridge import client, server
from locki.core.incus import Incus
from locki.core.paths import Paths
from locki.resources import bridge as bridge_resource
from tests.conftest import git
from tests.e2e.conftest import Locki, incus

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Box:
    id: str
    worktree: Path
    project: str

    @property
    def container(self) -> str:
        return f"locki-{self.id}"

    def exec(self, *argv: str, cwd: Path | str | None = None,
             stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        where = ["--cwd", str(cwd or self.worktree)]
        return subprocess.run(
            ["incus", "--project", self.project, "exec", self.container, *where, "--", *argv],
            input=stdin, capture_output=True, timeout=120,
        )

    def raw_request(self, cwd: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        """What a hostile client can send: any cwd, straight through the container's ssh."""
        request = server.encode(cwd, ["git", *args])
        return self.exec("ssh", "-F", "/etc/locki/bridge/ssh_config", "-T", "locki-bridge",
                         request, cwd="/")


@pytest.fixture
def paths(home: Path) -> Iterator[Paths]:
    """This test's locki paths, with a bridge daemon that is stopped afterwards."""
    found = Paths.from_env()
    asyncio.run(client.ensure_daemon(found))
    yield found
    asyncio.run(client.stop(found))


def new_sandbox(locki: Locki, repo: Path, paths: Paths) -> Box:
    made = locki("new", "--json", cwd=repo)
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    box = Box(data["id"], Path(data["worktree"]), locki.project)
    # apply rewrites the profile (it does not know the bridge device yet): add it again.
    device = [f"{k}={v}" for k, v in bridge_resource.profile_device(paths).items()
              if k != "type"]
    added = incus("--project", box.project, "profile", "device", "add", "locki",
                  bridge_resource.DEVICE, "proxy", *device, check=False)
    assert added.returncode == 0 or "already exists" in added.stderr, added.stderr
    asyncio.run(bridge_resource.inject(Incus(["incus"], box.project), box.container, box.id,
                                       paths))
    return box


@pytest.fixture
def box(locki: Locki, repo: Path, paths: Paths) -> Box:
    return new_sandbox(locki, repo, paths)


def test_status_log_and_commit_reach_the_host_repo(box: Box, repo: Path, paths: Paths) -> None:
    status = box.exec("git", "status")
    assert status.returncode == 0, status.stderr
    assert f"On branch untitled#locki-{box.id}" in status.stdout.decode()

    log = box.exec("git", "log", "--oneline")
    assert log.stdout.decode().splitlines()[0].endswith("second"), log.stderr
    assert log.stdout == subprocess.run(
        ["git", "log", "--oneline"], cwd=box.worktree, capture_output=True).stdout

    # A name with a space, a quote and a newline, made inside the container.
    made = box.exec("sh", "-c", "printf 'x\\n' > \"it's a\nfile.txt\" && mkdir -p 'sub dir'")
    assert made.returncode == 0, made.stderr
    added = box.exec("git", "add", "it's a\nfile.txt")
    assert added.returncode == 0, added.stderr
    message = b"Subject with \"quotes\" and 'apostrophes'\n\nbody line 1\n  body line 2\n"
    commit = box.exec("git", "commit", "-q", "-F", "-", stdin=message,
                      cwd=box.worktree / "sub dir")
    assert commit.returncode == 0, commit.stderr

    branch = f"untitled#locki-{box.id}"
    on_host = subprocess.run(["git", "log", "-1", "--format=%B", branch], cwd=repo,
                             capture_output=True, check=True).stdout
    assert on_host == message + b"\n"
    tree = subprocess.run(["git", "ls-tree", "--name-only", "-z", branch], cwd=repo,
                          capture_output=True, check=True).stdout
    assert b"it's a\nfile.txt" in tree.split(b"\0")

    # Words with spaces and newlines reach git as they were.
    fmt = box.exec("git", "log", "-1", "--format=a b%n c")
    assert fmt.stdout == b"a b\n c\n", fmt.stderr
    assert (paths.state_dir / "logs" / "bridge.jsonl").exists()


def test_exit_codes_and_bytes_pass_through(box: Box) -> None:
    missing = box.exec("git", "rev-parse", "--verify", "nosuch")
    on_host = subprocess.run(["git", "rev-parse", "--verify", "nosuch"], cwd=box.worktree,
                             capture_output=True)
    assert missing.returncode == 128 == on_host.returncode
    assert missing.stderr == on_host.stderr
    assert missing.stdout == b""

    blob = bytes(range(256)) * 4
    (box.worktree / "bin.dat").write_bytes(blob)
    assert box.exec("git", "add", "bin.dat").returncode == 0
    assert box.exec("git", "commit", "-q", "-m", "binary").returncode == 0
    shown = box.exec("git", "show", "HEAD:bin.dat")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == blob


def test_denied_command_says_why_and_is_logged(box: Box, paths: Paths) -> None:
    denied = box.exec("git", "branch", "-D", "main")
    assert denied.returncode == 1
    text = denied.stderr.decode()
    assert text.startswith("locki: denied: branch `main` is not one of this sandbox's"), text
    assert "allowed forms:" in text
    hostile = box.exec("git", "-c", "core.fsmonitor=touch /tmp/x", "status")
    assert hostile.returncode == 1
    assert b"global option `-c` is not allowed" in hostile.stderr

    lines = (paths.state_dir / "denied-commands.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["argv"] for e in entries] == [
        ["git", "branch", "-D", "main"],
        ["git", "-c", "core.fsmonitor=touch /tmp/x", "status"],
    ]
    assert {e["sandbox"] for e in entries} == {box.id}


def test_git_outside_the_worktree_is_the_containers_own(box: Box) -> None:
    script = (
        "set -e; git init -q -b main /tmp/src; cd /tmp/src; echo hi > f; git add f;"
        " git -c user.name=a -c user.email=a@b commit -q -m one;"
        " cd /tmp; git clone -q /tmp/src /tmp/dst; cat /tmp/dst/f; command -v git"
    )
    cloned = box.exec("sh", "-c", script, cwd="/tmp")
    assert cloned.returncode == 0, cloned.stderr
    assert cloned.stdout.decode().splitlines() == ["hi", "/usr/local/bin/git"]
    # A login shell finds the shim first too.
    login = box.exec("sh", "-lc", "command -v git", cwd="/")
    assert login.stdout.decode().strip() == "/usr/local/lib/locki/bin/git"


def test_cwd_must_be_a_real_folder_of_the_worktree(box: Box, tmp_path: Path) -> None:
    made = box.exec("ln", "-s", "/etc", "escape")
    assert made.returncode == 0, made.stderr
    through_link = box.raw_request(f"{box.worktree}/escape", "status")
    assert through_link.returncode == 1
    assert b"symlinks are not followed" in through_link.stderr, through_link.stderr
    dotdot = box.raw_request(f"{box.worktree}/../..", "status")
    assert dotdot.returncode == 1
    assert b"contains `..`" in dotdot.stderr
    elsewhere = box.raw_request(str(tmp_path), "status")
    assert elsewhere.returncode == 1
    assert b"is not inside this sandbox's worktree" in elsewhere.stderr
    fine = box.raw_request(str(box.worktree), "status", "--porcelain")
    assert fine.returncode == 0, fine.stderr
    assert fine.stdout == b"?? escape\n"


def test_a_rewritten_git_pointer_runs_nothing_on_the_host(
    box: Box, repo: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    wt = shlex.quote(str(box.worktree))
    hook = shlex.quote(f"{box.worktree}/evil/hook.sh")
    script = f"""set -e
cd {wt}
mkdir -p evil/hooks
/usr/bin/git init -q evil/repo
cat > evil/hook.sh
chmod +x evil/hook.sh
cp evil/hook.sh evil/hooks/pre-commit
/usr/bin/git -C evil/repo config core.fsmonitor {hook}
/usr/bin/git -C evil/repo config core.hooksPath {shlex.quote(f"{box.worktree}/evil/hooks")}
/usr/bin/git -C evil/repo config core.pager {hook}
printf 'gitdir: %s\\n' {shlex.quote(f"{box.worktree}/evil/repo/.git")} > .git
mkdir -p nested && cp -r evil/repo/.git nested/.git
"""
    fired = box.worktree / "evil" / "fired"
    trap = f"#!/bin/sh\ntouch {shlex.quote(str(marker))} {shlex.quote(str(fired))}\n"
    hostile = box.exec("sh", "-c", script, stdin=trap.encode())
    assert hostile.returncode == 0, hostile.stderr
    # The trap is armed: the container's own git, which trusts the pointer, springs it.
    armed = box.exec("/usr/bin/git", "-c", "user.name=a", "-c", "user.email=a@b", "commit",
                     "-q", "--allow-empty", "-m", "armed")
    assert armed.returncode == 0, armed.stderr
    assert fired.exists()
    fired.unlink()

    status = box.exec("git", "status")
    assert status.returncode == 0, status.stderr
    assert f"On branch untitled#locki-{box.id}" in status.stdout.decode()
    nested = box.exec("git", "status", cwd=box.worktree / "nested")
    assert nested.returncode == 0, nested.stderr
    assert f"On branch untitled#locki-{box.id}" in nested.stdout.decode()
    box.exec("sh", "-c", "echo change >> README.md")
    assert box.exec("git", "add", "README.md").returncode == 0
    commit = box.exec("git", "commit", "-q", "-m", "through a hostile pointer")
    assert commit.returncode == 0, commit.stderr
    assert not marker.exists()
    assert not fired.exists()
    branch = f"untitled#locki-{box.id}"
    assert git(repo, "log", "-1", "--format=%s", branch) == "through a hostile pointer"


def test_one_sandboxs_key_cannot_act_on_another(locki: Locki, repo: Path, paths: Paths) -> None:
    first = new_sandbox(locki, repo, paths)
    second = new_sandbox(locki, repo, paths)
    assert second.exec("git", "status").returncode == 0
    crossed = second.raw_request(str(first.worktree), "commit", "--allow-empty", "-m", "x")
    assert crossed.returncode == 1
    assert b"is not inside this sandbox's worktree" in crossed.stderr
    assert git(repo, "log", "-1", "--format=%s", f"untitled#locki-{first.id}") == "second"

    asyncio.run(bridge_resource.revoke(paths, second.id))
    revoked = second.exec("git", "status")
    assert revoked.returncode != 0
    assert first.exec("git", "status").returncode == 0
    # Injecting again issues a fresh credential that works.
    asyncio.run(bridge_resource.inject(Incus(["incus"], second.project), second.container,
                                       second.id, paths))
    assert asyncio.run(bridge_resource.check(Incus(["incus"], second.project),
                                             second.container, second.id, paths))
    again = second.exec("git", "status")
    assert again.returncode == 0, again.stderr


def test_inject_twice_keeps_the_same_credential(box: Box, paths: Paths) -> None:
    key = box.exec("cat", "/etc/locki/bridge/id").stdout
    asyncio.run(bridge_resource.inject(Incus(["incus"], box.project), box.container, box.id,
                                       paths))
    assert box.exec("cat", "/etc/locki/bridge/id").stdout == key
    mode = box.exec("stat", "-c", "%a %U", "/etc/locki/bridge/id").stdout
    assert mode == b"600 root\n"
    assert box.exec("git", "status").returncode == 0
    assert os.stat(server.socket_path(paths)).st_mode & 0o777 == 0o600


def test_message_files_are_read_without_following_symlinks(box: Box, repo: Path) -> None:
    made = box.exec("sh", "-c", "printf 'from a file\\n' > msg.txt && ln -s /etc/hostname leak")
    assert made.returncode == 0, made.stderr
    assert box.exec("git", "add", "msg.txt").returncode == 0
    commit = box.exec("git", "commit", "-q", "-F", "msg.txt")
    assert commit.returncode == 0, commit.stderr
    branch = f"untitled#locki-{box.id}"
    assert git(repo, "log", "-1", "--format=%B", branch) == "from a file"
    leak = box.exec("git", "commit", "-q", "--allow-empty", "-F", "leak")
    assert leak.returncode == 1
    assert b"symlinks are not followed" in leak.stderr, leak.stderr
    assert git(repo, "log", "-1", "--format=%B", branch) == "from a file"


def test_commits_need_head_on_one_of_the_sandboxs_branches(box: Box, repo: Path) -> None:
    git(box.worktree, "switch", "-q", "-c", "made-on-the-host")
    refused = box.exec("git", "commit", "-q", "--allow-empty", "-m", "x")
    assert refused.returncode == 1
    assert b"HEAD is on `made-on-the-host`" in refused.stderr, refused.stderr
    assert git(repo, "log", "-1", "--format=%s", "made-on-the-host") == "second"
    moved = box.exec("git", "switch", "-q", f"untitled#locki-{box.id}")
    assert moved.returncode == 0, moved.stderr
    assert box.exec("git", "commit", "-q", "--allow-empty", "-m", "x").returncode == 0


def test_many_commands_at_once(box: Box) -> None:
    script = (
        "for i in 1 2 3 4 5 6 7 8; do git log --format=%s > /tmp/out.$i 2>&1 & done; wait;"
        " cat /tmp/out.*"
    )
    together = box.exec("sh", "-c", script)
    assert together.returncode == 0, together.stderr
    assert together.stdout.decode().splitlines() == ["second", "first"] * 8


def test_a_stopped_bridge_is_explained(box: Box, paths: Paths) -> None:
    assert box.exec("git", "status").returncode == 0
    asyncio.run(client.stop(paths))
    down = box.exec("git", "status")
    assert down.returncode == 255
    assert down.stderr.startswith(b"locki: git could not reach the host bridge"), down.stderr
    asyncio.run(client.ensure_daemon(paths))
    assert box.exec("git", "status").returncode == 0
