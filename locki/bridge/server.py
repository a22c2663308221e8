"""The bridge's SSH server: runs a sandbox's git on the host, if the policy allows it.

A container's `git` shim connects (OpenSSH, through the Incus proxy device) to the
daemon's unix socket and sends one exec request (see `encode`). For each session:

1. the sandbox is the one the authenticating key was issued to (`keys.lookup`),
   re-checked per session so a revoked key stops working on live connections too;
2. its worktree comes from the desired state, and the client's cwd is opened inside it
   one component at a time without following symlinks (`open_inside`);
3. the policy decides; a refusal exits 1 with the reason and lands in the denied log;
4. host git runs with the repository's own admin dir for this worktree (never the
   worktree's `.git` pointer), locki's pinned config and an environment built from
   scratch; stdio is streamed byte for byte and the exit code passes through.

Nothing else is served: no shell, no pty, no subsystems, no forwarding of any kind, and
environment requests are ignored (the channel stores them; nothing here reads them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Protocol

import asyncssh
import structlog
from asyncssh.misc import TermModes, TermSize

from locki.bridge import freeze as freeze_
from locki.bridge import gh_run, keys, stash_run
from locki.bridge.facts import RepoFacts, gather
from locki.bridge.model import StashPlan
from locki.core import activity, files, git, runtime
from locki.core.errors import LockiError
from locki.core.log import rotating_file
from locki.core.paths import Paths, include_mount
from locki.state.models import SandboxSpec, UserConfig
from locki.state.store import StateFile, load

PROTOCOL = "locki-bridge v1"
PORT = 7022  # inside each container, on its own loopback (the Incus proxy device)
SOCKET_NAME = "bridge.sock"
_FIELD = re.compile(r"^:[A-Za-z0-9+/]*={0,2}$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
log = structlog.get_logger("locki.bridge")


class Refused(Exception):
    """A request the bridge will not serve; the message is the client's."""


class Revoked(Refused):
    """The key authenticated, but its credential has been revoked since."""


def socket_path(paths: Paths) -> Path:
    return paths.private_runtime_dir() / SOCKET_NAME


