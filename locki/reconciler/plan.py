"""The planner: desired state + observed state -> ordered, typed actions. No I/O.

Every resource of every desired sandbox gets an action or a noop with a reason. While
the runtime is unknown nothing is destroyed. Order matters and is the apply order:
the VM first (Lima runtime), then the project, then templates, then per sandbox worktree
before container, deletions last.
"""

from __future__ import annotations

from dataclasses import replace

from locki.core.paths import include_mount
from locki.reconciler.journal import RESUMED_WITHOUT_ASKING
from locki.reconciler.model import Action, Kind, Observed, Plan
from locki.reconciler.template_plan import needed, plan_templates
from locki.resources import container as containers
from locki.resources import forward
from locki.resources.model import ContainerObs, Health, WorktreeObs
from locki.state.models import DesiredState, Include, SandboxSpec

PROJECT = "project"
DAEMON = "bridge.daemon"
VM = "vm"


def plan(desired: DesiredState, observed: Observed) -> Plan:
    first: list[Action] = []
    actions: list[Action] = []
    live = {sid: s for sid, s in desired.sandbox.items() if s.state != "removed"}
    if observed.vm is not None and (live or observed.vm.health is not Health.MISSING):
        first.append(_vm(observed, needed=bool(desired.sandbox)))
    if live:
        first.append(_project(observed))
        first.append(_daemon(observed))
    for sid, spec in sorted(desired.sandbox.items()):
        if spec.state == "removed":
            actions += _retire(sid, spec, observed, "sandbox removed")
        elif _folder_deleted(sid, observed):
            actions += _retire(sid, spec, observed, "its worktree folder was deleted")
        else:
            actions += _sandbox(sid, spec, observed)
    actions += _orphans(desired, observed)
    # Templates after the project, before the containers copied from them.
    retiring = {sid for sid in desired.sandbox if _folder_deleted(sid, observed)}
    actions = first + plan_templates(observed, needed(actions), retiring) + actions
    unknown = [f"runtime: {observed.runtime_reason}"] if not observed.runtime_known else []
    unknown += [f"sandbox {sid}: {w.reason}" for sid, w in sorted(observed.worktrees.items())
                if w.health is Health.UNKNOWN]
    # A repository's locki.toml that cannot be read: its sandboxes' templates are unknown.
    unknown += [f"sandbox {sid}: {why}" for sid, why in sorted(observed.want_problems.items())
                if sid in desired.sandbox]
    return Plan(tuple(_resume(actions, desired, observed)), tuple(unknown),
                interrupted=observed.interrupted, in_flight=observed.in_flight)


def _resume(actions: list[Action], desired: DesiredState,
            observed: Observed) -> list[Action]:
    """Removals the journal shows interrupted are finished without asking again.

    Their guard (no work to lose, or --force) passed when they began; what looks like
    uncommitted work now is the half-deleted folder itself. A sandbox whose removal was
    forced (`discard_work`, written by `remove --force` before it converges, or a journal
    entry begun with --force) has every deletion finished with --force.
    """
    begun = {(e.address, e.op) for e in observed.interrupted if e.op in RESUMED_WITHOUT_ASKING}
    gone = {sid for sid, spec in desired.sandbox.items() if spec.state == "removed"}
    forced = {sid for sid in gone if desired.sandbox[sid].discard_work}
    forced |= {e.sandbox for e in observed.interrupted
               if e.force and e.sandbox is not None
               and (e.sandbox in gone or e.sandbox not in desired.sandbox)}
    resumed: list[Action] = []
    for a in actions:
        if a.kind is Kind.DELETE and (a.address, a.op) in begun:
            a = replace(a, resumes=True, destructive=False,
                        reason=f"finish the interrupted removal ({a.reason})")
        elif a.kind is Kind.DELETE and a.sandbox in forced:
            why = f"removal forced with --force ({a.reason})" if a.destructive else a.reason
            a = replace(a, resumes=True, destructive=False, reason=why)
        resumed.append(a)
    return resumed


