"""Everything observe and apply need to reach the world, gathered once per command."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from locki.core import runtime
from locki.core.errors import LockiError
from locki.core.ids import is_sandbox_id, new_id
from locki.core.incus import Incus
from locki.core.paths import Paths
from locki.resources import container, project
from locki.state.models import DesiredState, SandboxSpec, UserConfig
from locki.state.store import StateFile, load


@dataclass(frozen=True)
class Context:
    paths: Paths
    runtime: runtime.Runtime
    incus: Incus
    installation_id: str
    project: project.ProjectSpec
    state: StateFile
    config: UserConfig
    identity_persisted: bool = True

    def worktree(self, sandbox_id: str, spec: SandboxSpec) -> Path:
        return self.paths.worktree_for(spec.repo, sandbox_id)

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


def installation_id(paths: Paths) -> tuple[str, bool]:
    """This installation's id (it names the Incus project) and whether it is on disk.

    A fresh id is only written by the first apply that changes something, so commands
    that fail on bad input leave no file behind.
    """
    try:
        value = paths.installation_id_file.read_text().strip()
    except FileNotFoundError:
        return new_id(), False
    if not is_sandbox_id(value):
        raise LockiError(
            f"`{paths.installation_id_file}` does not hold an installation id",
            hint="restore it from a backup, or delete it if this installation has no sandboxes",
        )
    return value, True


def persist_installation_id(paths: Paths, value: str) -> None:
    path = paths.installation_id_file
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two first runs at once, only one id lands; the other run stops.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        if path.read_text().strip() != value:
            raise LockiError(
                "another locki command initialised this installation at the same moment",
                hint="run the command again",
            ) from None
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")


def build(paths: Paths, *, runtime_flag: str | None = None) -> Context:
    config = load(paths.user_config, UserConfig)
    rt = runtime.choose(runtime_flag, config.runtime)
    iid, persisted = installation_id(paths)
    spec = project.ProjectSpec(
        name=project.project_name(iid),
        installation_id=iid,
        storage_pool=config.incus.storage_pool,
        network=config.incus.network,
    )
    lock = paths.private_runtime_dir() / "state.lock"
    return Context(
        paths=paths,
        runtime=rt,
        incus=Incus(rt.incus_prefix(), spec.name),
        installation_id=iid,
        project=spec,
        state=StateFile(paths.desired_state, lock),
        config=config,
        identity_persisted=persisted,
    )