def code_version() -> str:
    """locki's version and a hash of its code on disk, as the daemon's handshake answer.

    A daemon started before an upgrade (or an edit) answers a different value, so the
    next `ensure_daemon` replaces it instead of letting old code serve on.
    """
    import locki

    package = Path(locki.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and (path.suffix == ".py" or path.parent.name == "guest"):
            digest.update(str(path.relative_to(package)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return f"{locki.__version__}+{digest.hexdigest()[:12]}"


def encode(cwd: str, argv: Sequence[str]) -> str:
    """The exec command for running `argv` in `cwd` (what the guest shim builds)."""
    fields = [os.fsencode(item) for item in (cwd, *argv)]
    return " ".join([PROTOCOL, *(":" + base64.b64encode(f).decode("ascii") for f in fields)])


def decode(command: str) -> list[str]:
    """`[cwd, program, *args]` of an exec command; bytes that are not UTF-8 survive as
    surrogate escapes, so they reach git exactly as the client sent them."""
    if not command.startswith(PROTOCOL + " "):
        raise Refused(f"not a {PROTOCOL} request (is the sandbox's git shim up to date?)")
    fields = command[len(PROTOCOL) + 1:].split(" ")
    if len(fields) < 2 or not all(_FIELD.match(f) for f in fields):
        raise Refused(f"malformed {PROTOCOL} request")
    try:
        raw = [base64.b64decode(f[1:], validate=True) for f in fields]
    except binascii.Error as exc:
        raise Refused(f"malformed {PROTOCOL} request: {exc}") from exc
    if any(b"\0" in item for item in raw):
        raise Refused("arguments may not contain NUL bytes")
    return [os.fsdecode(item) for item in raw]


def _parts(root: Path, path: str) -> list[str]:
    top = str(root)
    if path != top and not path.startswith(top + "/"):
        raise Refused(f"`{path}` is not inside this sandbox's worktree `{top}`")
    parts = [p for p in path[len(top):].split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused(f"`{path}` contains `..`")
    return parts


def _walk(root: Path, parts: Sequence[str], shown: str) -> int:
    """An fd of the directory `root/parts...`, opened one component at a time."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        device = os.fstat(fd).st_dev
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise Refused(
                    f"`{shown}`: `{part}` is not a directory inside the worktree "
                    f"(symlinks are not followed): {exc.strerror}"
                ) from exc
            os.close(fd)
            fd = child
            if os.fstat(fd).st_dev != device:
                raise Refused(f"`{shown}` leaves the worktree's file system")
    except BaseException:
        os.close(fd)
        raise
    return fd


_INDEX_NAME = re.compile(r"index(\.lock|\.stash\.[0-9]+)?|next-index-[0-9]+\.lock")


def index_file(process: asyncssh.SSHServerProcess[bytes], admin: Path) -> str | None:
    """The `GIT_INDEX_FILE` the client sent (its ssh config sends it), if it names one of
    the index files git keeps in this worktree's own admin folder: the in-flight index a
    hook's git must see (`index.lock` during a commit). Anything else is ignored."""
    env = process.env
    raw = env.get("GIT_INDEX_FILE", env.get(b"GIT_INDEX_FILE"))  # type: ignore[call-overload]
    if isinstance(raw, bytes):
        raw = os.fsdecode(raw)
    if not isinstance(raw, str) or not os.path.isabs(raw):
        return None
    normal = os.path.normpath(raw)
    folder, name = os.path.split(normal)
    if folder != str(admin) or not _INDEX_NAME.fullmatch(name):
        return None
    return normal


def open_inside(root: Path, cwd: str) -> int:
    """A directory fd for `cwd`, which must lie inside `root`; no symlink is followed.

    Each component is opened relative to the fd of its parent with O_NOFOLLOW, so the
    result is the directory the walk found, whatever the sandbox renames or swaps
    afterwards: there is no path left to re-resolve. `..` is refused outright rather
    than resolved, and a walk that leaves the worktree's file system is refused.
    """
    return _walk(root, _parts(root, cwd), cwd)


def open_file_inside(root: Path, path: Path) -> int:
    """A read fd for the regular file `path` inside `root`, opened like `open_inside`."""
    *folders, name = _parts(root, str(path)) or [""]
    if not name:
        raise Refused(f"`{path}` is not a file")
    parent = _walk(root, folders, str(path))
    try:
        # O_NONBLOCK: a FIFO the sandbox put there must not hang the open.
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=parent)
    except OSError as exc:
        raise Refused(f"cannot open `{path}` (symlinks are not followed): "
                      f"{exc.strerror}") from exc
    finally:
        os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused(f"`{path}` is not a regular file")
    os.set_blocking(fd, True)
    return fd


DENY_LOG_BYTES = 1_000_000  # then rotated, three generations kept
DENY_LOG_WORD, DENY_LOG_WORDS, DENY_LOG_REASON = 256, 64, 1024


def _clip(text: str, limit: int = DENY_LOG_WORD) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters not logged]"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    argv: list[str]  # what git runs, after the subcommand-level normalisation
    explanation: str = ""  # for refusals: the reason and the allowed forms
    writes: bool = False  # serialised per sandbox
    writes_head: bool = False  # HEAD must be detached or on one of the caller's branches
    stdin_from: Path | None = None  # a worktree file git reads as its stdin
    freeze: bool = True  # freeze the sandbox while it runs (see `Decision.freeze`)
    stash: StashPlan | None = None  # run this on the sandbox's own stash ref instead
    pr_check: str | None = None  # gh: the PR whose head the daemon checks first


@dataclass(frozen=True)
class Request:
    sandbox_id: str
    worktree: Path
    cwd: Path
    facts: RepoFacts
    args: list[str]
    program: str = "git"


class Policy(Protocol):
    def __call__(self, request: Request) -> Verdict: ...


def allow_list(request: Request) -> Verdict:
    """The real allow-list (`locki.bridge.policy`) behind the `Policy` seam."""
    from locki.bridge import gh, policy

    caller = request.facts.caller(request.sandbox_id, request.worktree, request.cwd)
    check = gh.check_gh if request.program == "gh" else policy.check_git
    decision = check(request.args, caller)
    return Verdict(
        allowed=decision.allowed, reason=decision.reason, argv=list(decision.argv),
        explanation="" if decision.allowed else policy.explain(decision),
        writes=decision.writes, writes_head=decision.writes_head,
        stdin_from=decision.stdin_from, freeze=decision.freeze, stash=decision.stash,
        pr_check=decision.pr_check,
    )


@dataclass(frozen=True)
class Sandbox:
    id: str
    repo: Path
    worktree: Path
    admin: Path | None = None  # the worktree's git dir, from the repository's side
    index: str | None = None  # GIT_INDEX_FILE of a hook's git (`index_file`), if any
    # Includes: where the sandbox sees each (inside its worktree) -> (repo, host worktree).
    includes: tuple[tuple[Path, Path, Path], ...] = ()

    def route(self, cwd: str) -> tuple[Sandbox, str]:
        """The worktree a command from `cwd` (a path inside the container) acts on, and
        `cwd` on the host: an include's worktree for a cwd under `.locki/include/<name>`."""
        for inside, repo, host in self.includes:
            top = str(inside)
            if cwd == top or cwd.startswith(top + "/"):
                return Sandbox(self.id, repo, host), str(host) + cwd[len(top):]
        return self, cwd


def _configured_runtime(paths: Paths) -> str | None:
    """`runtime` of config.toml (LOCKI_RUNTIME, which the daemon keeps, still wins)."""
    try:
        return load(paths.user_config, UserConfig).runtime
    except LockiError:
        return None  # the CLI reports a broken file; the daemon keeps serving


class Bridge:
    """What every session shares: paths, the policy, the version, the stop signal."""

    def __init__(self, paths: Paths, policy: Policy, version: str,
                 *, max_processes: int = 32) -> None:
        self.paths = paths
        self.policy = policy
        self.version = version
        self.stopping = asyncio.Event()
        self.active = 0
        self._writers: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(max_processes)
        self._own_slots: dict[str, asyncio.Semaphore] = {}
        self._in_hook: dict[str, int] = {}  # hooks running per sandbox (`_hooks`)
        self._denied: logging.Handler | None = None
        self.freezer = freeze_.Freezer(runtime.incus_api(paths, _configured_runtime(paths)))
        found = shutil.which("git", path=git.host_env().get("PATH"))
        if found is None:
            raise LockiError("`git` is not on the daemon's PATH", hint="install git")
        self.git = found

    def sandbox(self, sandbox_id: str) -> Sandbox | None:
        lock = self.paths.private_runtime_dir() / "state.lock"
        spec: SandboxSpec | None = StateFile(self.paths.desired_state, lock).read().sandbox.get(
            sandbox_id)
        if spec is None or spec.state == "removed":
            return None
        root = self.paths.worktree_for(spec.repo, sandbox_id)
        includes = tuple((include_mount(root, name), inc.repo,
                          self.paths.include_for(spec.repo, sandbox_id, name))
                         for name, inc in sorted(spec.include.items())
                         if inc.state == "present")
        return Sandbox(sandbox_id, spec.repo, root, includes=includes)

    def deny_log(self, sandbox_id: str, cwd: str, args: Sequence[str], reason: str) -> None:
        """One JSON line per denial in the rotated `denied-commands.log`; long words are cut
        (`DENY_LOG_WORD` characters each, at most `DENY_LOG_WORDS` words) so that hostile
        argv cannot grow it without limit."""
        words = [_clip(a) for a in args[:DENY_LOG_WORDS]]
        if len(args) > DENY_LOG_WORDS:
            words.append(f"...[{len(args) - DENY_LOG_WORDS} more words not logged]")
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sandbox": sandbox_id, "cwd": _clip(cwd), "argv": words,
            "reason": _clip(reason, DENY_LOG_REASON),
        }
        if self._denied is None:
            self.paths.state_dir.mkdir(parents=True, exist_ok=True)
            self._denied = rotating_file(self.paths.state_dir / "denied-commands.log",
                                         max_bytes=DENY_LOG_BYTES)
            self._denied.setFormatter(logging.Formatter("%(message)s"))
        # surrogates escaped, one line per entry; the handler's lock keeps lines whole
        self._denied.handle(logging.makeLogRecord(
            {"msg": json.dumps(entry, ensure_ascii=True), "levelno": logging.WARNING}))

    def close(self) -> None:
        """Close the denied log (the daemon's last step)."""
        if self._denied is not None:
            self._denied.close()
            self._denied = None

    async def serve(self, process: asyncssh.SSHServerProcess[bytes], key: asyncssh.SSHKey) -> None:
        """One session, start to exit status; errors become a message, never a hang."""
        self.active += 1
        try:
            process.exit(await self._answer(process, key))
        except Revoked:
            process.exit(1)
            # Drop the whole connection: the client's connection-sharing master would
            # otherwise keep offering the revoked key after a new one was injected.
            process.get_extra_info("connection").close()
        finally:
            self.active -= 1

    async def _answer(self, process: asyncssh.SSHServerProcess[bytes],
                      key: asyncssh.SSHKey) -> int:
        try:
            return await self._serve(process, key)
        except Refused as exc:
            process.stderr.write(f"locki: {exc}\n".encode(errors="surrogateescape"))
            if isinstance(exc, Revoked):
                raise
        except LockiError as exc:
            # e.g. a desired-state file the user broke: say so, as the CLI would.
            process.stderr.write(f"locki: {exc.message}\n".encode(errors="surrogateescape"))
            return 1
        except Exception:
            log.exception("bridge.session_failed")
            process.stderr.write(b"locki: the bridge failed unexpectedly; see its log "
                                 b"(bridge.jsonl in locki's state folder on the host)\n")
            return 3
        return 1

    async def _serve(self, process: asyncssh.SSHServerProcess[bytes],
                     key: asyncssh.SSHKey) -> int:
        identity = keys.lookup(self.paths.state_dir, key)
        if identity is None:
            raise Revoked("this sandbox's bridge credential has been revoked; "
                          "run `locki apply` on the host to issue a new one")
        command = process.command or ""
        if identity == keys.ADMIN:
            return self._control(process, command)
        cwd, program, *args = decode(command)
        sandbox = self.sandbox(identity)
        if sandbox is None:
            raise Refused(f"sandbox `{identity}` is not in locki's desired state")
        activity.touch(self.paths.state_dir, identity)  # bridged use keeps it awake
        if program == "locki":
            return await self._locki(process, identity, cwd, args)
        if program not in ("git", "gh"):
            self.deny_log(identity, cwd, [program, *args], "only git, gh, locki are bridged")
            raise Refused(f"denied: only git, gh and `locki port-forward` are bridged, "
                          f"not `{program}`")
        # A cwd inside one of the sandbox's includes acts on that repository's worktree.
        sandbox, cwd = sandbox.route(cwd)
        try:
            fd = open_inside(sandbox.worktree, cwd)
        except Refused as exc:
            self.deny_log(identity, cwd, [program, *args], str(exc))
            raise Refused(f"denied: {exc}") from None
        try:
            if program == "gh":
                return await self._gh(process, sandbox, cwd, args)
            return await self._git(process, sandbox, fd, cwd, args)
        finally:
            os.close(fd)

    async def _locki(self, process: asyncssh.SSHServerProcess[bytes], sandbox_id: str,
                     cwd: str, args: list[str]) -> int:
        """`locki port-forward :PORT...` for the caller's own sandbox, nothing else.

        The host builds the command: the sandbox is the key's, the only words taken from
        the client are `:PORT` specs (a leased host port each), checked here.
        """
        specs = args[1:]
        valid = (args[:1] == ["port-forward"] and 1 <= len(specs) <= 8
                 and all(_GUEST_PORT.fullmatch(s) for s in specs))
        if not valid:
            reason = "only `locki port-forward :PORT...` (1 to 8 ports) is allowed"
            self.deny_log(sandbox_id, cwd, ["locki", *args], reason)
            process.stderr.write(f"locki: denied: {reason}\n".encode())
            return 1
        argv = [sys.executable, "-m", "locki", "port-forward", "-m", sandbox_id, *specs]
        child = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd="/", env=_locki_env(self.paths))
        out, err = await child.communicate()
        process.stdout.write(out)
        process.stderr.write(err)
        log.info("bridge.locki", sandbox=sandbox_id, argv=argv[3:], code=child.returncode)
        return child.returncode or 0

    def _control(self, process: asyncssh.SSHServerProcess[bytes], command: str) -> int:
        if command == "locki-bridge ping":
            process.stdout.write(f"{self.version}\n".encode())
            return 0
        if command == "locki-bridge stop":
            process.stdout.write(b"stopping\n")
            self.stopping.set()
            return 0
        raise Refused(f"unknown control request `{command}`")

    async def _admin(self, sandbox: Sandbox) -> Path:
        """The worktree's git dir, from the repository's own records."""
        admin = git.admin_dir(await git.common_dir(sandbox.repo), sandbox.worktree)
        if admin is None:
            raise Refused(f"git has no record of worktree `{sandbox.worktree}`; "
                          "run `locki apply` on the host")
        return admin

    async def _git(self, process: asyncssh.SSHServerProcess[bytes], sandbox: Sandbox,
                   fd: int, cwd: str, args: list[str]) -> int:
        admin = await self._admin(sandbox)
        request = Request(sandbox.id, sandbox.worktree, Path(cwd),
                          await gather(sandbox.repo, admin), args)
        verdict = self.policy(request)
        if not verdict.allowed:
            return self._refuse(process, sandbox.id, cwd, ["git", *args], verdict)
        scope = [f"--git-dir={admin}", f"--work-tree={sandbox.worktree}"]
        stdin = None
        if verdict.stdin_from is not None:
            stdin = open_file_inside(sandbox.worktree, verdict.stdin_from)
        index = index_file(process, admin)
        log.info("bridge.git", sandbox=sandbox.id, argv=verdict.argv, cwd=cwd, index=index)
        try:
            own = self._own_slot(sandbox.id)
            target = replace(sandbox, admin=admin, index=index)
            async with own, self._slots:
                # Read while the client still runs (it is frozen during the command), to
                # disk, and only within the sandbox's own slots: no flood fills memory.
                if stdin is None and _wants_stdin(verdict.argv):
                    stdin = await _read_stdin(process)
                # A git a hook calls runs while the command that ran the hook holds the
                # writer lock, and waits on it: it may not wait for that lock.
                if not verdict.writes or self._in_hook.get(sandbox.id):
                    if verdict.writes_head:
                        await self._check_head(sandbox, scope)
                    return await self._run(process, target, verdict, fd, stdin)
                # One writer per sandbox at a time, so the HEAD check below still holds
                # when the command runs (only bridged commands move this worktree's HEAD).
                async with self._writers.setdefault(sandbox.id, asyncio.Lock()):
                    if verdict.writes_head:
                        await self._check_head(sandbox, scope)
                    return await self._run(process, target, verdict, fd, stdin)
        finally:
            if stdin is not None:
                os.close(stdin)

    def _refuse(self, process: asyncssh.SSHServerProcess[bytes], sandbox_id: str, cwd: str,
                argv: list[str], verdict: Verdict) -> int:
        self.deny_log(sandbox_id, cwd, argv, verdict.reason)
        log.info("bridge.denied", sandbox=sandbox_id, argv=argv, reason=verdict.reason)
        text = verdict.explanation or f"denied: {verdict.reason}"
        process.stderr.write(f"locki: {text.rstrip()}\n".encode(errors="surrogateescape"))
        return 1

    async def _gh(self, process: asyncssh.SSHServerProcess[bytes], sandbox: Sandbox,
                  cwd: str, args: list[str]) -> int:
        """gh on the host, for the current repository only; the sandbox is not frozen
        (host gh never opens a worktree path; a body file is read here, by fd)."""
        facts = await gather(sandbox.repo, await self._admin(sandbox))
        verdict = self.policy(Request(sandbox.id, sandbox.worktree, Path(cwd), facts, args,
                                      program="gh"))
        if not verdict.allowed or facts.github is None:
            return self._refuse(process, sandbox.id, cwd, ["gh", *args], verdict)
        program = gh_run.find()
        environment = gh_run.env(facts.github, dict(os.environ))
        argv = list(verdict.argv)
        async with self._own_slot(sandbox.id), self._slots:
            if verdict.pr_check is not None:
                try:
                    argv[-1] = await gh_run.pr_number(program, environment, verdict.pr_check,
                                                      f"#locki-{sandbox.id}")
                except gh_run.NotOwnPR as exc:
                    denied = replace(verdict, allowed=False, reason=str(exc), explanation="")
                    return self._refuse(process, sandbox.id, cwd, ["gh", *args], denied)
            stdin = None
            if verdict.stdin_from is not None:
                stdin = open_file_inside(sandbox.worktree, verdict.stdin_from)
            elif _wants_stdin(argv):
                stdin = await _read_stdin(process)
            log.info("bridge.gh", sandbox=sandbox.id, argv=argv, repo=facts.github)
            try:
                with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                    code = await _spawn_gh([program, *argv], environment, stdin, out, err)
                    await _send(process, ("gh",), out, err)
            finally:
                if stdin is not None:
                    os.close(stdin)
        return code

    def _own_slot(self, sandbox_id: str) -> asyncio.Semaphore:
        return self._own_slots.setdefault(sandbox_id, asyncio.Semaphore(PER_SANDBOX))

    async def _check_head(self, sandbox: Sandbox, scope: list[str]) -> None:
        head = await git.git(sandbox.repo, *scope, "symbolic-ref", "-q", "HEAD", check=False)
        ref = head.stdout.strip()
        if head.returncode == 1 and not ref:
            return  # detached: the command makes no branch move
        if not ref.startswith("refs/heads/") or not ref.endswith(f"#locki-{sandbox.id}"):
            raise Refused(
                f"denied: HEAD is on `{ref.removeprefix('refs/heads/') or '?'}`, not on one "
                f"of this sandbox's branches; switch to `<topic>#locki-{sandbox.id}` first"
            )

    async def _tracked_folders_are_folders(self, sandbox: Sandbox, git_prefix: list[str]
                                           ) -> None:
        """Refuse while a folder git tracks files in is a symlink in the worktree.

        Some git commands (grep, blame, rm) reach worktree files by their index path
        without checking for a symlinked leading folder: a sandbox that commits `z/f`,
        then makes `z` a symlink to a host folder, would have host git read or delete
        there. Run while the sandbox is frozen; reads the index only.
        """
        listing = await asyncio.create_subprocess_exec(
            *git_prefix, "ls-files", "-z", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
            env=git.host_env(), cwd=sandbox.worktree)
        out, _ = await listing.communicate()
        folders: set[str] = set()
        for entry in out.split(b"\0"):
            parts = os.fsdecode(entry).split("/")[:-1]
            folders.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        root = os.open(sandbox.worktree, _DIR_FLAGS)
        try:
            for folder in sorted(folders, key=lambda f: f.count("/")):
                try:
                    info = os.stat(folder, dir_fd=root, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(info.st_mode):
                    raise Refused(f"denied: `{folder}` holds tracked files but is not a folder "
                                  "in the worktree (a symlink?); restore it first")
        finally:
            os.close(root)

    def project(self) -> str:
        return f"locki-{self.paths.installation_id_file.read_text().strip()}"

    async def _run(self, process: asyncssh.SSHServerProcess[bytes], sandbox: Sandbox,
                   verdict: Verdict, fd: int, stdin: int | None) -> int:
        words = tuple(verdict.argv)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            async with self._held(sandbox, words, fd, freeze=verdict.freeze) as held:
                if verdict.stash is not None:
                    done = await stash_run.run(verdict.stash,
                                               self._stepper(sandbox, fd, held))
                    out.write(done.out)
                    err.write(done.err)
                    code = done.code
                else:
                    code = await self._spawn(sandbox, words, fd, stdin, out, err,
                                             held=held, bare=not verdict.freeze)
            # Thawed: the client reads again. Output goes out in order, stream by stream.
            await _send(process, words, out, err)
        return code if code >= 0 else 128 - code

    @asynccontextmanager
    async def _held(self, sandbox: Sandbox, words: tuple[str, ...], fd: int, *,
                    freeze: bool) -> AsyncIterator[freeze_.Held | None]:
        """The sandbox frozen (and its worktree checked) while host git runs, if needed.

        Not frozen: push and fetch (`Decision.freeze`). They need refs, objects and
        config, all in the repository's git dir, which is not mounted in the container,
        plus the network; `_spawn` runs them as in a bare repository from the main
        checkout, so they open no path in the worktree at all (with a work tree, even
        push's pack-objects reads `.gitattributes` files there by path). With nothing
        the sandbox could swap under them, freezing would only stall it for as long as
        the network takes.
        """
        if not freeze:
            yield None
            return
        async with self.freezer.frozen(f"locki-{sandbox.id}", self.project()) as held:
            if words[:1] == ("mv",) and "--" in words:
                _no_symlinks_on_the_way(fd, words[words.index("--") + 1:])
            await self._worktree_holds_still(sandbox, words)
            yield held

    async def _worktree_holds_still(self, sandbox: Sandbox, words: Sequence[str]) -> None:
        """For commands that reach worktree files by path: no tracked folder is a symlink
        (checked while frozen: before the command, and after each hook it ran)."""
        if words[:1] and words[0] in TOUCHES_WORKTREE:
            scope = [f"--git-dir={sandbox.admin}", f"--work-tree={sandbox.worktree}"]
            await self._tracked_folders_are_folders(sandbox, [self.git, *git.argv(*scope)[1:]])

    def _stepper(self, sandbox: Sandbox, fd: int, held: freeze_.Held | None
                 ) -> stash_run.GitStep:
        """One host git step of a multi-step plan, its output captured."""

        async def step(words: Sequence[str]) -> stash_run.Step:
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                code = await self._spawn(sandbox, tuple(words), fd, None, out, err, held=held)
                out.seek(0)
                err.seek(0)
                return stash_run.Step(code, out.read(), err.read())

        return step

    async def _spawn(self, sandbox: Sandbox, verdict_argv: tuple[str, ...], fd: int,
                     stdin: int | None, out: IO[bytes], err: IO[bytes], *,
                     held: freeze_.Held | None, bare: bool = False) -> int:
        scope = [f"--git-dir={sandbox.admin}", f"--work-tree={sandbox.worktree}"]
        if bare:
            # No work tree, and the main checkout (out of the sandbox's reach) as the
            # folder: relative remote paths resolve as in the user's own checkout.
            scope = ["-c", "core.bare=true", f"--git-dir={sandbox.admin}"]
        # Hooks go to the worktree's trampolines, which run them inside the container.
        hooks = ["-c", f"core.hooksPath={self.paths.hooks_for(sandbox.worktree)}"]
        argv = [self.git, *git.argv(*hooks, *scope, *verdict_argv)[1:]]
        env = git.host_env()
        if sandbox.index is not None:
            env["GIT_INDEX_FILE"] = sandbox.index
        # The hook trampolines ask on this socket for the container to be thawed while
        # a hook runs in it, and frozen again after (`locki.cli.hook`): one connection
        # per hook, so a trampoline that dies is seen (its connection ends).
        control = _HookControl(self, sandbox, verdict_argv, held, err)
        path = self.paths.private_runtime_dir() / f"hook-{os.urandom(8).hex()}.sock"
        server = await asyncio.start_unix_server(control.session, path=str(path))
        env["LOCKI_HOOK_CTL"] = str(path)
        if bare:
            where: dict[str, object] = {"cwd": sandbox.repo}
        elif sys.platform == "linux":
            where = {"cwd": f"/proc/self/fd/{fd}", "pass_fds": (fd,)}
        else:
            # Shortcoming: a preexec hook is not thread-safe; the daemon starts no threads.
            where = {"preexec_fn": lambda: os.fchdir(fd), "pass_fds": (fd,)}
        source = stdin if stdin is not None else asyncio.subprocess.DEVNULL
        try:
            child = await asyncio.create_subprocess_exec(
                *[os.fsencode(a) for a in argv], stdin=source, stdout=out, stderr=err,
                env=env, start_new_session=True, **where,  # type: ignore[arg-type]
            )
            control.child = child
            return await _finish(child, "git", err)
        finally:
            server.close()
            path.unlink(missing_ok=True)
            await control.wind_down()

    async def _worktree_holds_still_or_stop(self, sandbox: Sandbox, words: Sequence[str],
                                            child: asyncio.subprocess.Process | None,
                                            err: IO[bytes]) -> None:
        try:
            await self._worktree_holds_still(sandbox, words)
        except Refused as exc:
            if child is not None:
                _stop(child, err, f"a hook changed the worktree: {exc}")
            log.warning("bridge.hook_broke_worktree", sandbox=sandbox.id, reason=str(exc))


class _HookControl:
    """One host git's hook trampolines: `thaw` before a hook runs in the container,
    `freeze` after it, on a connection of their own. After each hook the worktree is
    checked again as before the command; a hook that broke it (a tracked folder made a
    symlink) stops the git. Fails closed: a connection that ends while its hook has the
    container thawed (the trampoline died), or a word out of turn, stops the git, which
    never goes on with the sandbox running."""

    def __init__(self, bridge: Bridge, sandbox: Sandbox, words: Sequence[str],
                 held: freeze_.Held | None, err: IO[bytes]) -> None:
        self.bridge, self.sandbox, self.words, self.held, self.err = \
            bridge, sandbox, words, held, err
        self.child: asyncio.subprocess.Process | None = None
        self.sessions: set[asyncio.Task[object]] = set()

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.sessions.add(task)
        sid = self.sandbox.id
        inside = False
        try:
            while line := await reader.readline():
                word = line.strip()
                if word == b"thaw" and not inside:
                    inside = True
                    self.bridge._in_hook[sid] = self.bridge._in_hook.get(sid, 0) + 1
                    if self.held is not None:
                        await self.held.suspend()
                elif word == b"freeze" and inside:
                    if self.held is not None:
                        await self.held.resume()
                    inside = False
                    self.bridge._in_hook[sid] -= 1
                    if self.held is not None:
                        await self.bridge._worktree_holds_still_or_stop(
                            self.sandbox, self.words, self.child, self.err)
                else:
                    break
                writer.write(b"ok\n")
                await writer.drain()
                if not inside:
                    break  # the hook is over: one hook per connection
        except (OSError, LockiError) as exc:
            log.warning("bridge.hook_control_failed", sandbox=sid, error=str(exc))
        finally:
            if inside:
                self.bridge._in_hook[sid] -= 1
                if self.child is not None and self.child.returncode is None:
                    _stop(self.child, self.err, "the hook's control was lost while it ran")
            writer.close()

    async def wind_down(self) -> None:
        """After git ended: what it left running (a trampoline, its `incus exec`, all in
        its process group) goes, and each session settles (its freeze share with it)."""
        pending = {task for task in self.sessions if not task.done()}
        if not pending:
            return
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child.pid, signal.SIGKILL)
        _, late = await asyncio.wait(pending, timeout=HOOK_SETTLE_SECONDS)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)


