"""Hostile checks of hooks run inside the sandbox (`locki.cli.hook`, `Bridge._hooks`).

The sandbox controls its worktree, so with a husky-style `core.hooksPath` (relative, in
the worktree) it writes the hooks git runs, and, as root in its container, every program
the in-container wrapper calls. These tests play that sandbox (and a user whose commands
get interrupted) against the guarantees: nothing it chooses runs or is read on the host,
and its container is never left frozen, nor left running while host git works.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import GIT_ID, git
from tests.e2e.conftest import Locki
from tests.e2e.test_hooks import _inside, _ready, marks  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


def _freezer(locki: Locki, sid: str) -> str:
    path = Path("/sys/fs/cgroup/freezer") / f"lxc.payload.{locki.project}_locki-{sid}"
    return (path / "freezer.state").read_text().strip()


def _procs(*needles: bytes) -> list[int]:
    """Host processes whose command line holds every needle."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and all(n in cmdline for n in needles):
            found.append(int(proc.name))
    return found


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _husky(locki: Locki, repo: Path, script: str) -> None:
    """Run `script` in the container, in the worktree (it writes `.husky/_/...`)."""
    made = _inside(locki, repo, "sh", "-c", "set -e; mkdir -p .husky/_; " + script)
    assert made.returncode == 0, made.stderr


def _wait_for(check, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_symlinked_and_fifo_hooks_are_never_read_or_run_on_the_host(
        locki: Locki, repo: Path, marks: Path) -> None:  # noqa: F811
    """The sandbox points its husky hooks at host-only files (a script that would
    leave a marker, a host secret) and makes one a FIFO: the host only stats them;
    neither the bridge's git nor the user's own git runs, reads or carries them."""
    git(repo, "config", "core.hooksPath", ".husky/_")
    sid, worktree = _ready(locki, repo, marks)
    host_only = Path("/var/tmp") / f"locki-hostonly-{secrets.token_hex(6)}"
    host_only.mkdir()
    try:
        evil = host_only / "evil.sh"
        evil.write_text(f"#!/bin/sh\nmkdir -p {marks} && touch {marks}/RAN\n")
        evil.chmod(0o755)
        _husky(locki, repo, f"ln -s {evil} .husky/_/pre-commit; "
                            f"ln -s {host_only} .husky/_/dirlink; "
                            "ln -s dirlink/evil.sh .husky/_/prepare-commit-msg; "
                            "mkfifo .husky/_/commit-msg; "
                            "ln -s /etc/shadow .husky/_/post-commit")
        done = _inside(locki, repo, "sh", "-c",
                       "echo 1 >> app.py && timeout 60 git commit -qam bridged")
        assert done.returncode == 0, done.stderr
        (worktree / "host.txt").write_text("x\n")
        git(worktree, "add", "host.txt")
        user = subprocess.run(["git", "commit", "-qm", "by the user"], cwd=worktree,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, **GIT_ID})
        assert user.returncode == 0, user.stderr
        assert git(repo, "log", "-2", "--format=%s", f"untitled#locki-{sid}").split("\n") \
            == ["by the user", "bridged"]
        # Not carried in either: the host script never ran in the container.
        assert _inside(locki, repo, "test", "-e", f"{marks}/RAN").returncode == 1
    finally:
        for item in host_only.iterdir():
            item.unlink()
        host_only.rmdir()


def test_a_hook_flooding_the_wrappers_stdout_does_not_grow_host_memory(
        locki: Locki, repo: Path, marks: Path) -> None:  # noqa: F811
    """Root in the container replaces `tr`, which the wrapper pipes a carried file
    (the commit message) through on its way out, by a program printing half a GiB: the
    host trampoline reads the wrapper's stdout and must not hold all of it in memory (the
    sandbox picks the size; the host has no limit: an OOM kill of host processes)."""
    git(repo, "config", "core.hooksPath", ".husky/_")
    sid, _ = _ready(locki, repo, marks)
    _husky(locki, repo, "printf '#!/bin/sh\\nexit 0\\n' > .husky/_/commit-msg; "
                        "chmod +x .husky/_/commit-msg; "
                        "mv /usr/bin/tr /usr/bin/tr.real; printf '%s\\n' '#!/bin/sh' "
                        "'grep -q locki-hook /proc/$PPID/cmdline || exec tr.real \"$@\"' "
                        "'exec head -c 536870912 /dev/zero' > /usr/bin/tr; "
                        "chmod +x /usr/bin/tr")
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            for pid in _procs(b"locki.cli.hook", sid.encode()):
                peak = max(peak, _status_kb(pid, "VmHWM"))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        done = _inside(locki, repo, "sh", "-c", "echo 1 >> app.py && git commit -qam flood")
    finally:
        stop.set()
        sampler.join()
    # (The commit itself fails: the flood, read back as the message, decodes to nothing.)
    assert "message" in done.stderr or done.returncode == 0, done.stderr
    assert peak > 0, "the trampoline was never seen"
    assert peak < 128 << 10, f"the host trampoline grew to {peak >> 10} MiB"


