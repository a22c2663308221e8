"""Everything observe and apply need to reach the world, gathered once per command."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from locki.core import git as hostgit
from locki.core import lima, lock, runtime
from locki.core.errors import LockiError
from locki.core.ids import is_sandbox_id, new_id
from locki.core.incus import Incus
from locki.core.paths import Paths
from locki.resources import bridge, container, hooks, project, provision, vm
from locki.state.models import DesiredState, SandboxSpec, UserConfig
from locki.state.store import StateFile, load

DEFAULT_LOCK_TIMEOUT = 300.0
CACHE_DEVICE = "locki-cache"


class Context:
    """The world as one command sees it. The installation id is read lazily, so a command
    that waited for the writer lock sees the id a first command wrote meanwhile."""

    def __init__(self, *, paths: Paths, runtime: runtime.Runtime, state: StateFile,
                 config: UserConfig, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.paths = paths
        self.runtime = runtime
        self.state = state
        self.config = config
        self.lock_timeout = lock_timeout
        self._prefix = runtime.incus_prefix()
        self._id: str | None = None
        self._provisional = new_id()
        self.writing = False  # holds the writer lock: journal entries are then its own

    @property
    def installation_id(self) -> str:
        if self._id is None:
            stored = read_installation_id(self.paths)
            if stored is None:
                return self._provisional
            self._id = stored
        return self._id

    @property
    def identity_persisted(self) -> bool:
        return self._id is not None or read_installation_id(self.paths) is not None

    def persist_identity(self) -> None:
        """Write the provisional id, unless another command wrote one first (then use it)."""
        if not self.identity_persisted:
            persist_installation_id(self.paths, self._provisional)
        self._id = read_installation_id(self.paths)

    @property
    def project(self) -> project.ProjectSpec:
        iid = self.installation_id
        return project.ProjectSpec(
            name=project.project_name(iid),
            installation_id=iid,
            storage_pool=self.config.incus.storage_pool,
            network=self.config.incus.network,
            extra_devices=(
                (bridge.DEVICE, tuple(bridge.profile_device(
                    self.paths, self.runtime.bridge_socket(self.paths)).items())),
                (CACHE_DEVICE, tuple(self._cache_device().items())),
            ),
            extra_config=self._profile_config(),
        )

    def _cache_device(self) -> dict[str, str]:
        """One disk device with every sandbox's package caches (npm, pip, cargo, ...)."""
        device = {"type": "disk", "source": self.runtime.cache_source(self.paths),
                  "path": provision.CACHE}
        return {**device, "shift": "true"} if os.getuid() == 0 else device

    def _profile_config(self) -> tuple[tuple[str, str], ...]:
        # No system-call interception (mknod, setxattr): podman inside needs none on a
        # kernel that mounts overlayfs in a user namespace (5.11+), and intercepting
        # made `incus exec` right after a start fail now and then ("Failed to retrieve
        # PID of executing child process").
        if self.config.incus.privileged:  # the user's config only: a repo cannot ask
            return (("security.privileged", "true"),)
        return ()

    def ensure_cache(self) -> None:
        """The shared cache folder, where it is on this host (the VM makes its own)."""
        if self.runtime.cache_source(self.paths) == str(self.paths.sandbox_cache):
            self.paths.sandbox_cache.mkdir(parents=True, exist_ok=True)

    @property
    def limactl(self) -> lima.Limactl | None:
        """The VM's `limactl`, or None when the runtime is the host's own Incus."""
        return lima.Limactl(self.paths) if self.runtime.name == "lima" else None

    @property
    def vm_spec(self) -> vm.VmSpec:
        size = self.config.vm
        return vm.sized_from_host(self.paths, cpus=size.cpus, memory_gib=size.memory_gib,
                                  disk_gib=size.disk_gib,
                                  bridge_guest_socket=self.runtime.bridge_socket(self.paths))

    @property
    def incus(self) -> Incus:
        return Incus(self._prefix, self.project.name)

    def worktree(self, sandbox_id: str, spec: SandboxSpec) -> Path:
        return self.paths.worktree_for(spec.repo, sandbox_id)

    def include(self, sandbox_id: str, spec: SandboxSpec, name: str) -> Path:
        return self.paths.include_for(spec.repo, sandbox_id, name)

    def hook_trampoline(self, sandbox_id: str, common: Path, top: Path) -> str:
        """The hook trampoline of worktree `top` (`locki.resources.hooks`): it runs
        `locki.cli.hook` with this installation's folders and runtime, whoever's git
        calls it (the bridge's is started with an environment built from scratch)."""
        env = {**self.paths.xdg_env(), "LOCKI_RUNTIME": self.runtime.name}
        return hooks.script(sandbox_id=sandbox_id, common=common, top=top,
                            python=sys.executable, env=env)

    async def wire_hooks(self, sandbox_id: str, repo: Path, top: Path) -> None:
        common = await hostgit.common_dir(repo)
        await hooks.wire(common, top, self.paths.hooks_for(top),
                         self.hook_trampoline(sandbox_id, common, top), sandbox_id=sandbox_id)

    def container_spec(self, sandbox_id: str, spec: SandboxSpec) -> container.ContainerSpec:
        return container.ContainerSpec(
            sandbox_id=sandbox_id,
            installation_id=self.installation_id,
            image=spec.image,
            repo=spec.repo,
            worktree=self.worktree(sandbox_id, spec),
            profile=project.PROFILE,
        )

    def read_desired(self) -> DesiredState:
        return self.state.read()

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Held while applying: one command changes the world at a time."""
        with lock.exclusive(self.writer_lock, timeout=self.lock_timeout,
                            purpose="applying changes"):
            self.writing = True
            try:
                yield
            finally:
                self.writing = False

    @property
    def writer_lock(self) -> Path:
        return self.paths.private_runtime_dir() / "apply.lock"

    @contextmanager
    def try_writer(self, holder: str) -> Iterator[bool]:
        """The writer lock if it is free right now (yields whether it was taken), for
        the daemon's background loop, which never waits for a command."""
        with lock.try_exclusive(self.writer_lock, command=holder) as taken:
            self.writing = taken
            try:
                yield taken
            finally:
                self.writing = False


def read_installation_id(paths: Paths) -> str | None:
    """This installation's id (it names the Incus project), or None before the first apply.

    A fresh id is only written by the first apply that changes something, so commands
    that fail on bad input leave no file behind.
    """
    try:
        value = paths.installation_id_file.read_text().strip()
    except FileNotFoundError:
        return None
    if not is_sandbox_id(value):
        raise LockiError(
            f"`{paths.installation_id_file}` does not hold an installation id",
            hint="restore it from a backup, or delete it if this installation has no sandboxes",
        )
    return value


def persist_installation_id(paths: Paths, value: str) -> None:
    path = paths.installation_id_file
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two first runs at once only one id lands; the other adopts it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")


def build(paths: Paths, *, runtime_flag: str | None = None,
          lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Context:
    config = load(paths.user_config, UserConfig)
    return Context(
        paths=paths,
        runtime=runtime.choose(runtime_flag, config.runtime, paths),
        state=StateFile(paths.desired_state, paths.private_runtime_dir() / "state.lock",
                        lock_timeout=lock_timeout, ledger=paths.sandbox_ledger),
        config=config,
        lock_timeout=lock_timeout,
    )
