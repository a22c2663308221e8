"""The symlink-swap race: host git must never read or write outside the worktree.

A sandbox swaps a folder `d` with a symlink `l` (to a host-only folder) in a tight loop
while it asks the bridge to `add`/`show`/`mv` files under `d`. Without the freeze, host
git resolves `d/...` while `d` is a symlink for a moment: the secret leaks into a blob,
or the payload lands on the host (found by a reviewer in two tries). Frozen, the
worktree holds still while git runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Locki

pytestmark = pytest.mark.e2e

SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE = 2
while True:
    libc.renameat2(-100, b"d", -100, b"l", RENAME_EXCHANGE)
"""

ATTACK = r"""
set -u
python3 -c '{swapper}' &
swapper=$!
for i in $(seq 40); do
    git add -f d/secret.txt >/dev/null 2>&1
    git show :d/secret.txt 2>/dev/null | grep -q HOSTSECRET && echo LEAKED
    git mv -f payload d/pwn.txt >/dev/null 2>&1 && git mv -f d/pwn.txt payload >/dev/null 2>&1
done
kill $swapper
echo done
"""


def test_swapping_a_folder_for_a_symlink_reaches_nothing_outside(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    hostonly = tmp_path / "hostonly"  # exists on the host only; the sandbox cannot see it
    hostonly.mkdir()
    (hostonly / "secret.txt").write_text("HOSTSECRET\n")
    assert locki("x", "--", "true", cwd=repo).returncode == 0
    worktree = Path(str(locki.sandboxes(repo)[0]["worktree"]))
    (worktree / "d").mkdir()
    (worktree / "d" / "secret.txt").write_text("decoy\n")
    (worktree / "l").symlink_to(hostonly)
    (worktree / "payload").write_text("PWNED\n")
    assert locki("x", "--", "git", "add", "payload", cwd=repo).returncode == 0

    attack = locki("x", "--", "sh", "-c", ATTACK.format(swapper=SWAPPER), cwd=repo)
    assert attack.returncode == 0, attack.stderr
    assert attack.stdout.strip().endswith("done")
    assert "LEAKED" not in attack.stdout
    assert sorted(p.name for p in hostonly.iterdir()) == ["secret.txt"]
    assert (hostonly / "secret.txt").read_text() == "HOSTSECRET\n"


def test_git_mv_through_a_symlink_is_refused(locki: Locki, repo: Path, tmp_path: Path) -> None:
    """No race needed: `git mv` renames by path, following a symlinked folder."""
    hostonly = tmp_path / "hostonly"
    hostonly.mkdir()
    assert locki("x", "--", "true", cwd=repo).returncode == 0
    worktree = Path(str(locki.sandboxes(repo)[0]["worktree"]))
    (worktree / "l").symlink_to(hostonly)
    for target in ("l/pwn.txt", "l", "./l/x/../pwn.txt"):
        moved = locki("x", "--", "git", "mv", "-f", "app.py", target, cwd=repo)
        assert moved.returncode == 1, (target, moved.stderr)
        assert "denied" in moved.stderr
    assert list(hostonly.iterdir()) == []
    assert (worktree / "app.py").exists()


def test_a_tracked_folder_turned_symlink_reaches_nothing(
    locki: Locki, repo: Path, tmp_path: Path
) -> None:
    """No race either: commit `z/f`, then make `z` a symlink to a host folder."""
    hostonly = tmp_path / "hostonly"
    hostonly.mkdir()
    (hostonly / "secret").write_text("SECRET-HOST\n")
    (hostonly / "victim").write_text("VICTIM\n")
    setup = locki("x", "--", "sh", "-c",
                  "mkdir z && echo decoy > z/secret && echo decoy > z/victim && git add z && "
                  "git commit -qm track && rm -rf z", cwd=repo)
    assert setup.returncode == 0, setup.stderr
    worktree = Path(str(locki.sandboxes(repo)[0]["worktree"]))
    (worktree / "z").symlink_to(hostonly)
    for words in (["grep", "-h", "-e", ".", "--", "z/secret"], ["grep", "SECRET"],
                  ["blame", "z/secret"], ["rm", "-r", "-f", "-q", "z"], ["rm", "-f", "z/victim"],
                  ["rm", "-r", "-f", "-q", "."]):
        tried = locki("x", "--", "git", *words, cwd=repo)
        assert "SECRET-HOST" not in tried.stdout, words
        assert tried.returncode != 0, words
    assert sorted(p.name for p in hostonly.iterdir()) == ["secret", "victim"]