def _vm(observed: Observed, *, needed: bool) -> Action:
    """The Lima VM: created, rebuilt on config drift (only with --force), started (while
    some sandbox, even one being removed, needs it), provisioned."""
    machine = observed.vm
    assert machine is not None
    if machine.health is Health.UNKNOWN:
        return Action(VM, Kind.NOOP, "vm.create", f"unknown: {machine.reason}")
    if machine.health is Health.MISSING:
        return Action(VM, Kind.CREATE, "vm.create",
                      f"{machine.reason}; create it ({observed.vm_detail})")
    if machine.health is Health.BROKEN:
        return Action(VM, Kind.NOOP, "vm.create",
                      f"cannot use: {machine.reason}; `locki vm delete`, then `locki apply`")
    if machine.config_hash != observed.vm_wanted:
        changed = "; ".join(machine.drift) or \
            f"hash `{machine.config_hash}` -> `{observed.vm_wanted}`"
        return Action(VM, Kind.REPLACE, "vm.replace",
                      f"its config changed ({changed}; now {observed.vm_detail}): the VM and "
                      "the containers in it are rebuilt; "
                      "worktrees, the shared home and the desired state stay",
                      destructive=True)
    if not machine.running and not needed:
        return Action(VM, Kind.NOOP, "vm.start", f"{machine.reason}; no sandbox needs it")
    if not machine.running:
        return Action(VM, Kind.UPDATE, "vm.start", f"{machine.reason} -> running")
    if machine.pending:
        return Action(VM, Kind.UPDATE, "vm.provision",
                      f"provisioning steps not done: {', '.join(machine.pending)}")
    return Action(VM, Kind.NOOP, "vm.create", "running and provisioned")


def _project(observed: Observed) -> Action:
    if not observed.runtime_known:
        return Action(PROJECT, Kind.NOOP, "project.ensure",
                      f"runtime unknown: {observed.runtime_reason}")
    project = observed.project
    if project.health is Health.MISSING:
        return Action(PROJECT, Kind.CREATE, "project.ensure", project.reason)
    if project.health is Health.BROKEN:
        return Action(PROJECT, Kind.NOOP, "project.ensure", f"cannot use: {project.reason}")
    if not project.profile_ok:
        return Action(PROJECT, Kind.UPDATE, "project.ensure", project.reason)
    return Action(PROJECT, Kind.NOOP, "project.ensure", "project and profile present")


def _daemon(observed: Observed) -> Action:
    """The host daemon behind every sandbox's git: running this very code."""
    if not observed.runtime_known:
        return Action(DAEMON, Kind.NOOP, "bridge.daemon",
                      f"waits for the runtime: {observed.runtime_reason}")
    if observed.daemon is None:
        return Action(DAEMON, Kind.CREATE, "bridge.daemon", "not answering; start it")
    if observed.daemon != observed.daemon_wanted:
        return Action(DAEMON, Kind.REPLACE, "bridge.daemon",
                      f"runs `{observed.daemon}`, this locki is `{observed.daemon_wanted}`")
    return Action(DAEMON, Kind.NOOP, "bridge.daemon", f"answers as `{observed.daemon}`")


def _credential(sid: str, spec: SandboxSpec, obs: ContainerObs | None,
                observed: Observed, *, fresh: bool) -> Action:
    """The sandbox's own bridge key and client files, injected into its running container."""
    address = f"sandbox.{sid}.credential"
    if spec.state != "running":
        return Action(address, Kind.NOOP, "bridge.inject", "injected when the sandbox runs",
                      sid)
    want = observed.stamps.get(sid)
    have = obs.labels.get("bridge") if obs is not None and not fresh else None
    if fresh or obs is None:
        return Action(address, Kind.CREATE, "bridge.inject",
                      "give the new container its bridge credential", sid)
    if want is None or have != want:
        why = "none issued yet" if want is None else "missing or out of date in the container"
        return Action(address, Kind.UPDATE, "bridge.inject", why, sid)
    return Action(address, Kind.NOOP, "bridge.inject", "current", sid)


def _forwards(sid: str, spec: SandboxSpec, devices: dict[str, dict[str, str]]) -> list[Action]:
    """Each desired forward present exactly; each forward nobody wants removed."""
    have = forward.observed(devices)
    actions = []
    for item in spec.forwards:
        address = f"sandbox.{sid}.forward.{item.host}"
        if forward.complete(devices, item.host, item.guest):
            actions.append(Action(address, Kind.NOOP, "forward.add",
                                  f"localhost:{item.host} -> {item.guest}", sid))
        elif item.host in have:
            actions.append(Action(address, Kind.UPDATE, "forward.add",
                                  f"-> {have[item.host]} becomes -> {item.guest}", sid))
        else:
            actions.append(Action(address, Kind.CREATE, "forward.add",
                                  f"localhost:{item.host} -> {item.guest}", sid))
    wanted = {item.host for item in spec.forwards}
    actions += [Action(f"sandbox.{sid}.forward.{host}", Kind.DELETE, "forward.remove",
                       "not in the desired state", sid)
                for host in sorted(set(have) - wanted)]
    return actions


