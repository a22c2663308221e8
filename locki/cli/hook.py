"""Run one git hook of a sandbox's worktree inside its container (`python -m locki.cli.hook`).

Called by the worktree's trampoline (`locki.resources.hooks`) when host git — the
bridge's, or the user's own in a shell or an IDE — would run a hook. The hook runs in
the container, in the worktree at the same path, with git's arguments, stdin and git
environment (`GIT_INDEX_FILE` included: a hook's own git goes through the bridge, which
honours it). Files git hands the hook (the commit message) live in the repository's git
dir, which the container cannot see: they travel in with the request and back in its
output. All of it is one `incus exec` (the lean `locki x` path; `locki x` itself when the
container is not running, which starts it). The hook's exit code is git's answer.

Under the bridge, the daemon has frozen the container while host git runs; it passes a
socket (`LOCKI_HOOK_CTL`) on which this asks it to thaw the container for the hook and
to freeze it again after.

Standard library only: git may call several hooks per command.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import IO

from locki.cli import fast
from locki.core.paths import Paths

FILE_LIMIT = 64 << 10  # per file carried in or out (an environment string holds 128 KiB)
MARK = b"locki-hook-file "
# Git's environment for hooks that is meaningful inside (paths into the git dir are the
# host's: the bridge resolves them; GIT_DIR and GIT_WORK_TREE would mislead the
# container's own git outside the worktree).
GIT_ENV = (
    "GIT_INDEX_FILE", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE", "GIT_REFLOG_ACTION",
    "GIT_PREFIX", "GIT_EDITOR", "GIT_PUSH_OPTION_COUNT",
)

# Runs in the container: carried files written, the hook run with git's stdin and its
# stdout on stderr (as git itself does for hooks), then the files it may have edited
# written to stdout, one line each.
WRAPPER = r"""
hook=$1; shift
d=$LOCKI_HOOK_DIR
mkdir -m 700 "$d" || exit 126
trap 'rm -rf "$d"' EXIT
if [ -n "${LOCKI_HOOK_BODY-}" ]; then
    printf %s "$LOCKI_HOOK_BODY" | base64 -d > "$d/hook" && chmod 700 "$d/hook" || exit 126
    hook=$d/hook
fi
for n in $LOCKI_HOOK_FILES; do
    mkdir -p "$d/$n" || exit 126
    eval "printf %s \"\$LOCKI_HOOK_F$n\"" | base64 -d > "$d/$n/file" || exit 126
    unset "LOCKI_HOOK_F$n"
done
files=$LOCKI_HOOK_FILES
unset LOCKI_HOOK_DIR LOCKI_HOOK_BODY LOCKI_HOOK_FILES
if [ ! -f "$hook" ] || [ ! -x "$hook" ]; then exit 0; fi
"$hook" "$@" >&2
rc=$?
for n in $files; do
    printf 'locki-hook-file %s ' "$n"
    base64 < "$d/$n/file" | tr -d '\n'
    printf '\n'
done
exit $rc
"""


def _spec(paths: Paths, sandbox_id: str) -> dict[str, object] | None:
    try:
        sandboxes = fast.load(paths.desired_state).get("sandbox", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    spec = sandboxes.get(sandbox_id)
    if not isinstance(spec, dict) or spec.get("state", "running") == "removed":
        return None
    return spec


def _inside(path: str, top: Path, root: Path) -> str | None:
    """`path` as the container sees it, when it lies in the sandbox's worktree (or one of
    its includes); None when it is outside, lexically (never resolving a link)."""
    normal = os.path.normpath(path)
    for base, seen in ((str(top), str(top)),
                       (str(root.with_name(root.name + ".include")),
                        str(root / ".locki" / "include"))):
        if normal == base or normal.startswith(base + "/"):
            return seen + normal[len(base):]
    return None


def _read_host(path: str) -> bytes:
    """A host file git or the user owns (a hook in `.git/hooks`, a commit message), read
    without waiting on a FIFO and within the size a request can carry."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        data = os.read(fd, FILE_LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > FILE_LIMIT:
        raise OSError(f"`{path}` is over {FILE_LIMIT >> 10} KiB")
    return data


def _carried(args: list[str], git_dir: str | None) -> dict[int, str]:
    """Arguments naming a regular file in `git_dir` (absolute, as git passes them): their
    position -> host path."""
    out: dict[int, str] = {}
    if git_dir is None:
        return out
    for i, arg in enumerate(args):
        normal = os.path.normpath(arg)
        if os.path.isabs(arg) and normal.startswith(git_dir + "/") and os.path.isfile(normal) \
                and not os.path.islink(normal):
            out[i] = normal
    return out


