"""The planner, tested from data: each file under cases/plan/<driver>/ is one case.

A case gives a desired fragment and an observed world, and the exact list of
(address, action) the plan must contain, in order. Noops must carry a reason; a case
that expects nothing fails, so every case pins down behaviour.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from locki.reconciler.journal import Entry
from locki.reconciler.model import Kind, Observed
from locki.reconciler.plan import plan
from locki.resources.model import ContainerObs, Health, ProjectObs, WorktreeObs
from locki.resources.provision import Step, Want
from locki.resources.template import TemplateObs
from locki.resources.vm import VmObs
from locki.state.models import DesiredState

CASES = sorted((Path(__file__).parent / "cases" / "plan").glob("*/*.toml"))


def _worktree(w: dict[str, Any]) -> WorktreeObs:
    return WorktreeObs(
        path=Path(w["path"]), health=Health(w["health"]), reason=w.get("reason", "seen"),
        branch=w.get("branch"), dirty=w.get("dirty"), lost_commits=w.get("lost_commits"),
        recorded=w.get("recorded", False), tampered=w.get("tampered"),
    )


def _observed(data: dict[str, Any], desired_ids: set[str], live: set[str]) -> Observed:
    runtime = Health(data.get("runtime", "ok"))
    project = data.get("project", {"health": "ok", "profile_ok": True})
    containers = {
        sid: ContainerObs(
            name=f"locki-{sid}", sandbox_id=sid, running=c.get("status") == "running",
            status=c.get("status", "running"), image=c.get("image"),
            worktree_source=c.get("worktree_source"),
            labels={"bridge": c["bridge"]} if "bridge" in c else {"bridge": "stamp"},
            devices=c.get("devices", {}),
        )
        for sid, c in data.get("containers", {}).items()
    }
    worktrees = {sid: _worktree(w) for sid, w in data.get("worktrees", {}).items()}
    includes = {key: _worktree(w) for key, w in data.get("includes", {}).items()}
    # By default every sandbox of the case is copied from the ready template `t0`.
    wanted = data.get("wants", {sid: "t0" for sid in live})
    wants = {sid: _want(key, data) for sid, key in wanted.items()}
    present = {"t0": {"ready": True}} if wants else {}
    templates = {key: _template(key, t) for key, t in data.get("templates", present).items()}
    return Observed(
        runtime=runtime,
        runtime_reason=data.get("runtime_reason", "reachable"),
        project=ProjectObs(Health(project["health"]), project.get("reason", "seen"),
                           project.get("profile_ok", False)),
        containers=containers,
        worktrees=worktrees,
        includes=includes,
        # By default the daemon runs this code and every credential is current.
        daemon=data.get("daemon", "v1") or None,
        daemon_wanted="v1",
        stamps=data.get("stamps", {sid: "stamp" for sid in desired_ids}),
        interrupted=tuple(_entry(e) for e in data.get("interrupted", [])),
        templates=templates,
        wants=wants,
        want_problems=data.get("want_problems", {}),
        vm=_vm(data["vm"]) if "vm" in data else None,
        vm_wanted="hash-now",
        vm_detail="qemu, 2 CPUs, 4 GiB memory, 100 GiB disk",
    )


def _entry(e: dict[str, Any]) -> Entry:
    """A journal entry left by a run that died: what it was doing is all a case gives."""
    return Entry(address=e["address"], op=e["op"], sandbox=e.get("sandbox"), item=None,
                 pid=4242, host="host", command="locki rm", started=0.0,
                 force=e.get("force", False))


def _want(key: str, data: dict[str, Any]) -> Want:
    """Template `key`: steps `a` and `b` at version 1 unless the case says otherwise."""
    steps = data.get("template_steps", {}).get(key, {"a": "1", "b": "1"})
    return Want(key, "img", "img", tuple(_Step(name, v) for name, v in steps.items()))


@dataclass(frozen=True)
class _Step(Step):
    """A step whose version the case states (real steps derive it from their content)."""

    fixed: str = ""

    def __init__(self, name: str, version: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "files", ())
        object.__setattr__(self, "config", ())
        object.__setattr__(self, "commands", ())
        object.__setattr__(self, "pin", "")
        object.__setattr__(self, "fixed", version)

    @property
    def version(self) -> str:
        return self.fixed


def _template(key: str, t: dict[str, Any]) -> TemplateObs:
    steps = t.get("steps", {"a": "1", "b": "1"} if t.get("ready") else {})
    return TemplateObs(key, f"locki-template-{key}", t.get("status", "stopped"),
                       ready=t.get("ready", False), steps=steps)


def _vm(v: dict[str, Any]) -> VmObs:
    """The Lima VM (cases without `[observed.vm]` use the host's Incus)."""
    return VmObs(Health(v.get("health", "ok")), v.get("reason", "seen"), v.get("status"),
                 v.get("config_hash", "hash-now"), tuple(v.get("pending", ())),
                 drift=tuple(v.get("drift", ())))


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_plan_case(path: Path) -> None:
    case = tomllib.loads(path.read_text())
    expected = case.get("expect", [])
    assert expected, f"{path.name} expects nothing; every case must pin down the plan"
    desired = DesiredState.model_validate(case.get("desired", {}))
    ids = set(desired.sandbox) | set(case.get("observed", {}).get("containers", {}))
    live = {sid for sid, spec in desired.sandbox.items() if spec.state != "removed"}
    result = plan(desired, _observed(case.get("observed", {}), ids, live))

    got = [(a.address, a.kind.value) for a in result.actions]
    want = [(e["address"], e["action"]) for e in expected]
    assert got == want, case.get("description")
    for action, exp in zip(result.actions, expected, strict=True):
        assert action.reason, f"{action.address} has no reason"
        if "reason_contains" in exp:
            assert exp["reason_contains"] in action.reason
        assert action.destructive == exp.get("destructive", False), action.address
        assert action.resumes == exp.get("resumes", False), action.address
        if action.kind is Kind.NOOP:
            assert action.reason.strip()


def test_there_are_cases_for_every_driver() -> None:
    drivers = {p.parent.name for p in CASES}
    assert {"project", "worktree", "container", "retire", "bridge", "forward",
            "journal", "template"} <= drivers