def _revoke(sid: str, observed: Observed) -> list[Action]:
    if observed.stamps.get(sid) is None:
        return []
    return [Action(f"sandbox.{sid}.credential", Kind.DELETE, "bridge.revoke",
                   "revoke the sandbox's bridge key first", sid)]


def _worktree(sid: str, obs: WorktreeObs | None) -> Action:
    address = f"sandbox.{sid}.worktree"
    if obs is None or obs.health is Health.MISSING:
        why = obs.reason if obs else "no worktree yet"
        return Action(address, Kind.CREATE, "worktree.create", why, sid)
    if obs.tampered:
        return Action(address, Kind.UPDATE, "worktree.restore_pointer",
                      f"{obs.tampered} (tampering?); restore it", sid)
    return Action(address, Kind.NOOP, "worktree.create", obs.reason, sid)


def _hooks(address: str, op: str, sid: str, obs: WorktreeObs | None,
           item: str | None = None) -> list[Action]:
    """Hooks sent to the container, for a worktree that exists (a new one is wired as it
    is made, a tampered one as its pointer is restored)."""
    if obs is None or obs.hooks is None or obs.health is not Health.OK or obs.tampered:
        return []
    return [Action(f"{address}.hooks", Kind.UPDATE, op,
                   f"{obs.hooks}; run its hooks in the container", sid, item=item)]


def _container(sid: str, spec: SandboxSpec, obs: ContainerObs | None,
               worktree: WorktreeObs | None, observed: Observed) -> list[Action]:
    address = f"sandbox.{sid}.container"
    if not observed.runtime_known:
        return [Action(address, Kind.NOOP, "container.create",
                       f"runtime unknown: {observed.runtime_reason}", sid)]
    if (obs is None or _replaced(spec, obs)) and sid not in observed.wants:
        why = observed.want_problems.get(sid, "its template is not known")
        return [Action(address, Kind.NOOP, "container.create", f"waits: {why}", sid)]
    if obs is None:
        state = "and start it" if spec.state == "running" else "stopped"
        key = observed.wants[sid].key
        return [Action(address, Kind.CREATE, "container.create",
                       f"no container; copy template `{key}` (image `{spec.image}`) {state}",
                       sid, item=key),
                _credential(sid, spec, obs, observed, fresh=True),
                *_forwards(sid, spec, {})]
    if _replaced(spec, obs):
        return [Action(address, Kind.REPLACE, "container.replace",
                       f"image `{obs.image}` -> `{spec.image}`; the container's own files "
                       "are lost (the worktree stays)", sid, destructive=True,
                       item=observed.wants[sid].key),
                _credential(sid, spec, obs, observed, fresh=True),
                *_forwards(sid, spec, {})]
    actions: list[Action] = []
    path = str(worktree.path) if worktree else None
    if path is not None and obs.worktree_source != path:
        actions.append(Action(f"{address}.device.worktree", Kind.UPDATE, "container.device",
                              f"worktree device missing or wrong; mount `{path}`", sid))
    if spec.state == "running" and not obs.running:
        actions.append(Action(address, Kind.UPDATE, "container.start",
                              f"{obs.status} -> running", sid))
    elif spec.state == "stopped" and obs.running:
        actions.append(Action(address, Kind.UPDATE, "container.stop", "running -> stopped", sid))
    if not actions:
        actions.append(Action(address, Kind.NOOP, "container.create", f"{obs.status}", sid))
    actions.append(_credential(sid, spec, obs, observed, fresh=False))
    return actions + _forwards(sid, spec, obs.devices)


def _replaced(spec: SandboxSpec, obs: ContainerObs) -> bool:
    """Whether the container is replaced by this plan (it loses its devices)."""
    return obs.image != spec.image


def _sandbox(sid: str, spec: SandboxSpec, observed: Observed) -> list[Action]:
    worktree = observed.worktrees.get(sid)
    if worktree is not None and worktree.health in (Health.BROKEN, Health.UNKNOWN):
        return [
            _worktree(sid, worktree),
            Action(f"sandbox.{sid}.container", Kind.NOOP, "container.create",
                   f"waits for the worktree: {worktree.reason}", sid),
        ]
    return [
        _worktree(sid, worktree),
        *_hooks(f"sandbox.{sid}.worktree", "worktree.hooks", sid, worktree),
        *_container(sid, spec, observed.containers.get(sid), worktree, observed),
        *_includes(sid, spec, worktree, observed),
    ]


