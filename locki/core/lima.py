"""`limactl`, as locki drives it: one instance named `locki` under locki's own LIMA_HOME.

Every call goes through the process runner with `LIMA_HOME` set, never the user's
`~/.lima`, so locki's VM and its `_config/default.yaml`/`override.yaml` (which Lima would
merge into every instance, mounts included) are locki's alone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from locki.core import proc
from locki.core.errors import CommandFailed, LockiError
from locki.core.paths import Paths

INSTANCE = "locki"
MINIMUM_VERSION = (1, 1, 0)  # instance params (where the config hash is kept) came in 1.1
INSTALL_HINT = (
    "install Lima (macOS: `brew install lima`; Linux: the release archive from "
    "https://lima-vm.io/docs/installation/ and QEMU), or on Linux choose the host's Incus "
    "explicitly: LOCKI_RUNTIME=incus"
)


def limactl() -> str:
    found = shutil.which("limactl")
    if found is None:
        raise LockiError("the `lima` runtime needs `limactl` on PATH", hint=INSTALL_HINT)
    return found


def incus_socket(paths: Paths) -> Path:
    """Where Lima forwards the VM's Incus socket on the host (see the VM config): in the
    private runtime folder, beside the bridge's, because a socket path must stay short
    (104 bytes on macOS) and LIMA_HOME can be deep."""
    return paths.runtime_dir / "incus.sock"


class Limactl:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.binary = limactl()

    def env(self) -> dict[str, str]:
        return proc.clean_env({"LIMA_HOME": str(self.paths.lima_home)})

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *args]

    async def run(self, *args: str, stdin: bytes | None = None,
                  check: bool = True) -> proc.Completed:
        self.paths.lima_home.mkdir(parents=True, exist_ok=True)
        return await proc.run(self.argv(*args), env=self.env(), stdin=stdin, check=check)

    async def instance(self) -> dict[str, Any] | None:
        """The `locki` entry of `limactl list --json` (one object per line), or None."""
        result = await self.run("list", "--json")
        for line in result.stdout.splitlines():
            if line.strip():
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("name") == INSTANCE:
                    return entry
        return None

    def shell_argv(self, *command: str) -> list[str]:
        """Run `command` in the VM as the Lima user, from `/` (the host cwd may not exist)."""
        return self.argv("shell", "--workdir", "/", INSTANCE, "--", *command)

    async def shell(self, *command: str, stdin: bytes | None = None,
                    check: bool = True) -> proc.Completed:
        self.paths.lima_home.mkdir(parents=True, exist_ok=True)
        result = await proc.run(self.shell_argv(*command), env=self.env(), stdin=stdin,
                                check=False)
        if check and not result.ok:
            raise CommandFailed(result.argv, result.returncode, result.stderr)
        return result


def env_prefix(paths: Paths) -> list[str]:
    """`env LIMA_HOME=…`: for argv that run later through exec (`locki x`)."""
    return ["env", f"LIMA_HOME={paths.lima_home}"]


def host_os() -> str:
    return os.uname().sysname
