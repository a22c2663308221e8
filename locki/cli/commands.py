"""The commands. Each one edits desired state (or only reads), then converges.

Exit codes: 0 ok; 1 an expected failure; 2 usage; 3 unexpected (traceback logged);
4 the runtime could not be reached; 130 interrupted. `locki x` passes the command's
own code through, 125 when locki failed before running it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import structlog

from locki.bridge import client, gh, policy, server
from locki.bridge import facts as bridge_facts
from locki.cli import forwards, include, render
from locki.cli.select import Chosen, choose, create
from locki.core import activity, sandbox_exec
from locki.core import git as hostgit
from locki.core.errors import LockiError, RuntimeUnreachable, UsageError
from locki.core.paths import Paths
from locki.reconciler.apply import DestroysWork, apply
from locki.reconciler.context import Context
from locki.reconciler.converge import after_vm, converge, preview
from locki.reconciler.model import Plan
from locki.reconciler.observe import observe
from locki.resources import container, image, worktree
from locki.resources.model import Health
from locki.state.models import RepoConfig
from locki.state.store import load

log = structlog.get_logger("locki.cli")



async def cmd_new(ctx: Context, *, as_json: bool, branch: str | None,
                  stopped: bool = False) -> int:
    chosen = await create(ctx, Path.cwd(), branch_stem=branch, stopped=stopped)
    done = await converge(ctx, scope=frozenset({chosen.sandbox_id}))
    path = ctx.worktree(chosen.sandbox_id, chosen.spec)
    if (why := done.runtime_unreachable) is not None:
        raise RuntimeUnreachable(
            f"sandbox {chosen.sandbox_id} is recorded but could not be created: the runtime "
            f"could not be reached ({why})",
            hint=f"run `locki doctor`; then `locki apply` creates it, or "
                 f"`locki rm -m {chosen.sandbox_id}` drops it",
        )
    if as_json:
        print(json.dumps({"id": chosen.sandbox_id, "worktree": str(path),
                          "branch": chosen.spec.branch
                          or worktree.branch_name(chosen.sandbox_id)}))
    else:
        print(f"created sandbox {chosen.sandbox_id}\n  worktree: {path}\n"
              f"  enter it: locki x -m {chosen.sandbox_id}")
    return 0


async def prepare_exec(ctx: Context, *, match: str | None, new: bool, interactive: bool,
                       command: list[str]) -> list[str]:
    """Choose and converge the sandbox; return the argv that runs `command` in it."""
    cwd = Path.cwd()
    chosen: Chosen = await choose(ctx, match=match, new=new, cwd=cwd, interactive=interactive)
    sid = chosen.sandbox_id
    activity.touch(ctx.paths.state_dir, sid)
    # Twice at most: the daemon may stop it as idle just before this converges.
    for _ in range(2):
        if ctx.read_desired().sandbox.get(sid, chosen.spec).state != "running":
            with ctx.state.edit() as editor:
                editor.set_state(sid, "running")
        done = await converge(ctx, scope=frozenset({sid}))
        if (why := done.runtime_unreachable) is not None:
            raise LockiError(  # exit 1, so `locki x` exits 125: the command did not run
                f"sandbox {sid} cannot be entered: the runtime could not be reached ({why})",
                hint="run `locki doctor`; the command was not run",
            )
        now = ctx.read_desired().sandbox.get(sid)
        if now is None:
            raise LockiError(
                f"sandbox {sid} was retired: its worktree folder was deleted",
                hint="run the command again to get a new sandbox, or pick another with -m",
            )
        if now.state == "running":
            break
    root = ctx.worktree(sid, chosen.spec)
    return container.exec_argv(
        ctx.incus, container.container_name(sid),
        cwd=sandbox_exec.inside_cwd(cwd, root, chosen.spec.repo), command=command,
        env=sandbox_exec.exec_env(sid),
    )


async def cmd_list(ctx: Context, *, as_json: bool) -> int:
    desired = ctx.read_desired()
    observed = await observe(ctx, desired)
    rows: list[dict[str, Any]] = []
    for sid, spec in sorted(desired.sandbox.items()):
        wt = observed.worktrees.get(sid)
        box = observed.containers.get(sid)
        if not observed.runtime_known:
            state = "unknown"
        elif spec.state == "removed":
            state = "removing"
        else:
            state = box.status if box else "missing"
        rows.append({
            "id": sid,
            "repo": str(spec.repo),
            "branch": wt.branch if wt and wt.health is Health.OK else None,
            "worktree": str(ctx.worktree(sid, spec)),
            "state": state,
            "desired": spec.state,
            "image": spec.image,
            "forwards": [{"host": f.host, "guest": f.guest} for f in spec.forwards],
            "includes": include.listing(ctx, sid, spec, observed.includes),
        })
    if as_json:
        print(json.dumps(rows, indent=2))
    elif rows:
        shown = [{**row,
                  "forwards": " ".join(f"{f['host']}->{f['guest']}" for f in row["forwards"]),
                  "includes": " ".join(i["name"] for i in row["includes"])} for row in rows]
        columns = ["id", "state", "branch", "forwards", "worktree"]
        if any(row["includes"] for row in rows):
            columns.insert(4, "includes")
        print(render.table(shown, columns))
    else:
        print("No sandboxes yet: `locki x` in a repository creates one.", file=sys.stderr)
    if not observed.runtime_known and rows:
        raise RuntimeUnreachable(
            f"sandbox states are unknown: {observed.runtime_reason}",
            hint="run `locki doctor`",
        )
    return 0


async def cmd_plan(ctx: Context, *, as_json: bool, detailed_exitcode: bool) -> int:
    _, _, result = await preview(ctx)
    print(render.plan_json(result) if as_json else render.plan_text(result))
    if detailed_exitcode and (why := result.runtime_unreachable) is not None:
        # An unobserved runtime is no "in sync": CI gets 1 (main.run), never 0.
        raise RuntimeUnreachable(f"the plan is incomplete: the runtime could not be "
                                 f"observed ({why})", hint="run `locki doctor`")
    if detailed_exitcode and result.unknown:
        raise LockiError("the plan is incomplete: " + "; ".join(result.unknown),
                         hint="fix what is named (e.g. the repository's locki.toml: "
                         "`locki check`), then plan again")
    if detailed_exitcode and result.changes:
        return 2
    return 0


def confirm_destruction(result: Plan) -> bool:
    """Ask on a terminal before destroying work; without one, the answer is no."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print("These actions destroy work:", file=sys.stderr)
    for action in result.destructive:
        print(f"  {action.address}: {action.reason}", file=sys.stderr)
    print("Type `yes` to go on: ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip() == "yes"


async def cmd_apply(ctx: Context, *, force: bool) -> int:
    with ctx.writer():
        desired, _, result = await preview(ctx)
        if result.destructive and not force:
            force = confirm_destruction(result)
        await apply(ctx, desired, result, force=force)
        result = await after_vm(ctx, result, force=force)
    if (why := result.runtime_unreachable) is not None:
        done = (f"only what needs no runtime was applied ({result.summary()})"
                if result.changes else "nothing was changed")
        raise RuntimeUnreachable(f"the runtime could not be reached ({why}): {done}",
                                 hint="run `locki doctor`, then `locki apply` again")
    print(result.summary().replace("Plan:", "Applied:") if result.changes
          else result.summary())
    return 0


async def cmd_remove(ctx: Context, *, match: str | None, force: bool,
                     delete_branch: bool, interactive: bool = False) -> int:
    chosen = await choose(ctx, match=match, new=False, cwd=Path.cwd(), allow_create=False,
                          interactive=interactive, removing_too=True)
    sid, spec = chosen.sandbox_id, chosen.spec
    path = ctx.worktree(sid, spec)
    # Checked before anything is written: a refused removal changes nothing.
    found = await worktree.observe(spec.repo, {sid: path}, check_work={sid: delete_branch})
    risk = found[sid].at_risk if found[sid].health is Health.OK else None
    risks = [f"{risk} (worktree `{path}`)"] if risk else []
    for name in sorted(spec.include):
        lost = await include.work_at_risk(ctx, sid, spec, name, branches_go=delete_branch)
        risks += [f"include `{name}`: {lost}"] if lost else []
    if risks and not force:
        raise LockiError(
            f"sandbox {sid} would lose work: " + "; ".join(risks),
            hint="commit and push, or pass --force to delete it anyway",
        )
    with ctx.state.edit() as editor:
        before = editor.state.sandbox[sid]
        # With --force, written down first: a kill before the first journal entry
        # leaves a removal the next apply finishes without asking again.
        editor.set_state(sid, "removed", delete_branches=delete_branch, discard_work=force)
    try:
        await converge(ctx, scope=frozenset({sid}), force=force)
    except DestroysWork:
        # Work appeared after the check (the agent kept writing): undo the edit, so
        # the sandbox stays as it was, selectable and guarded.
        with ctx.state.edit() as editor:
            if editor.state.sandbox.get(sid) is not None:
                editor.set_state(sid, before.state, delete_branches=before.delete_branches,
                                 discard_work=before.discard_work)
        raise
    kept = "its branches were deleted" if delete_branch else "its branches are kept"
    print(f"removed sandbox {sid} ({kept})")
    return 0


def cmd_check(target: Path, *, as_json: bool) -> int:
    """Validate a repo's `locki.toml` without touching any runtime (for CI)."""
    path = (target / "locki.toml" if target.is_dir() else target).absolute()
    if target.is_dir() and not path.exists():
        # A repo without locki.toml is valid: every default applies.
        print(json.dumps({"file": None, "ok": True, "image": "default"}) if as_json
              else f"ok: no locki.toml in {target.absolute()} (defaults apply)")
        return 0
    if not path.is_file():
        raise LockiError(f"`{path}` does not exist",
                         hint="give the path of a locki.toml, or of the repo that holds one")
    try:
        config = load(path, RepoConfig)
    except LockiError as exc:
        if as_json:
            print(json.dumps({"file": str(path), "ok": False, "problem": exc.message}))
        raise
    resolved: str | image.Archive | None = None
    if config.incus_image:
        resolved = image.resolve(path.parent, config.incus_image)
    shown = (resolved.label if isinstance(resolved, image.Archive) else resolved) or "default"
    if as_json:
        print(json.dumps({"file": str(path), "ok": True, "image": shown}))
    else:
        print(f"ok: {path} (image: {shown})")
    return 0


async def cmd_daemon_status(paths: Paths, *, as_json: bool) -> int:
    answer = await client.ping(paths)
    want = server.code_version()
    state = "stopped" if answer is None else ("current" if answer == want else "outdated")
    if as_json:
        print(json.dumps({"state": state, "version": answer, "wanted": want,
                          "socket": str(paths.runtime_dir / server.SOCKET_NAME)}))
    elif answer is None:
        print("bridge daemon: not running (the next `locki x` or `locki apply` starts it)")
    else:
        print(f"bridge daemon: answers as {answer} ({state}) on "
              f"{paths.runtime_dir / server.SOCKET_NAME}")
    return 0 if answer is not None else 1


async def cmd_daemon_stop(paths: Paths) -> int:
    await client.stop(paths)
    print("bridge daemon: stopped")
    return 0


async def cmd_bridge_check(ctx: Context, *, match: str | None, cwd: Path | None,
                           argv: list[str]) -> int:
    """Evaluate the bridge policy for `argv` as the chosen sandbox would send it."""
    if not argv or argv[0] not in ("git", "gh"):
        raise UsageError("give the command after `--`, starting with `git` or `gh`",
                         hint="locki bridge check -- git push -u")
    chosen = await choose(ctx, match=match, new=False, cwd=Path.cwd(), allow_create=False)
    root = ctx.worktree(chosen.sandbox_id, chosen.spec)
    where = (cwd or root).absolute()
    try:  # the daemon's own cwd rule: inside the worktree, no `..`, no symlink followed
        os.close(server.open_inside(root, str(where)))
    except server.Refused as exc:
        print(f"denied: {exc}")
        return 1
    except OSError as exc:
        print(f"denied: the worktree `{root}` cannot be opened: {exc.strerror}")
        return 1
    # The same repository facts the daemon gathers (remotes, HEAD, gh's repository),
    # from local config only: nothing here reaches the network.
    admin = hostgit.admin_dir(await hostgit.common_dir(chosen.spec.repo), root)
    facts = await bridge_facts.gather(chosen.spec.repo, admin)
    caller = facts.caller(chosen.sandbox_id, root, where)
    check = gh.check_gh if argv[0] == "gh" else policy.check_git
    decision = check(argv[1:], caller)
    print(policy.explain(decision, program=argv[0]))
    if decision.allowed and argv[0] == "gh":
        print(f"(for GH_REPO={caller.github}, from the configured remotes, with your gh login)")
    return 0 if decision.allowed else 1


async def cmd_port_forward(ctx: Context, *, match: str | None, specs: list[str],
                           show: bool, clear: bool, remove: list[str], as_json: bool) -> int:
    """Edit the sandbox's forwards in the desired state, converge, print the URLs."""
    chosen = await choose(ctx, match=match, new=False, cwd=Path.cwd(), allow_create=False)
    sid = chosen.sandbox_id
    if clear or remove or specs:
        with ctx.state.edit() as editor:
            kept = [] if clear else forwards.drop(editor.state.sandbox[sid].forwards, remove)
            editor.set_forwards(sid, forwards.merge(editor.state, sid, kept, specs))
        await converge(ctx, scope=frozenset({sid}))
    current = ctx.read_desired().sandbox[sid].forwards
    if as_json:
        print(json.dumps([{"host": f.host, "guest": f.guest,
                           "url": f"http://localhost:{f.host}"} for f in current]))
    elif not current:
        print(f"sandbox {sid} has no port forwards", file=sys.stderr)
    for item in [] if as_json else current:
        print(f"http://localhost:{item.host} -> port {item.guest} in sandbox {sid}")
    return 0