def _includes(sid: str, spec: SandboxSpec, worktree: WorktreeObs | None,
              observed: Observed) -> list[Action]:
    """Each include's worktree, then its mount at `.locki/include/<name>` inside.

    A removed include (or one whose folder the user deleted) is unmounted, its worktree
    removed under the same guard as the sandbox's, and its entry dropped. Mounts nobody
    wants are removed.
    """
    actions: list[Action] = []
    box = observed.containers.get(sid)
    if box is not None and _replaced(spec, box):
        box = None  # the new container starts without any mount
    for name, include in sorted(spec.include.items()):
        obs = observed.includes.get(f"{sid}/{name}")
        deleted = (obs is not None and obs.health is Health.MISSING and obs.recorded)
        if include.state == "removed" or deleted:
            why = "include removed" if include.state == "removed" else \
                "its worktree folder was deleted"
            actions += _unmount(sid, name, box, observed, why)
            actions += _retire_include(sid, name, include, obs, why,
                                       pending=not observed.runtime_known)
            continue
        address = f"sandbox.{sid}.include.{name}"
        actions.append(_include_worktree(sid, name, obs))
        actions += _hooks(f"{address}.worktree", "include.hooks", sid, obs, item=name)
        if obs is None or obs.health in (Health.BROKEN, Health.UNKNOWN):
            actions.append(Action(f"{address}.mount", Kind.NOOP, "include.mount",
                                  f"waits for its worktree: {obs.reason if obs else '?'}",
                                  sid, item=name))
            continue
        actions.append(_mount(sid, name, obs, box, worktree, observed))
    # Removed includes' mounts were handled above; what else is mounted is unwanted.
    wanted = {containers.include_device(name) for name in spec.include}
    have = containers.include_devices(box.devices) if box is not None else {}
    actions += [Action(f"sandbox.{sid}.device.{device}", Kind.DELETE, "include.unmount",
                       f"mount of `{path}` is no longer wanted", sid, item=device)
                for device, (_, path) in sorted(have.items()) if device not in wanted]
    return actions


def _include_worktree(sid: str, name: str, obs: WorktreeObs | None) -> Action:
    address = f"sandbox.{sid}.include.{name}.worktree"
    if obs is None or obs.health is Health.MISSING:
        return Action(address, Kind.CREATE, "include.create",
                      obs.reason if obs else "no worktree yet", sid, item=name)
    if obs.tampered:
        return Action(address, Kind.UPDATE, "include.restore_pointer",
                      f"{obs.tampered} (tampering?); restore it", sid, item=name)
    return Action(address, Kind.NOOP, "include.create", obs.reason, sid, item=name)


def _mount(sid: str, name: str, obs: WorktreeObs, box: ContainerObs | None,
           worktree: WorktreeObs | None, observed: Observed) -> Action:
    address = f"sandbox.{sid}.include.{name}.mount"
    if not observed.runtime_known:
        return Action(address, Kind.NOOP, "include.mount",
                      f"runtime unknown: {observed.runtime_reason}", sid, item=name)
    if worktree is None:
        return Action(address, Kind.NOOP, "include.mount", "waits for the sandbox's worktree",
                      sid, item=name)
    want = (str(obs.path), str(include_mount(worktree.path, name)))
    have = containers.include_devices(box.devices).get(containers.include_device(name)) \
        if box is not None else None
    if have == want:
        return Action(address, Kind.NOOP, "include.mount", f"mounted at `{want[1]}`", sid,
                      item=name)
    kind = Kind.CREATE if have is None else Kind.UPDATE
    return Action(address, kind, "include.mount", f"mount `{want[0]}` at `{want[1]}`", sid,
                  item=name)


def _unmount(sid: str, name: str, box: ContainerObs | None, observed: Observed,
             why: str) -> list[Action]:
    device = containers.include_device(name)
    if not observed.runtime_known or box is None or device not in box.devices:
        return []
    return [Action(f"sandbox.{sid}.include.{name}.mount", Kind.DELETE, "include.unmount",
                   why, sid, item=device)]


