"""The setup's steps and versions, template markers, and who may ask for privilege."""

from __future__ import annotations

from pathlib import Path

import pytest

from locki.cli.main import run
from locki.core.paths import Paths
from locki.reconciler.context import Context
from locki.resources import provision
from locki.resources.provision import Want
from locki.resources.template import TemplateObs, parse
from locki.state.models import IncusSettings, UserConfig

CACHE, WORKTREES = Path("/c"), Path("/w")


def _steps(setup: list[str], **kw: bool) -> tuple[provision.Step, ...]:
    return provision.steps(cache_dir=CACHE, worktrees=WORKTREES, repo_setup=setup, **kw)


def test_a_step_version_follows_its_content() -> None:
    one, two = _steps(["echo a"]), _steps(["echo b"])
    assert [s.name for s in one] == ["env", "mise", "agents", "instructions", "containers",
                                     "repo-1"]
    assert [s.version for s in one[:-1]] == [s.version for s in two[:-1]]
    assert one[-1].version != two[-1].version
    v1 = provision.steps(cache_dir=CACHE, worktrees=Path("/other"), repo_setup=[])
    assert v1[0].version != one[0].version, "the env step names the worktrees root"
    assert _steps([], cgroup_v1=True)[4].version != _steps([])[4].version


def test_the_key_follows_image_and_repo_setup() -> None:
    base = provision.template_key("fp1", ["echo a"], "ins1")
    assert base == provision.template_key("fp1", ["echo a"], "ins1")
    assert base != provision.template_key("fp2", ["echo a"], "ins1")
    assert base != provision.template_key("fp1", ["echo b"], "ins1")
    assert base != provision.template_key("fp1", [], "ins1")
    assert base != provision.template_key("fp1", ["echo a"], "ins2")  # no shared DNS name


def test_environment_survives_quotes_in_paths() -> None:
    [env, *_] = provision.steps(cache_dir=CACHE, worktrees=Path("/w it's"), repo_setup=[])
    text = env.files[0].text
    assert "export MISE_TRUSTED_CONFIG_PATHS='/w it'\\''s'" in text
    assert ("environment.IS_SANDBOX", "1") in env.config


def _obs(steps: dict[str, str], ready: bool = False) -> TemplateObs:
    return TemplateObs("k", "locki-template-k", "stopped", ready=ready, steps=steps)


def test_stale_steps_run_from_the_first_mismatch_to_the_end() -> None:
    want = Want("k", "img", "img", _steps(["echo a"]))
    done = {s.name: s.version for s in want.steps}
    assert _obs(done, ready=True).stale(want) == []
    assert _obs({}).stale(want) == [s.name for s in want.steps]
    partial = {k: v for k, v in done.items() if k in ("env", "mise")}
    assert _obs(partial).stale(want) == ["agents", "instructions", "containers", "repo-1"]
    changed = {**done, "mise": "old"}
    assert _obs(changed, ready=True).stale(want)[0] == "mise"


def test_templates_and_sandboxes_are_told_apart() -> None:
    labels = {"user.locki.installation": "iid00001", "user.locki.template": "k"}
    made = parse({"name": "locki-template-k", "status": "Stopped",
                  "config": {**labels, "user.locki.step.env": "v", "user.locki.ready": "x"}},
                 "iid00001")
    assert made is not None and made.ready and made.steps == {"env": "v"}
    copy = {"name": "locki-abcd1234", "config": {**labels, "user.locki.sandbox": "abcd1234"}}
    assert parse(copy, "iid00001") is None
    assert parse({"name": "x", "config": labels}, "someone") is None


def _context(tmp_path: Path, config: UserConfig) -> Context:
    from locki.core import runtime
    from locki.state.store import StateFile

    paths = Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "r")
    return Context(paths=paths, runtime=runtime.choose("incus", None),
                   state=StateFile(paths.desired_state, tmp_path / "lock"), config=config)


def test_privileged_only_from_the_user_config(tmp_path: Path) -> None:
    plain = dict(_context(tmp_path, UserConfig()).project.config())
    assert plain["security.nesting"] == "true"
    assert "security.privileged" not in plain
    asked = _context(tmp_path, UserConfig(incus=IncusSettings(privileged=True)))
    assert asked.project.config()["security.privileged"] == "true"


@pytest.mark.parametrize("text", [
    "privileged = true\n",
    "[incus]\nprivileged = true\n",
    '"security.privileged" = "true"\n',
    "[raw]\nlxc = 'lxc.apparmor.profile=unconfined'\n",
])
def test_a_repo_cannot_ask_for_privilege(tmp_path: Path, home: Path, text: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "locki.toml").write_text(text)
    assert run(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "locki.toml" in err
    assert text.split("=")[0].strip(' "[\n').split("]")[0] in err


def test_the_instructions_name_everything_the_bridge_allows() -> None:
    """The agents learn the bridge from this text: a git command or gh form added to the
    allow-list and not described here would stay unknown to them."""
    from locki.bridge import gh, policy

    text = provision.instructions()
    missing = [f"git {name}" for name in policy.COMMANDS if f"`{name}" not in text]
    for form in gh.FORMS:
        group, _, sub = form.partition(" ")
        said = f"gh {group}" in text and (not sub or sub in text)
        missing += [] if said else [f"gh {form}"]
    assert missing == []
    for topic in ("#locki-<id>", "locki port-forward :", "mise", "Startup checklist",
                  "IS_SANDBOX=1"):
        assert topic in text, topic
