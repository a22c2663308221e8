"""The entry point, with a lean path for `locki --version` and `locki x` in a ready sandbox.

Agents call `locki x` hundreds of times a session, so when the chosen sandbox is already
converged (desired running, container running with the right image and worktree mount),
locki goes straight to `incus exec` using the standard library only: one read of the
desired state and one request on the Incus socket (the host's, or the one Lima forwards
from the VM). Anything unusual — a runtime it cannot reach directly,
a sandbox to create, a file that does not parse, a container not ready — falls through
to the full command line, which observes, plans and converges as usual.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locki.core import activity, sandbox_exec
from locki.core.files import answering, incus_socket

if TYPE_CHECKING:
    from locki.core.paths import Paths

SIMPLE_FLAGS = {"-m", "--match"}


def _instance(name: str, project: str, path: str) -> dict[str, Any] | None:
    """GET one instance from the Incus API on the socket `path`. A plain HTTP/1.0
    request: `http.client` alone would cost more import time than the whole request."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(f"GET /1.0/instances/{name}?project={project} HTTP/1.0\r\n"
                     "Host: incus\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if head.split(b" ", 2)[1:2] != [b"200"]:
        return None
    meta: dict[str, Any] = json.loads(body)["metadata"]
    return meta


_KEYS = {"repo", "base", "image", "state", "branch", "forwards", "delete_branches"}


def _plausible(sandbox_id: str, spec: Any) -> bool:
    """A cheap stand-in for the model's validation; anything odd takes the full path."""
    return (
        len(sandbox_id) == 8 and sandbox_id.isascii() and sandbox_id.isalnum()
        and sandbox_id == sandbox_id.lower() and isinstance(spec, dict)
        and not set(spec) - _KEYS and isinstance(spec.get("repo"), str)
        and spec["repo"].startswith("/") and isinstance(spec.get("image"), str)
        and isinstance(spec.get("base"), str)
        and spec.get("state", "running") in ("running", "stopped", "removed")
    )


def _split(tokens: list[str]) -> tuple[str | None, list[str]] | None:
    """(match, command) of `x [-m M] [--] CMD...`, or None for anything else."""
    match = None
    i = 0
    while i < len(tokens):
        word = tokens[i]
        if word == "--":
            return match, tokens[i + 1:]
        if word in SIMPLE_FLAGS and i + 1 < len(tokens):
            match, i = tokens[i + 1], i + 2
        elif word.startswith("--match="):
            match, i = word.split("=", 1)[1], i + 1
        elif word.startswith("-"):
            return None  # any other option: the full command line handles it
        else:
            return match, tokens[i:]
    return match, []


def load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}


def _chosen(paths: Paths, sandboxes: dict[str, Any], match: str | None,
            cwd: Path) -> str | None:
    # Candidates as the full path counts them (stopped ones too: an idle-stopped sandbox
    # is still one to choose from), but only a running one is entered here.
    live = {sid: s for sid, s in sandboxes.items() if s.get("state", "running") != "removed"}
    running = {sid for sid, s in live.items() if s.get("state", "running") == "running"}
    if match is not None:
        hits = [sid for sid in live if sid.startswith(match)]
        return hits[0] if len(hits) == 1 and hits[0] in running else None
    try:
        folder = cwd.resolve().relative_to(paths.worktrees.resolve()).parts[0]
    except (ValueError, IndexError):
        folder = ""
    if folder:
        sid = folder.removesuffix(".include").rpartition("-locki-")[2]
        return sid if sid in running else None
    repo = _enclosing_repo(cwd, {str(s.get("repo")) for s in live.values()})
    mine = [sid for sid, s in live.items() if s.get("repo") == repo]
    return mine[0] if len(mine) == 1 and mine[0] in running else None


def _enclosing_repo(cwd: Path, repos: set[str]) -> str | None:
    """The desired repo holding `cwd`, found by walking up (no `git` process). A nested
    repository on the way (a `.git` below the repo root) means: ask git, on the full path."""
    here = cwd.resolve()
    for folder in (here, *here.parents):
        if str(folder) in repos:
            return str(folder)
        if (folder / ".git").exists():
            return None
    return None


def fast_exec_argv(tokens: list[str]) -> list[str] | None:
    """The `incus exec` argv when the sandbox is ready as desired, else None."""
    split = _split(tokens)
    if split is None:
        return None
    match, command = split
    from locki.core.paths import Paths

    paths = Paths.from_env()
    config = load(paths.user_config)
    reach = _client(paths, os.environ.get("LOCKI_RUNTIME") or config.get("runtime") or "lima")
    if reach is None:
        return None
    prefix, incus_api = reach
    desired = load(paths.desired_state)
    sandboxes = desired.get("sandbox", {})
    if set(desired) - {"sandbox"} or not all(_plausible(k, v) for k, v in sandboxes.items()):
        return None  # the full path names what is wrong with the file
    cwd = Path.cwd()
    sid = _chosen(paths, sandboxes, match, cwd)
    if sid is None:
        return None
    spec = sandboxes[sid]
    iid = paths.installation_id_file.read_text().strip()
    name = sandbox_exec.container_name(sid)
    root = paths.worktree_for(Path(spec["repo"]), sid)
    instance = _instance(name, f"locki-{iid}", incus_api)
    if instance is None or not root.is_dir():
        return None
    labels = instance.get("config") or {}  # null while Incus creates it
    device = (instance.get("devices") or {}).get("worktree") or {}
    ready = (
        instance.get("status") == "Running"
        and labels.get("user.locki.installation") == iid
        and labels.get("user.locki.image") == spec.get("image")
        and bool(labels.get("user.locki.bridge"))
        and device.get("source") == str(root)
        # Shortcoming: whether the daemon runs this very code is left to the full path's
        # handshake (an SSH round trip costs more than the whole lean path); an upgrade
        # is picked up by the next full command.
        and answering(paths.runtime_dir / "bridge.sock", timeout=1)
    )
    if not ready:
        return None
    activity.touch(paths.state_dir, sid)
    inside = sandbox_exec.inside_cwd(cwd, root, Path(spec["repo"]))
    args = sandbox_exec.exec_args(name, cwd=inside,
                                  command=command, env=sandbox_exec.exec_env(sid))
    return [*prefix, "--project", f"locki-{iid}", *args]


def _client(paths: Paths, runtime: str) -> tuple[list[str], str] | None:
    """(`incus` argv prefix, API socket) of the runtime, when the lean path can use it.

    Lima: only with an `incus` client on the host, through the socket Lima forwards
    (it answers only while the VM runs); the same argv as `runtime.LimaVM` builds.
    """
    if runtime == "incus":
        return ["incus"], incus_socket()
    if runtime != "lima" or not (shutil.which("limactl") and shutil.which("incus")):
        return None
    forwarded = str(paths.runtime_dir / "incus.sock")
    return ["env", f"INCUS_SOCKET={forwarded}", f"INCUS_CONF={paths.lima_home / 'incus-client'}",
            "incus"], forwarded


def try_fast_exec(tokens: list[str]) -> None:
    """Replace this process with `incus exec` when the sandbox is ready; else return."""
    try:
        argv = fast_exec_argv(tokens)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return  # whatever went wrong, the full path reports it properly
    if argv is not None:
        sys.stdout.flush()
        os.execvp(argv[0], argv)