def _stop(child: asyncio.subprocess.Process, err: IO[bytes], why: str) -> None:
    """Stop a host git (and what it started) that must not go on."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    err.write(f"locki: stopped: {why}\n".encode(errors="surrogateescape"))


async def _finish(child: asyncio.subprocess.Process, name: str, err: IO[bytes]) -> int:
    """The child's exit code, once it ends or has run too long (then it is killed)."""
    try:
        await asyncio.wait_for(child.wait(), GIT_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)  # its whole group: hooks and all
        await child.wait()
        err.write(f"locki: {name} ran over {GIT_SECONDS}s and was stopped\n".encode())
    return child.returncode if child.returncode is not None else 1


async def _spawn_gh(argv: list[str], environment: dict[str, str], stdin: int | None,
                    out: IO[bytes], err: IO[bytes]) -> int:
    child = await asyncio.create_subprocess_exec(
        *argv, stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=out, stderr=err, env=environment, cwd="/", start_new_session=True)
    code = await _finish(child, "gh", err)
    return code if code >= 0 else 128 - code


async def _send(process: asyncssh.SSHServerProcess[bytes], words: tuple[str, ...],
                out: IO[bytes], err: IO[bytes]) -> None:
    for spool, stream in ((out, process.stdout), (err, process.stderr)):
        spool.seek(0)
        if words[:1] in (("remote",), ("config",), ("push",), ("fetch",), ("pull",)):
            # URLs may carry a user's token (https://user:TOKEN@host/..., or
            # user:pass@host:path): cut every user-info part and query string.
            stream.write(redact(spool.read()))
        while chunk := spool.read(1 << 16):
            stream.write(chunk)
            await stream.drain()