def _ctl_socket(pid: int) -> int:
    """A copy, in this process, of the trampoline's connection to the daemon's hook
    control socket (`LOCKI_HOOK_CTL`; its only socket): pidfd_getfd(2), as root."""
    number = next(int(fd.name) for fd in Path(f"/proc/{pid}/fd").iterdir()
                  if os.readlink(fd).startswith("socket:"))
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.syscall(438, pidfd, number, 0)  # SYS_pidfd_getfd (x86_64)
        assert fd >= 0, os.strerror(ctypes.get_errno())
        return int(fd)
    finally:
        os.close(pidfd)


def _thaw_for_cleanup(locki: Locki, sid: str) -> None:
    if _freezer(locki, sid) != "THAWED":
        subprocess.run(["incus", "--project", locki.project, "start", f"locki-{sid}"],
                       capture_output=True, check=False)


def test_a_trampoline_killed_mid_hook_does_not_leave_host_git_working_unfrozen(
        locki: Locki, repo: Path, marks: Path) -> None:  # noqa: F811
    """`git rebase` runs post-checkout, whose exit git ignores, then replays commits into
    the worktree. If the trampoline dies while its hook runs (an OOM kill: see the flood
    test), the daemon sees the control socket close while the container is thawed. Host
    git must not then go on writing the worktree with the container running (and without
    the after-hook check): it should be stopped, or the container frozen again."""
    git(repo, "config", "core.hooksPath", ".husky/_")
    sid, worktree = _ready(locki, repo, marks)
    for i in range(150):
        (worktree / f"f{i}.txt").write_text(f"{i}\n")
        git(worktree, "-c", "core.hooksPath=/dev/null", "add", f"f{i}.txt")
        git(worktree, "-c", "core.hooksPath=/dev/null", "commit", "-qm", f"c{i}")
    (repo / "main.txt").write_text("main moved\n")
    git(repo, "add", "main.txt")
    git(repo, "commit", "-qm", "main moved")
    _husky(locki, repo, "printf '#!/bin/sh\\nsleep 60\\n' > .husky/_/post-checkout; "
                        "chmod +x .husky/_/post-checkout")
    before = git(repo, "rev-parse", f"untitled#locki-{sid}")
    rebase = subprocess.Popen(
        [sys.executable, "-m", "locki", "x", "--", "git", "rebase", "main"], cwd=repo,
        env=locki.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        needle = (b"locki.cli.hook", sid.encode(), b"post-checkout")
        assert _wait_for(lambda: bool(_procs(*needle)), 60), "no post-checkout trampoline"
        time.sleep(1)
        assert _freezer(locki, sid) == "THAWED"  # the hook runs
        for pid in _procs(*needle):
            os.kill(pid, signal.SIGKILL)
        host_git = (b"--work-tree=" + str(worktree).encode(), b"rebase")
        unfrozen_while_git_ran = 0
        while rebase.poll() is None:
            if _procs(*host_git) and _freezer(locki, sid) == "THAWED":
                unfrozen_while_git_ran += 1
            time.sleep(0.01)
        rebase.communicate()
        moved = git(repo, "rev-parse", f"untitled#locki-{sid}") != before
        assert unfrozen_while_git_ran == 0 and not moved, (
            f"host git went on rebasing {'(and finished) ' if moved else ''}with the "
            f"container thawed ({unfrozen_while_git_ran} samples) after the trampoline died")
    finally:
        if rebase.poll() is None:
            rebase.kill()
        _thaw_for_cleanup(locki, sid)


def test_freeze_in_flight_when_git_ends_does_not_leave_the_container_frozen(
        locki: Locki, repo: Path, marks: Path) -> None:  # noqa: F811
    """The trampoline has sent `freeze` after its hook when git ends (the daemon kills it
    at GIT_SECONDS; a sandbox can time its hook to end then): `_spawn` cancels `_hooks`
    mid `held.resume()` (shielded, so it goes on), `frozen()` sees `held.suspended` still
    set and releases nothing, and the share the resume takes a moment later is never
    given back: the container stays frozen for good."""
    git(repo, "config", "core.hooksPath", ".husky/_")
    sid, worktree = _ready(locki, repo, marks)
    _husky(locki, repo, "printf '#!/bin/sh\\nsleep 30\\n' > .husky/_/pre-commit; "
                        "chmod +x .husky/_/pre-commit")
    needle = (b"locki.cli.hook", sid.encode(), b"pre-commit")
    host_git = (b"--work-tree=" + str(worktree).encode(), b"commit")
    try:
        for _ in range(5):
            commit = subprocess.Popen(
                [sys.executable, "-m", "locki", "x", "--", "sh", "-c",
                 "echo 1 >> app.py && git commit -qam x"], cwd=repo, env=locki.env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert _wait_for(lambda: bool(_procs(*needle)), 60), "no pre-commit trampoline"
            time.sleep(0.5)
            (pid,) = _procs(*needle)
            (git_pid,) = _procs(*host_git)
            ctl = _ctl_socket(pid)
            # What the trampoline sends after its hook, as git is stopped.
            os.write(ctl, b"freeze\n")
            os.kill(git_pid, signal.SIGKILL)
            try:
                commit.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                # Its client is in the container: frozen, it never hears the answer.
                commit.kill()
                commit.communicate()
            with contextlib.suppress(ProcessLookupError):  # gone with git's group
                os.kill(pid, signal.SIGKILL)
            os.close(ctl)
            time.sleep(2)
            if _freezer(locki, sid) != "THAWED":
                break
            for lock in (repo / ".git" / "worktrees").glob("*/index.lock"):
                lock.unlink()  # git was killed mid-commit
        assert _freezer(locki, sid) == "THAWED", "the container was left frozen"
        status = _inside(locki, repo, "timeout", "30", "git", "status", "--short")
        assert status.returncode == 0, status.stderr
        time.sleep(1)
        assert _freezer(locki, sid) == "THAWED", "the container is frozen after a command"
    finally:
        _thaw_for_cleanup(locki, sid)


def test_hooks_calling_git_often_and_interrupted_commands_leave_it_thawed(
        locki: Locki, repo: Path, marks: Path) -> None:  # noqa: F811
    """A pre-commit that calls the bridge 20 times at once (more than the sandbox's
    slots) and leaves one running after it returns; two commits at once; a client
    killed while its hook runs: no deadlock, the commit lands, the container ends up
    thawed and the bridge still answers."""
    git(repo, "config", "core.hooksPath", ".husky/_")
    sid, _ = _ready(locki, repo, marks)
    _husky(locki, repo, "printf '%s\\n' '#!/bin/sh' "
                        "'for i in $(seq 20); do git status --short >/dev/null & done; wait' "
                        "'(sleep 1; git log -1 >/dev/null) &' "
                        "'[ -e /tmp/slow ] && sleep 6; exit 0' > .husky/_/pre-commit; "
                        "chmod +x .husky/_/pre-commit")
    both = _inside(locki, repo, "sh", "-c", "echo 1 >> app.py; "
                   "timeout 120 git commit -qam one & timeout 120 git commit -qam two & "
                   "wait")
    assert "one" in git(repo, "log", "-2", "--format=%s", f"untitled#locki-{sid}") or \
        "two" in git(repo, "log", "-2", "--format=%s", f"untitled#locki-{sid}"), both.stderr
    # The client goes while its hook sleeps: git finishes on the host regardless.
    cut = _inside(locki, repo, "sh", "-c", "touch /tmp/slow; echo 2 >> app.py; "
                  "timeout -s KILL 2 git commit -qam interrupted")
    assert cut.returncode == 137
    assert _wait_for(lambda: git(repo, "log", "-1", "--format=%s",
                                 f"untitled#locki-{sid}") == "interrupted", 30)
    time.sleep(2)
    assert _freezer(locki, sid) == "THAWED"
    status = _inside(locki, repo, "timeout", "30", "git", "status", "--short")
    assert status.returncode == 0, status.stderr
    assert _freezer(locki, sid) == "THAWED"


def test_the_head_guard_holds_while_a_hook_lifts_the_writer_lock(
        locki: Locki, repo: Path, marks: Path) -> None:  # noqa: F811
    """A pre-push hook of the sandbox's that hangs keeps `_in_hook` set (push does not
    freeze), so its other writes skip the writer lock: the HEAD check must still refuse
    a commit while the user has the worktree on a branch that is not the sandbox's."""
    git(repo, "config", "core.hooksPath", ".husky/_")
    sid, worktree = _ready(locki, repo, marks)
    _husky(locki, repo, "printf '#!/bin/sh\\nsleep 20\\n' > .husky/_/pre-push; "
                        "chmod +x .husky/_/pre-push")
    push = subprocess.Popen(
        [sys.executable, "-m", "locki", "x", "--", "git", "push", "-q", "origin",
         f"untitled#locki-{sid}"], cwd=repo, env=locki.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        needle = (b"locki.cli.hook", sid.encode(), b"pre-push")
        assert _wait_for(lambda: bool(_procs(*needle)), 60), "no pre-push trampoline"
        # The user, on the host, puts the worktree on a branch of their own.
        git(worktree, "-c", "core.hooksPath=/dev/null", "branch", "feature")
        git(worktree, "symbolic-ref", "HEAD", "refs/heads/feature")
        before = git(repo, "rev-parse", "feature")
        tried = _inside(locki, repo, "sh", "-c", "echo 3 >> app.py && git commit -qam "
                        "sneak; git reset -q --hard HEAD~1; git merge -q --ff-only main; "
                        "git cherry-pick main")
        assert "not on one of this sandbox's branches" in tried.stderr, tried.stderr
        assert git(repo, "rev-parse", "feature") == before
        assert _procs(*needle), "the hook ended before the writes were tried"
    finally:
        push.kill()
        push.communicate()