def _retire_include(sid: str, name: str, include: Include, obs: WorktreeObs | None,
                    why: str, *, pending: bool, delete_branches: bool = False,
                    forget: bool = True) -> list[Action]:
    """Remove an include's worktree (guarded like the sandbox's), then its entry."""
    address = f"sandbox.{sid}.include.{name}"
    actions: list[Action] = []
    if pending and obs is not None and obs.health is Health.OK:
        actions.append(Action(f"{address}.worktree", Kind.NOOP, "include.remove",
                              "waits for the container to let go of it", sid, item=name))
    elif obs is not None and obs.health is Health.OK:
        risk = obs.at_risk
        actions.append(Action(f"{address}.worktree", Kind.DELETE, "include.remove",
                              f"{why}; {risk}" if risk else why, sid,
                              destructive=risk is not None, item=name))
    elif obs is not None and obs.health is Health.UNKNOWN:
        pending = True
        actions.append(Action(f"{address}.worktree", Kind.NOOP, "include.remove",
                              f"deletion waits: {obs.reason}", sid, item=name))
    elif obs is not None and obs.recorded:
        actions.append(Action(f"{address}.worktree", Kind.DELETE, "include.remove",
                              f"prune git's record ({obs.reason})", sid, item=name))
    if delete_branches and not pending:
        actions.append(Action(f"{address}.branches", Kind.DELETE, "include.branches",
                              f"delete every `*#locki-{sid}` branch of `{include.repo}`",
                              sid, item=name))
    if forget and not pending:
        actions.append(Action(address, Kind.DELETE, "include.forget",
                              "drop the include from the desired state", sid, item=name))
    return actions


def _folder_deleted(sid: str, observed: Observed) -> bool:
    """A sandbox that was created, whose worktree folder the user then deleted.

    Evidence of creation: git still records the worktree, or its container exists. A
    sandbox with neither was never made, and is simply created.
    """
    worktree = observed.worktrees.get(sid)
    if worktree is None or worktree.health is not Health.MISSING:
        return False
    return worktree.recorded or sid in observed.containers


def _retire(sid: str, spec: SandboxSpec, observed: Observed, why: str) -> list[Action]:
    """Key, container, then worktree (and branches when asked), then the state entry."""
    actions: list[Action] = _revoke(sid, observed)
    pending = False
    container = observed.containers.get(sid)
    if not observed.runtime_known:
        pending = True
        actions.append(Action(f"sandbox.{sid}.container", Kind.NOOP, "container.delete",
                              f"runtime unknown, deletion waits: {observed.runtime_reason}",
                              sid))
    elif container is not None:
        actions.append(Action(f"sandbox.{sid}.container", Kind.DELETE, "container.delete",
                              why, sid))
    worktree = observed.worktrees.get(sid)
    if pending and worktree is not None and worktree.health is not Health.MISSING:
        # The container may still mount the worktree: it goes first.
        actions.append(Action(f"sandbox.{sid}.worktree", Kind.NOOP, "worktree.remove",
                              "waits for the container to be deleted", sid))
    elif worktree is not None and worktree.health is Health.OK:
        risk = worktree.at_risk
        actions.append(Action(f"sandbox.{sid}.worktree", Kind.DELETE, "worktree.remove",
                              f"{why}; {risk}" if risk else why, sid,
                              destructive=risk is not None))
    elif worktree is not None and worktree.health is Health.UNKNOWN:
        pending = True
        actions.append(Action(f"sandbox.{sid}.worktree", Kind.NOOP, "worktree.remove",
                              f"deletion waits: {worktree.reason}", sid))
    elif worktree is not None and worktree.recorded:
        actions.append(Action(f"sandbox.{sid}.worktree", Kind.DELETE, "worktree.remove",
                              f"prune git's record ({worktree.reason})", sid))
    for name, include in sorted(spec.include.items()):
        # The container (deleted above, or unknown) no longer holds the include's mount.
        include_actions = _retire_include(
            sid, name, include, observed.includes.get(f"{sid}/{name}"), why,
            pending=pending or not observed.runtime_known,
            delete_branches=spec.delete_branches, forget=False)
        pending = pending or any(a.kind is Kind.NOOP for a in include_actions)
        actions += include_actions
    if spec.delete_branches and not pending:
        actions.append(Action(f"sandbox.{sid}.branches", Kind.DELETE, "branches.delete",
                              f"delete every `*#locki-{sid}` branch, as asked", sid))
    if not pending:
        actions.append(Action(f"sandbox.{sid}", Kind.DELETE, "state.forget",
                              "drop the entry from the desired state", sid))
    return actions


def _orphans(desired: DesiredState, observed: Observed) -> list[Action]:
    """Containers of this installation that no desired sandbox owns."""
    actions: list[Action] = []
    if not observed.runtime_known:
        return actions  # what is not seen is never destroyed
    for sid in sorted(observed.containers):
        if sid not in desired.sandbox:
            actions += _revoke(sid, observed)
            # Destructive: what was installed inside goes, and an emptied or truncated
            # `sandboxes.toml` must not silently take every container with it.
            actions.append(Action(f"sandbox.{sid}.container", Kind.DELETE, "container.delete",
                                  "not in the desired state", sid, destructive=True))
    return actions
