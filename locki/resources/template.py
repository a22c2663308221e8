"""Templates: instances that hold the sandbox setup, copied (CoW) into new sandboxes.

One template per (image, setup version, repository setup), named
`locki-template-<key>` and labelled with this installation's `user.locki.*` keys.
Each step of the setup (see `provision`) leaves a marker, the instance config key
`user.locki.step.<name>` holding the step's version, written in the same call as the
step's own config and only after its files and commands succeeded. `ensure` re-runs the
first step whose marker is missing or of another version, and every step after it, so
a failed step is run again on the next apply, never skipped. `user.locki.ready` is
removed before any step runs and set last, after the template was stopped: a template
without it is never copied from. Templates hold no credentials; the bridge key is
injected into each sandbox after the copy.

Steps that only put files run on the stopped instance (`incus file push` needs no
running container); the template is started only for commands, and then gets an empty
machine-id before it stops, so every copy makes its own at first boot.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from locki.core.errors import CommandFailed, LockiError
from locki.core.incus import Incus
from locki.resources.provision import File, Step, Want

PREFIX = "user.locki."
KEY = PREFIX + "template"
STEP = PREFIX + "step."
READY = PREFIX + "ready"
FAIL_KNOB = "LOCKI_TEST_FAIL_STEP"  # tests only: the named step fails after its work
log = structlog.get_logger("locki.resources.template")


def template_name(key: str) -> str:
    return f"locki-template-{key}"


@dataclass(frozen=True)
class TemplateObs:
    key: str
    name: str
    status: str
    ready: bool
    steps: dict[str, str] = field(default_factory=dict)  # step name -> version done

    def stale(self, want: Want) -> list[str]:
        """The steps to run: from the first whose marker does not match, to the end."""
        names = [step.name for step in want.steps]
        for index, step in enumerate(want.steps):
            if self.steps.get(step.name) != step.version:
                return names[index:]
        return []


@dataclass(frozen=True)
class TemplateSpec:
    want: Want
    installation_id: str
    profile: str
    source: str  # what `incus create` gets: a reference, alias or fingerprint
    config: Mapping[str, str] = field(default_factory=dict)  # e.g. raw.idmap

    @property
    def name(self) -> str:
        return template_name(self.want.key)


def parse(instance: Mapping[str, Any], installation_id: str) -> TemplateObs | None:
    """An observation of `instance` if it is one of this installation's templates."""
    config = instance.get("config") or {}  # null while Incus creates it
    key = config.get(KEY)
    if config.get(PREFIX + "installation") != installation_id or not key \
            or config.get(PREFIX + "sandbox"):
        return None
    return TemplateObs(
        key=key, name=str(instance["name"]), status=str(instance.get("status", "")).lower(),
        ready=bool(config.get(READY)),
        steps={k.removeprefix(STEP): v for k, v in config.items() if k.startswith(STEP)},
    )


async def observe_one(incus: Incus, name: str, installation_id: str) -> TemplateObs | None:
    found = await incus.query(f"/1.0/instances/{name}?project={incus.project}",
                              missing_ok=True)
    return parse(found, installation_id) if found else None


async def ensure(incus: Incus, spec: TemplateSpec, *, staging: Path) -> None:
    """Create the template if missing and run every step not done at its version.
    `staging`: a host folder the `incus` client reads files from (see `_push`)."""
    current = await observe_one(incus, spec.name, spec.installation_id)
    if current is None:
        await _create(incus, spec)
        current = TemplateObs(spec.want.key, spec.name, "stopped", ready=False)
    todo = current.stale(spec.want)
    if not todo and current.ready:
        log.debug("template.ready", template=spec.name)
        return
    if current.ready:
        await incus.run("config", "unset", spec.name, READY)
    started = current.status == "running"
    for step in spec.want.steps:
        if step.name not in todo:
            continue
        if step.commands and not started:
            await incus.run("start", spec.name)
            started = True
        await _run_step(incus, spec, step, staging)
    if started:
        await _forget_machine_id(incus, spec.name)
        await incus.run("stop", spec.name)
    await incus.run("config", "set", spec.name, f"{READY}={_digest(spec.want)}")
    log.info("template.built", template=spec.name, image=spec.want.image, steps=todo)