class _Control:
    """The daemon's thaw/freeze socket, when git runs under the bridge: one connection
    for this hook (its end tells the daemon this trampoline is gone)."""

    def __init__(self) -> None:
        path = os.environ.get("LOCKI_HOOK_CTL", "")
        self.sock: socket.socket | None = None
        if path.startswith("/"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(path)

    def ask(self, word: str) -> None:
        if self.sock is None:
            return
        self.sock.sendall(word.encode() + b"\n")
        answer = self.sock.recv(64)
        if answer != b"ok\n":
            raise OSError(f"the bridge did not {word} the container: {answer!r}")


def run(sandbox_id: str, top: Path, hook: str, args: list[str]) -> int:
    name = os.path.basename(hook)
    paths = Paths.from_env()
    spec = _spec(paths, sandbox_id)
    if spec is None:
        print(f"locki: hook `{name}` not run: sandbox {sandbox_id} no longer exists "
              "(hooks never run on the host)", file=sys.stderr)
        return 0
    repo = Path(str(spec["repo"]))
    root = paths.worktree_for(repo, sandbox_id)
    env = {key: os.environ[key] for key in GIT_ENV if key in os.environ}
    folder = f"/tmp/locki-hook-{os.urandom(8).hex()}"  # unguessable: mkdir fails if planted
    env["LOCKI_HOOK_DIR"] = folder
    inside = _inside(hook, top, root)
    if inside is None:
        env["LOCKI_HOOK_BODY"] = base64.b64encode(_read_host(hook)).decode()
        inside = hook
    carried = _carried(args, _git_dir(spec))
    inner = list(args)
    for i, host_path in carried.items():
        env[f"LOCKI_HOOK_F{i}"] = base64.b64encode(_read_host(host_path)).decode()
        inner[i] = f"{folder}/{i}/file"
    env["LOCKI_HOOK_FILES"] = " ".join(str(i) for i in carried)
    command = ["env", *(f"{k}={v}" for k, v in env.items()),
               "sh", "-c", WRAPPER, "locki-hook", inside, *inner]
    control = _Control()
    control.ask("thaw")
    try:
        argv = fast.fast_exec_argv(["-m", sandbox_id, "--", *command])
        if argv is None:  # not running, or anything unusual: `locki x` sorts it out
            argv = [sys.executable, "-I", "-m", "locki", "x", "-m", sandbox_id, "--", *command]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE)
        assert child.stdout is not None
        returned = _returned(child.stdout, carried)
        code = child.wait()
    finally:
        control.ask("freeze")
    for position, content in returned.items():
        _write_back(carried[position], content)
    return code


def _returned(stream: IO[bytes], carried: dict[int, str]) -> dict[int, bytes]:
    """The carried files as the hook left them, from the wrapper's output lines; read as
    a stream and bounded (the output is the sandbox's: anything else is dropped)."""
    limit = len(MARK) + 24 + (FILE_LIMIT * 4) // 3 + 8
    found: dict[int, bytes] = {}
    while line := stream.readline(limit):
        if not line.endswith(b"\n"):
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                pass  # the rest of an over-long line, dropped
            continue
        if not line.startswith(MARK):
            continue
        number, _, data = line[len(MARK):].strip().partition(b" ")
        position = int(number) if number.isdigit() else -1
        if position not in carried:
            continue
        try:
            content = base64.b64decode(data, validate=True)
        except ValueError:
            continue
        if len(content) <= FILE_LIMIT:
            found[position] = content
    return found




def _git_dir(spec: dict[str, object]) -> str | None:
    """The git dir git runs the hook for (`GIT_DIR`, which git exports to hooks), when it
    lies in the git dir of the sandbox's repository or of one of its includes: files
    there are git's, out of the sandbox's reach."""
    admin = os.environ.get("GIT_DIR", "")
    if not os.path.isabs(admin):
        return None
    normal = os.path.normpath(admin)
    includes = spec.get("include")
    repos = [str(spec["repo"])]
    if isinstance(includes, dict):
        repos += [str(item.get("repo")) for item in includes.values() if isinstance(item, dict)]
    for repo in repos:
        common = os.path.join(repo, ".git")
        if normal == common or normal.startswith(common + "/"):
            return normal
    return None


def _write_back(path: str, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


def main() -> None:
    if len(sys.argv) < 4:
        print("usage: python -m locki.cli.hook SANDBOX WORKTREE HOOK [ARGS...]",
              file=sys.stderr)
        sys.exit(2)
    sandbox_id, top, hook, *args = sys.argv[1:]
    try:
        code = run(sandbox_id, Path(top), hook, args)
    except OSError as exc:
        print(f"locki: could not run the `{os.path.basename(hook)}` hook in sandbox "
              f"{sandbox_id}: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
