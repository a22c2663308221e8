"""Conditions, garbage collection and the loop's choices: pure functions, from data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from locki.hostd import idle
from locki.hostd.loop import background_actions, settings
from locki.reconciler.gc import Branch, Folder, Leftovers, _branches, collect
from locki.reconciler.model import Kind
from locki.reconciler.plan import plan
from locki.reconciler.status import Condition, conditions
from locki.resources import container, template
from locki.resources.model import ContainerObs, Health, WorktreeObs
from locki.state.models import DaemonSettings, DesiredState, SandboxSpec
from locki.state.store import StateFile, ledger_repos, read_ledger
from tests.conftest import git
from tests.test_plan_cases import _observed

SID = "abcd1234"
WT = f"/wt/project-locki-{SID}"
DESIRED = {"sandbox": {SID: {"repo": "/r/project", "base": "origin/main", "image": "img"}}}
RUNNING = {"containers": {SID: {"status": "running", "image": "img", "worktree_source": WT}},
           "worktrees": {SID: {"path": WT, "health": "ok", "recorded": True,
                               "reason": "on branch `untitled#locki-abcd1234`"}}}


def _case(observed: dict[str, Any], desired: dict[str, Any] | None = None
          ) -> tuple[DesiredState, Any]:
    state = DesiredState.model_validate(DESIRED if desired is None else desired)
    ids = set(state.sandbox) | set(observed.get("containers", {}))
    live = {sid for sid, spec in state.sandbox.items() if spec.state != "removed"}
    return state, _observed(observed, ids, live)


def _merge(extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: {s: dict(v) for s, v in table.items()} for k, table in RUNNING.items()}
    for key, table in extra.items():
        for sid, fields in table.items():
            out.setdefault(key, {}).setdefault(sid, {}).update(fields)
    return out


@pytest.mark.parametrize(("observed", "condition", "reason"), [
    (RUNNING, Condition.READY, "Converged"),
    ({**RUNNING, "runtime": "unknown", "runtime_reason": "down"}, Condition.UNKNOWN,
     "RuntimeUnreachable"),
    (_merge({"containers": {SID: {"status": "stopped"}}}), Condition.DRIFTED, "ContainerStart"),
    (_merge({"worktrees": {SID: {"tampered": "its `.git` pointer was rewritten"}}}),
     Condition.DEGRADED, "PointerTampered"),
    (_merge({"worktrees": {SID: {"health": "broken"}}}), Condition.DEGRADED, "WorktreeBroken"),
    (_merge({"worktrees": {SID: {"health": "unknown"}}}), Condition.UNKNOWN,
     "WorktreeUnobservable"),
    (_merge({"worktrees": {SID: {"health": "missing"}}}), Condition.ORPHANED, "WorktreeDeleted"),
    (_merge({"containers": {SID: {"status": "error"}}}), Condition.DEGRADED, "ContainerError"),
    ({**RUNNING, "daemon": ""}, Condition.DRIFTED, "BridgeDaemon"),
    ({**RUNNING, "includes": {f"{SID}/lib": {"path": "/wt/i", "health": "ok",
                                             "tampered": "its `.git` pointer was rewritten"}}},
     Condition.DEGRADED, "PointerTampered"),
], ids=["ready", "unknown", "drifted", "tampered", "broken", "repo-unknown", "deleted",
        "error", "daemon-down", "include-tampered"])
def test_condition_follows_the_plan(observed: dict[str, Any], condition: Condition,
                                    reason: str) -> None:
    desired, seen = _case(observed)
    result = plan(desired, seen)
    found = conditions(desired, seen, result)[SID]
    assert (found.condition, found.reason) == (condition, reason), found.message
    own = {a.address for a in result.changes if a.sandbox == SID}
    assert set(found.pending) == own
    if condition in (Condition.READY, Condition.DRIFTED):  # the plan alone decides these
        assert (condition is Condition.READY) == (not result.changes)


def test_an_undesired_container_is_orphaned_and_an_unknown_runtime_hides_nobody() -> None:
    desired, seen = _case(RUNNING, {"sandbox": {}})
    found = conditions(desired, seen, plan(desired, seen))
    assert (found[SID].condition, found[SID].reason) == (Condition.ORPHANED, "NotDesired")
    desired, seen = _case({"runtime": "unknown", "runtime_reason": "down"})
    assert {s: c.condition for s, c in conditions(desired, seen, plan(desired, seen)).items()} \
        == {SID: Condition.UNKNOWN}


def test_the_loop_runs_whole_safe_chains_and_no_deletion_while_unknown() -> None:
    other = "efgh5678"
    desired = {"sandbox": {**DESIRED["sandbox"],
                           other: {"repo": "/r/project", "base": "main", "image": "img"}}}
    deleted = _merge({"worktrees": {SID: {"health": "missing"}}})
    deleted["worktrees"][other] = {"path": "/wt/x", "health": "missing"}  # never made
    state, seen = _case(deleted, desired)
    result = plan(state, seen)
    chosen = background_actions(result)
    assert {a.sandbox for a in chosen} == {SID}  # the other would be created: a command's job
    assert [a.op for a in chosen] == ["bridge.revoke", "container.delete", "worktree.remove",
                                      "state.forget"]
    # A repository that cannot be read elsewhere: nothing is deleted anywhere.
    deleted["worktrees"][other] = {"path": "/wt/x", "health": "unknown"}
    state, seen = _case(deleted, desired)
    assert plan(state, seen).unknown
    assert background_actions(plan(state, seen)) == ()


def test_the_loop_never_runs_destructive_or_shared_actions() -> None:
    replaced = _merge({"containers": {SID: {"image": "old"}}})
    state, seen = _case({**replaced, "daemon": ""})
    result = plan(state, seen)
    assert any(a.destructive for a in result.changes)
    assert any(a.sandbox is None for a in result.changes)
    assert background_actions(result) == ()


def test_env_overrides_the_daemon_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKI_RECONCILE_INTERVAL", "0.5")
    monkeypatch.setenv("LOCKI_IDLE_STOP_AFTER", "nonsense")
    got = settings(DaemonSettings(idle_stop_after=10))
    assert (got.reconcile_interval, got.idle_stop_after) == (0.5, 10)


def test_idle_helpers() -> None:
    box = ContainerObs("c", SID, True, "running", "img", None,
                       last_started="2026-12-04T10:57:20.138716554Z")
    started = idle.started_at(box)
    assert started is not None and abs(started - 1796381840.1387) < 0.01
    assert idle.started_at(ContainerObs("c", SID, True, "running", None, None)) is None
    assert idle.idle_for(None, started, started + 5) is None  # not tracked yet
    assert idle.idle_for(started - 100, started, started + 5) == pytest.approx(5)
    proc = (
        "  sl  local_address rem_address   st tx_queue\n"
        "   0: 00000000:0BB8 00000000:0000 0A 00000000:00000000\n"
        "   1: 0100007F:1B6E 0100007F:0016 01 00000000:00000000\n"
        "   0: 00000000000000000000000000000000:1F90 000000000000:0000 0A 0\n"
    )
    assert idle.listening_ports(proc) == {3000, 8080}


def _gc(observed: dict[str, Any], leftovers: Leftovers, *, branches: bool = False,
        pending: frozenset[str] = frozenset(), desired: dict[str, Any] | None = None
        ) -> dict[str, tuple[Kind, bool]]:
    state, seen = _case(observed, desired)
    got = collect(state, seen, leftovers, branches=branches, pending=pending)
    return {a.address: (a.kind, a.destructive) for a in got.plan.actions}


def test_gc_collects_orphans_folders_and_merged_branches() -> None:
    folder = Folder(SID, Path(WT), Path("/r/project"),
                    WorktreeObs(Path(WT), Health.OK, "seen", dirty=True, lost_commits=0))
    merged = Branch(Path("/r/project"), "refs/heads/a#locki-zzzz0001", "1" * 40, "zzzz0001",
                    "origin/main", 0)
    unmerged = Branch(Path("/r/project"), "refs/heads/b#locki-zzzz0002", "2" * 40,
                      "zzzz0002", None, 3)
    leftovers = Leftovers((folder,), (merged, unmerged))
    got = _gc(RUNNING, leftovers, desired={"sandbox": {}})
    assert got[f"sandbox.{SID}.container"] == (Kind.DELETE, True)
    assert got[f"sandbox.{SID}.folder.project-locki-{SID}"] == (Kind.DELETE, True)  # dirty
    assert got["sandbox.zzzz0001.branch.a#locki-zzzz0001"] == (Kind.DELETE, False)
    assert got["sandbox.zzzz0002.branch.b#locki-zzzz0002"] == (Kind.NOOP, False)
    with_flag = _gc(RUNNING, leftovers, desired={"sandbox": {}}, branches=True)
    assert with_flag["sandbox.zzzz0002.branch.b#locki-zzzz0002"] == (Kind.DELETE, True)
    held = _gc(RUNNING, leftovers, desired={"sandbox": {}},
               pending=frozenset({f"sandbox.{SID}.container"}))
    assert {k: v for k, v in held.items() if k.startswith(f"sandbox.{SID}")} == {
        f"sandbox.{SID}.credential": (Kind.NOOP, False),
        f"sandbox.{SID}.container": (Kind.NOOP, False),
        f"sandbox.{SID}.folder.project-locki-{SID}": (Kind.NOOP, False)}
    # A journal entry for any of the sandbox's resources (here its worktree, which gc
    # sees only as a folder) holds everything of that sandbox, and nothing else.
    by_worktree = _gc(RUNNING, leftovers, desired={"sandbox": {}},
                      pending=frozenset({f"sandbox.{SID}.worktree"}))
    assert by_worktree[f"sandbox.{SID}.folder.project-locki-{SID}"] == (Kind.NOOP, False)
    assert by_worktree[f"sandbox.{SID}.container"] == (Kind.NOOP, False)
    assert by_worktree["sandbox.zzzz0001.branch.a#locki-zzzz0001"] == (Kind.DELETE, False)


def test_gc_drops_entries_whose_repository_vanished_once_nothing_is_left() -> None:
    gone = Leftovers(vanished={SID: "its repository `/r/project` no longer exists"})
    unseen = {"worktrees": {SID: {"path": WT, "health": "unknown"}}}
    assert _gc(unseen, gone)[f"sandbox.{SID}"] == (Kind.DELETE, False)
    with_box = {**unseen, "containers": RUNNING["containers"]}
    got = _gc(with_box, gone)
    assert got[f"sandbox.{SID}.container"] == (Kind.DELETE, True)
    assert got[f"sandbox.{SID}"] == (Kind.NOOP, False)


def test_an_interval_of_zero_turns_the_loop_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKI_RECONCILE_INTERVAL", "0")
    assert settings(DaemonSettings()).reconcile_interval == 0
    monkeypatch.setenv("LOCKI_RECONCILE_INTERVAL", "-1")  # out of range: ignored, logged
    assert settings(DaemonSettings(reconcile_interval=5)).reconcile_interval == 5


def test_a_clean_orphan_worktree_is_held_with_its_container() -> None:
    clean = Folder(SID, Path(WT), Path("/r/project"),
                   WorktreeObs(Path(WT), Health.OK, "seen", dirty=False, lost_commits=0))
    boxed = _gc(RUNNING, Leftovers((clean,)), desired={"sandbox": {}})
    assert boxed[f"sandbox.{SID}.folder.project-locki-{SID}"] == (Kind.DELETE, True)
    alone = _gc({}, Leftovers((clean,)), desired={"sandbox": {}})
    assert alone[f"sandbox.{SID}.folder.project-locki-{SID}"] == (Kind.DELETE, False)


def test_gc_sees_only_branches_of_sandboxes_this_installation_wrote(
        repo: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "state" / "sandbox-ids"
    store = StateFile(tmp_path / "sandboxes.toml", tmp_path / "lock", ledger=ledger)
    with store.edit() as editor:
        editor.add("aaaa1111", SandboxSpec(repo=repo, base="main", image="img"))
    with store.edit() as editor:
        editor.forget("aaaa1111")  # removed from the state; its id stays in the ledger
    assert read_ledger(ledger) == {"aaaa1111"} and "aaaa1111" not in store.read().sandbox
    assert ledger_repos(ledger) == {repo}  # gc looks there after the last sandbox went
    for name in ("done#locki-aaaa1111", "mine#locki-zzzzzzzz", "x#locki-bbbb2222"):
        git(repo, "branch", name, "main")  # zzzzzzzz by hand; bbbb2222 another HOME's
    found = anyio.run(_branches, repo, read_ledger(ledger))
    assert [(b.ref, b.sandbox, b.merged_into) for b in found] == [
        ("refs/heads/done#locki-aaaa1111", "aaaa1111", "origin/main")]
    assert anyio.run(_branches, repo, frozenset()) == []


def test_an_instance_incus_is_still_creating_is_observed_not_a_crash() -> None:
    # `incus list --format json` shows an instance whose copy is in progress with null
    # config and devices; `locki list` once died on it with exit 3.
    creating = {"name": "locki-abcd1234", "status": "Stopped", "config": None,
                "devices": None}
    assert container.parse(creating, "ins1") is None
    assert template.parse(creating, "ins1") is None
    mine = {**creating, "config": {"user.locki.installation": "ins1",
                                   "user.locki.sandbox": SID}}
    seen = container.parse(mine, "ins1")
    assert seen is not None and seen.devices == {} and seen.worktree_source is None


def test_a_template_build_drifts_only_the_sandboxes_copied_from_it() -> None:
    other = "wxyz9876"
    desired = {"sandbox": {**DESIRED["sandbox"],
                           other: {"repo": "/r/project", "base": "origin/main", "image": "new"}}}
    observed = {**_merge({}), "wants": {SID: "t0", other: "t1"},
                "templates": {"t0": {"ready": True}}}
    state, seen = _case(observed, desired)
    found = conditions(state, seen, plan(state, seen))
    assert found[SID].condition is Condition.READY, found[SID].message
    assert found[other].condition is Condition.DRIFTED
    assert "template.t1" in found[other].message


def test_a_ledger_of_ids_alone_still_reads(tmp_path: Path) -> None:
    ledger = tmp_path / "sandbox-ids"
    ledger.write_text("aaaa1111\nbbbb2222\t[\"/r/x\"]\ncccc3333\tnot json\n")
    assert read_ledger(ledger) == {"aaaa1111", "bbbb2222", "cccc3333"}
    assert ledger_repos(ledger) == {Path("/r/x")}
