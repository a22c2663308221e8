"""Which template each sandbox is copied from, and building one: observe and apply's part.

A sandbox's template follows from its image (by content where Incus or the archive
tells it: an alias is resolved to its fingerprint), `provision.SETUP_VERSION` and the
`setup` of its repo's `locki.toml`, read from the primary checkout like all repo config.
Observing reports a reason instead of raising, so an unreadable `locki.toml` holds that
sandbox's container back and keeps every template (nothing is collected while unsure).
"""

from __future__ import annotations

import os
from pathlib import Path

from locki.core.errors import LockiError
from locki.reconciler.context import Context
from locki.resources import container, image, project, provision, template
from locki.resources.provision import Want
from locki.state.models import DesiredState, RepoConfig, SandboxSpec
from locki.state.store import load


async def _image_id(ctx: Context, spec: SandboxSpec) -> str:
    """What identifies the image's content: an archive's or alias's fingerprint, or the
    reference itself for a remote image (its content is known only once pulled)."""
    resolved = image.resolve(spec.repo, spec.image)
    if isinstance(resolved, image.Archive):
        return image.FingerprintCache(ctx.paths.image_cache).get(resolved)
    if ":" in resolved:
        return resolved
    # locki's projects use the default project's images (features.images=false), and
    # asking there works before locki's own project exists.
    alias = await ctx.incus.query(f"/1.0/images/aliases/{resolved}?project=default",
                                  missing_ok=True)
    if alias is None:
        return resolved  # a fingerprint, or a name `incus create` will explain
    return str(alias.get("target", resolved))


def _cgroup_v1() -> bool:
    """Whether the machine Incus runs on has no unified cgroup hierarchy.
    # Shortcoming: asks this machine, which is right for the host-Incus runtime; the
    # Lima runtime asks its VM once it exists.
    """
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


def _repo_setup(repo: Path) -> list[str]:
    return load(repo / "locki.toml", RepoConfig).setup


async def want(ctx: Context, spec: SandboxSpec, *, image_ids: dict[str, str] | None = None
               ) -> Want:
    """The template `spec` is copied from. Raises LockiError when it cannot be told."""
    cache = image_ids if image_ids is not None else {}
    ref = f"{spec.repo}\0{spec.image}"
    if ref not in cache:
        cache[ref] = await _image_id(ctx, spec)
    setup = _repo_setup(spec.repo)
    steps = provision.steps(cache_dir=ctx.paths.cache, worktrees=ctx.paths.worktrees,
                            repo_setup=setup, cgroup_v1=_cgroup_v1())
    key = provision.template_key(cache[ref], setup, ctx.installation_id)
    return Want(key, spec.image, cache[ref], steps)


async def wants(ctx: Context, desired: DesiredState) -> tuple[dict[str, Want], dict[str, str]]:
    """Per live sandbox, its template, or why it could not be told."""
    found: dict[str, Want] = {}
    problems: dict[str, str] = {}
    image_ids: dict[str, str] = {}
    for sid, spec in sorted(desired.sandbox.items()):
        if spec.state == "removed":
            continue
        try:
            found[sid] = await want(ctx, spec, image_ids=image_ids)
        except LockiError as exc:
            problems[sid] = exc.message
    return found, problems


async def _source(ctx: Context, spec: SandboxSpec) -> str:
    """What `incus create` gets: the reference as-is, or an imported archive's fingerprint."""
    resolved = image.resolve(spec.repo, spec.image)
    if isinstance(resolved, str):
        return resolved
    if not ctx.runtime.client_on_host():
        # Shortcoming: the VM's own client cannot read the repo (the VM sees only the
        # worktrees root and the shared home). It can go once archives are copied in
        # with `limactl copy` first.
        raise LockiError(
            f"the image archive `{resolved.label}` cannot be imported: without an `incus` "
            "client on this host, Incus runs in the VM, which does not see the repository",
            hint="install the Incus client on the host (macOS: brew install incus)",
        )
    return await image.ensure(ctx.incus, resolved, image.FingerprintCache(ctx.paths.image_cache),
                              owner=ctx.installation_id)


async def build(ctx: Context, desired: DesiredState, key: str) -> None:
    """Bring template `key` up to date, for the sandboxes of `desired` that use it."""
    for spec in desired.sandbox.values():
        if spec.state == "removed":
            continue
        wanted = await want(ctx, spec)
        if wanted.key != key:
            continue
        ctx.ensure_cache()
        await provision.fetch_mise(ctx.paths.cache)
        spec_t = template.TemplateSpec(
            want=wanted, installation_id=ctx.installation_id, profile=project.PROFILE,
            source=await _source(ctx, spec),
            # The copies' own idmap, so that starting one never remaps its whole rootfs.
            config=container.idmap_config(os.getuid(), os.getgid()),
        )
        await template.ensure(ctx.incus, spec_t,
                              staging=ctx.runtime.staging_dir(ctx.paths))
        return
    raise LockiError(
        f"no sandbox needs template `{key}` any more (the repo setup or image changed "
        "since the plan)",
        hint="run `locki apply` again",
    )

