"""uid mapping for a host user who is not root, on the host's real Incus.

locki runs as a real unprivileged user (uid 1500, in the `incus-admin` group, its own
HOME): the container maps its root onto that user (`raw.idmap`), so what a sandbox
writes in the worktree belongs to the user on the host, and what the user made on the
host is writable inside. (A root host user gets an idmapped mount instead: the other
e2e tests.) The Lima case maps the same way: the VM user has the host uid, see
tests/test_lima.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import GIT_ID
from tests.e2e.conftest import IMAGE, _delete_project

UID = 1500
NAME = "lockiuid"


def _ensure_user() -> None:
    """The user, allowed on the Incus socket; root may map its uid (newuidmap reads
    /etc/subuid at each container start, so no daemon restart is needed)."""
    if subprocess.run(["getent", "passwd", str(UID)], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--uid", str(UID), "--user-group", "--no-create-home",
                        "--groups", "incus-admin", "--shell", "/bin/sh", NAME], check=True)
    for table, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        if f"root:{UID}:1" not in Path(table).read_text().split():
            subprocess.run(["usermod", flag, f"{UID}-{UID}", "root"], check=True)


def _as_user_ok(python: str) -> bool:
    # Through a shell: it is how locki's own children (the bridge daemon) start it.
    probe = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--init-groups", "sh", "-c",
             '"$0" -c "import sys; print(sys.version_info[:2])"', python]
    result = subprocess.run(probe, capture_output=True, text=True, cwd="/")
    return result.returncode == 0 and result.stdout.strip() == str(sys.version_info[:2])


def _interpreter(top: Path) -> Path:
    """A Python of this version the user may run, importing this venv's packages (and
    locki). This venv's own interpreter may live where the user cannot reach (pyenv or
    uv under /root); then a venv on the system's Python of the same version."""
    base = next((p for p in (os.path.realpath(sys.executable), "/usr/bin/python3")
                 if _as_user_ok(p)), None)
    if base is None:
        pytest.fail(f"no Python {sys.version_info[:2]} that uid {UID} may run: install the "
                    "system's python3 of that version, or build .venv on it")
    venv = top / "py"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
    target = next(venv.glob("lib/python3*/site-packages"))
    (target / "locki-test.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    return venv / "bin" / "python"


@dataclass
class User:
    home: Path
    env: dict[str, str]
    python: Path

    def run(self, *argv: str, cwd: Path, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        as_user = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--init-groups", *argv]
        result = subprocess.run(as_user, cwd=cwd, env=self.env, capture_output=True,
                                text=True, input=input, timeout=300)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def locki(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        result = self.run(str(self.python), "-m", "locki", *args, cwd=cwd, check=False)
        if result.returncode == 3 and "details in " in result.stderr:
            report = Path(result.stderr.split("details in ", 1)[1].strip())
            result.stderr += report.read_text()  # the traceback, for the failure message
        return result


@pytest.fixture
def user() -> Iterator[User]:
    _ensure_user()
    # Under /tmp, not pytest's root-only folder: the user (and the containers' root,
    # which is this user) must be able to walk to the worktree.
    top = Path(tempfile.mkdtemp(prefix="locki-uid-"))
    home = top / "home"
    made: User | None = None
    try:
        top.chmod(0o755)
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
               "LOCKI_RUNTIME": "incus", "LOCKI_IMAGE": IMAGE,
               "XDG_RUNTIME_DIR": str(top / "run"), **GIT_ID}
        for var, sub in {"XDG_CONFIG_HOME": ".config", "XDG_DATA_HOME": ".local/share",
                         "XDG_STATE_HOME": ".local/state",
                         "XDG_CACHE_HOME": ".cache"}.items():
            env[var] = str(home / sub)
        made = User(home, env, _interpreter(top))
        home.mkdir()
        os.chown(home, UID, UID)
        made.run("mkdir", "-p", str(home / ".config"), str(home / ".local/share"),
                 str(home / ".local/state"), str(home / ".cache"), cwd=Path("/"))
        user_config = home / ".gitconfig"
        user_config.write_text("[user]\n\tname = Locki Test\n\temail = test@locki.invalid\n")
        os.chown(user_config, UID, UID)
        (top / "run").mkdir(mode=0o700)
        os.chown(top / "run", UID, UID)
        yield made
    finally:
        if made is not None:
            made.locki("daemon", "stop", cwd=Path("/"))
        _delete_project(home / ".local/share/locki")
        shutil.rmtree(top)


def test_a_non_root_users_sandbox_writes_files_that_user_owns(user: User) -> None:
    repo = user.home / "project"
    user.run("git", "init", "-q", "-b", "main", str(repo), cwd=user.home)
    user.run("sh", "-c", "echo hello > README.md && git add README.md && "
             "git commit -q -m first", cwd=repo)

    made = user.locki("new", "--json", cwd=repo)
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    worktree = Path(info["worktree"])
    user.run("sh", "-c", "echo from-host > host.txt", cwd=worktree)

    inside = user.locki(
        "x", "-m", info["id"], "--", "sh", "-c",
        "id -u; echo made > inside.txt; mkdir -p sub && echo deep > sub/f; "
        "echo more >> host.txt; git add inside.txt && git commit -q -m inside && echo ok",
        cwd=repo)
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.split()[0] == "0"  # root inside the container ...
    for path in (worktree / "inside.txt", worktree / "sub", worktree / "sub" / "f"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (UID, UID), path  # ... the user on the host
    assert (worktree / "host.txt").read_text() == "from-host\nmore\n"
    assert (worktree / "host.txt").stat().st_uid == UID
    assert inside.stdout.split()[-1] == "ok"  # the commit went through the bridge
    log = user.run("git", "log", "-1", "--format=%s", f"untitled#locki-{info['id']}",
                   cwd=repo)
    assert log.stdout.strip() == "inside"
    objects = [p for p in (repo / ".git" / "objects").rglob("*") if p.is_file()]
    assert objects and all(p.stat().st_uid == UID for p in objects)

    # The template's files came from this user's staging folder; inside they are root's
    # and the image's own folders kept their owner.
    owners = user.locki("x", "-m", info["id"], "--", "stat", "-c", "%u:%g %n", "/etc",
                        "/usr", "/usr/local/bin", "/usr/local/bin/mise",
                        "/etc/profile.d/locki-sandbox.sh", "/etc/claude-code/CLAUDE.md",
                        cwd=repo)
    assert owners.returncode == 0, owners.stderr
    assert [line.split()[0] for line in owners.stdout.splitlines()] == ["0:0"] * 6, \
        owners.stdout

    box = subprocess.run(["incus", "--project", f"locki-{_installation(user)}", "config",
                          "get", f"locki-{info['id']}", "raw.idmap"],
                         capture_output=True, text=True, check=True)
    assert box.stdout.split() == ["uid", str(UID), "0", "gid", str(UID), "0"]


def _installation(user: User) -> str:
    return (user.home / ".local/share/locki/installation-id").read_text().strip()