_USERINFO = re.compile(rb"([a-zA-Z][a-zA-Z0-9+.-]*://)[^\n@]*@")
_SCP_USERINFO = re.compile(rb"(^|[\s])[^\s/@]*@(?=[^\s/@:]+:)", re.MULTILINE)
_QUERY = re.compile(rb"(://[^\s?]*)\?\S*")


def redact(text: bytes) -> bytes:
    """`text` without the credentials a URL can carry."""
    previous = None
    while previous != text:  # `u:p@ss@h`: every `@` of a user-info part goes
        previous, text = text, _USERINFO.sub(rb"\1", text)
    text = _SCP_USERINFO.sub(rb"\1", text)
    return _QUERY.sub(rb"\1", text)
# Subcommands that read or write worktree files by path.
TOUCHES_WORKTREE = frozenset({
    "add", "blame", "checkout", "cherry-pick", "commit", "diff", "grep", "ls-files", "merge",
    "mv", "pull", "rebase", "reset", "restore", "revert", "rm", "stash", "status", "switch",
})
PER_SANDBOX = 8  # concurrent commands of one sandbox: it cannot starve the others
GIT_SECONDS = 600
STDIN_SECONDS = 60
HOOK_SETTLE_SECONDS = 10  # after git ends: for its hook control to wind down
STDIN_LIMIT = 64 << 20
_GUEST_PORT = re.compile(r":[1-9][0-9]{0,4}")