def _digest(want: Want) -> str:
    return ",".join(f"{name}:{version}" for name, version in want.versions.items())


async def _create(incus: Incus, spec: TemplateSpec) -> None:
    labels = {PREFIX + "installation": spec.installation_id, KEY: spec.want.key,
              PREFIX + "image": spec.want.image, PREFIX + "image-id": spec.want.image_id}
    args = ["create", "--quiet", spec.source, spec.name, "--profile", spec.profile]
    for key, value in {**labels, **spec.config}.items():
        args += ["--config", f"{key}={value}"]
    try:
        await incus.run(*args)
    except CommandFailed as exc:
        if "already exists" not in exc.stderr:
            raise
    log.info("template.created", template=spec.name, image=spec.want.image)


async def _run_step(incus: Incus, spec: TemplateSpec, step: Step, staging: Path) -> None:
    log.info("template.step", template=spec.name, step=step.name, version=step.version)
    if step.files:
        await _push(incus, spec.name, step, staging)
    for command in step.commands:
        result = await incus.run("exec", spec.name, "--cwd", "/", "--", "sh", "-c", command,
                                 check=False)
        if not result.ok:
            output = (result.stderr or result.stdout).strip()[-500:]
            raise LockiError(
                f"setup step `{step.name}` (`{command}`) failed in template `{spec.name}` "
                f"with exit code {result.returncode}: {output}",
                hint="fix `setup` in the repo's locki.toml (or the cause), then run "
                "`locki apply`: the step runs again",
            )
    if os.environ.get(FAIL_KNOB) == step.name:
        raise LockiError(f"setup step `{step.name}` failed: {FAIL_KNOB} is set")
    marks = [f"{k}={v}" for k, v in step.config] + [f"{STEP}{step.name}={step.version}"]
    await incus.run("config", "set", spec.name, *marks)


async def _push(incus: Incus, name: str, step: Step, staging: Path) -> None:
    """Push the step's files from a staged tree (the instance need not run for that).

    A recursive push gives every file and folder it names the staged one's numeric
    owner, existing folders such as /etc and /usr included, and refuses --uid/--gid.
    Staged by root that is right, and one process pushes the lot; staged by another
    user (a Mac's 501, a Linux 1000) each file is pushed alone as root's, its missing
    folders made as root's, so nothing in the image changes owner."""
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging, prefix=".stage-") as tmp:
        root = Path(tmp)
        for item in step.files:
            _stage(root, item)
        if os.getuid() != 0:
            for item in step.files:
                await incus.run("file", "push", "--quiet", "--create-dirs", "--uid", "0",
                                "--gid", "0", "--mode", f"{item.mode:04o}",
                                str(root / item.path.lstrip("/")), f"{name}{item.path}")
            return
        tops = sorted(str(p) for p in root.iterdir() if p.is_dir())
        files = sorted(str(p) for p in root.iterdir() if p.is_file())
        if tops:
            await incus.run("file", "push", "--quiet", "-r", *tops, f"{name}/")
        for top_file in files:
            await incus.run("file", "push", "--quiet", "--uid", "0", "--gid", "0",
                            top_file, f"{name}/")


def _stage(root: Path, item: File) -> None:
    """Put `item` under `root` at its path; folders 0755, as in any image."""
    target = root / item.path.lstrip("/")
    for folder in reversed(target.relative_to(root).parents):
        (root / folder).mkdir(mode=0o755, exist_ok=True)
        (root / folder).chmod(0o755)
    if item.source is not None:
        try:
            os.link(item.source, target)  # same disk: no copy of a big binary
        except OSError:
            shutil.copyfile(item.source, target)
    else:
        target.write_text(item.text, encoding="utf-8")
    target.chmod(item.mode)


async def _forget_machine_id(incus: Incus, name: str) -> None:
    await incus.run("exec", name, "--", "sh", "-c",
                    ": > /etc/machine-id; rm -f /var/lib/dbus/machine-id; sync")


async def delete(incus: Incus, key: str) -> None:
    name = template_name(key)
    result = await incus.run("delete", "--force", name, check=False)
    if not result.ok and "not found" not in result.stderr.lower():
        await incus.run("delete", "--force", name)
    log.info("template.deleted", template=name)