def _locki_env(paths: Paths) -> dict[str, str]:
    """The environment for a host `locki` the daemon runs: the same folders as its own."""
    env = {**git.host_env(), **paths.xdg_env()}
    for key in ("LOCKI_RUNTIME", "INCUS_SOCKET", "INCUS_DIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.pop("GIT_CONFIG_NOSYSTEM", None)
    return env


def _no_symlinks_on_the_way(cwd_fd: int, paths: Sequence[str]) -> None:
    """Refuse `git mv` paths that pass through a symlink (or end on one).

    git checks leading symlinks when it reads and checks out, but `git mv` renames by
    path: `git mv f link/x` with `link -> /etc` would write outside the worktree. Run
    while the sandbox is frozen, so what is checked is what git will see.
    """
    for path in paths:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        fd = os.dup(cwd_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    break  # a new name: nothing beyond it exists yet
                if stat.S_ISLNK(info.st_mode):
                    raise Refused(f"denied: `{path}` passes through the symlink `{part}`")
                if i < len(parts) - 1:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    os.close(fd)
                    fd = child
        finally:
            os.close(fd)


def _wants_stdin(argv: Sequence[str]) -> bool:
    """Whether git will read its stdin (`-F -`, `--stdin`, `--batch`...). Only then is the
    client's stdin read: a terminal or an idle pipe must never stall a command."""
    words = list(argv)
    for i, word in enumerate(words):
        if word in ("--stdin", "--file=-", "-F-", "-f-", "--pathspec-from-file=-",
                    "--body-file=-",
                    "--parseopt") or word.startswith("--batch"):
            return True
        if word in ("-F", "-f", "--file") and words[i + 1:i + 2] == ["-"]:
            return True
    return False


async def _read_stdin(process: asyncssh.SSHServerProcess[bytes]) -> int:
    """The client's whole stdin in an unlinked temporary file (an fd at offset 0),
    bounded in size and time."""
    size = 0
    with tempfile.TemporaryFile() as spool:
        try:
            async with asyncio.timeout(STDIN_SECONDS):
                while chunk := await process.stdin.read(1 << 16):
                    size += len(chunk)
                    if size > STDIN_LIMIT:
                        raise Refused(f"denied: stdin is over {STDIN_LIMIT >> 20} MiB")
                    spool.write(chunk)
        except TimeoutError:
            raise Refused(f"denied: stdin did not end within {STDIN_SECONDS}s") from None
        spool.flush()
        spool.seek(0)
        return os.dup(spool.fileno())


class _Process(asyncssh.SSHServerProcess[bytes]):
    """An exec-only session: shell, pty and subsystem requests are refused."""

    def shell_requested(self) -> bool:
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def pty_requested(self, term_type: str, term_size: TermSize, term_modes: TermModes) -> bool:
        return False


class _Connection(asyncssh.SSHServer):
    """One client connection: public-key auth against the credential registry."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.key: asyncssh.SSHKey | None = None

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if keys.lookup(self.bridge.paths.state_dir, key) is None:
            return False
        self.key = key
        return True

    def session_requested(self) -> _Process:
        key = self.key
        assert key is not None  # sessions exist only after authentication

        def handler(process: asyncssh.SSHServerProcess[bytes]) -> Awaitable[None]:
            return self.bridge.serve(process, key)

        return _Process(handler, None, 0, False)


answering = files.answering


def bind(path: Path) -> socket.socket:
    """A listening unix socket at `path`, mode 0600 from the start."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def listen(bridge: Bridge, sock: socket.socket) -> asyncssh.SSHAcceptor:
    host_key = keys.host_key(bridge.paths.state_dir)
    keys.admin_key(bridge.paths.state_dir)
    factory: Callable[[], asyncssh.SSHServer] = lambda: _Connection(bridge)  # noqa: E731
    return await asyncssh.listen(
        sock=sock, server_factory=factory, server_host_keys=[host_key],
        encoding=None, allow_pty=False, agent_forwarding=False, x11_forwarding=False,
        allow_scp=False, line_editor=False, login_timeout=20, keepalive_interval=30,
    )
