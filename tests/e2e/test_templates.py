"""Templates on a real daemon: built once, copied into sandboxes, rebuilt and collected.

Each test keeps at most one template and three sandboxes alive, and its installation's
project (templates included) is deleted by the `locki` fixture.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import pytest

from locki.resources import template
from tests.conftest import git
from tests.e2e.conftest import Locki, incus

pytestmark = pytest.mark.e2e
NODE = f"node-linux-{'arm64' if platform.machine() == 'aarch64' else 'x64'}@22"


def _instances(locki: Locki) -> dict[str, dict[str, Any]]:
    return {str(i["name"]): i for i in locki.instances()}


def _templates(locki: Locki) -> dict[str, dict[str, Any]]:
    return {name: i for name, i in _instances(locki).items()
            if name.startswith("locki-template-")}


def _events(locki: Locki, name: str) -> list[dict[str, Any]]:
    log = locki.data_dir.parent.parent / "state" / "locki" / "logs" / "locki.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("event") == name]


def _new(locki: Locki, repo: Path, **env: str) -> str:
    made = locki("new", "--json", cwd=repo, extra_env=env)
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["id"])


def _inside(locki: Locki, repo: Path, sid: str, script: str) -> str:
    ran = locki("x", "-m", sid, "--", "sh", "-c", script, cwd=repo)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


def test_template_is_built_once_and_copied_into_three_sandboxes(
    locki: Locki, repo: Path
) -> None:
    ids = [_new(locki, repo) for _ in range(3)]

    [(name, made)] = _templates(locki).items()
    key = made["config"][template.KEY]
    assert name == template.template_name(key)
    assert made["status"] == "Stopped"
    assert made["config"][template.READY]
    assert "user.locki.sandbox" not in made["config"]
    # The bridge credential is never part of a template.
    assert made["config"].get("user.locki.bridge") is None
    instances = _instances(locki)
    for sid in ids:
        box = instances[f"locki-{sid}"]
        assert box["status"] == "Running"
        assert box["config"][template.KEY] == key, "not a copy of the template"
        assert box["config"]["volatile.base_image"] == made["config"]["volatile.base_image"]
        assert box["config"]["user.locki.bridge"]
    built = _events(locki, "template.built")
    assert [e["template"] for e in built] == [name], "the template was built more than once"
    assert len(_events(locki, "container.created")) == 3

    # Copies are sandboxes of their own: own machine id, own address.
    seen = {_inside(locki, repo, sid, "cat /etc/machine-id").strip() for sid in ids}
    assert len(seen) == 3

    shown = locki("plan", "--json", cwd=repo)
    actions = {a["address"]: a for a in json.loads(shown.stdout)["actions"]}
    assert actions[f"template.{key}"]["action"] == "noop"
    assert "ready" in actions[f"template.{key}"]["reason"]

    # Removing a sandbox keeps the template the others map to; the last one takes it.
    for n, sid in enumerate(ids):
        removed = locki("remove", "--force", "-m", sid, cwd=repo)
        assert removed.returncode == 0, removed.stderr
        left = _templates(locki)
        assert (name in left) == (n < len(ids) - 1), f"after removing {n + 1}"


def test_package_cache_is_one_device_shared_by_every_sandbox(
    locki: Locki, repo: Path, home: Path
) -> None:
    first, second = _new(locki, repo), _new(locki, repo)
    _inside(locki, repo, first, "mkdir -p /var/cache/locki/npm && echo warm > "
            "/var/cache/locki/npm/probe")
    assert _inside(locki, repo, second, "cat /var/cache/locki/npm/probe") == "warm\n"
    assert (home / ".cache" / "locki" / "sandbox" / "npm" / "probe").read_text() == "warm\n"
    env = _inside(locki, repo, second, "env")
    for line in ("NPM_CONFIG_CACHE=/var/cache/locki/npm", "PIP_CACHE_DIR=/var/cache/locki/pip",
                 "UV_CACHE_DIR=/var/cache/locki/uv", "GOMODCACHE=/var/cache/locki/go/mod",
                 "MISE_CACHE_DIR=/var/cache/locki/mise", "IS_SANDBOX=1"):
        assert line in env.splitlines()


def test_a_failed_step_runs_again_on_the_next_apply(locki: Locki, repo: Path) -> None:
    failed = locki("new", "--json", cwd=repo, extra_env={template.FAIL_KNOB: "agents"})
    assert failed.returncode == 1
    assert "setup step `agents` failed" in failed.stderr
    [(name, made)] = _templates(locki).items()
    config = made["config"]
    assert template.READY not in config
    assert {"step.env", "step.mise"} <= {k.removeprefix("user.locki.") for k in config}
    assert "user.locki.step.agents" not in config
    # Never copied from: no sandbox container exists.
    assert set(_instances(locki)) == {name}
    plan = json.loads(locki("plan", "--json", cwd=repo).stdout)
    [build] = [a for a in plan["actions"] if a["address"].startswith("template.")]
    assert build["action"] == "update"
    assert "re-run agents, instructions, containers" in build["reason"]

    before = len(_events(locki, "template.step"))
    applied = locki("apply", cwd=repo)
    assert applied.returncode == 0, applied.stderr
    rerun = [e["step"] for e in _events(locki, "template.step")[before:]]
    assert rerun == ["agents", "instructions", "containers"], "done steps ran again"
    after = _templates(locki)[name]["config"]
    assert after[template.READY]
    assert after["user.locki.step.env"] == config["user.locki.step.env"]
    [box] = [n for n in _instances(locki) if n != name]
    assert _instances(locki)[box]["config"][template.KEY] == config[template.KEY]
    sid = box.removeprefix("locki-")
    assert _inside(locki, repo, sid, "cat /etc/locki/agents/claude").strip()


def test_a_changed_repo_setup_builds_a_new_template_and_the_old_one_goes(
    locki: Locki, repo: Path
) -> None:
    (repo / "locki.toml").write_text('setup = ["exit 7"]\n')
    failed = locki("new", "--json", cwd=repo)
    assert failed.returncode == 1
    assert "setup step `repo-1` (`exit 7`)" in failed.stderr
    assert "exit code 7" in failed.stderr
    locki("remove", "--force", cwd=repo)

    (repo / "locki.toml").write_text('setup = ["echo one > /etc/locki-setup"]\n')
    old = _new(locki, repo)
    [old_template] = _templates(locki)
    assert _inside(locki, repo, old, "cat /etc/locki-setup") == "one\n"

    (repo / "locki.toml").write_text('setup = ["echo two > /etc/locki-setup"]\n')
    plan = json.loads(locki("plan", "--json", cwd=repo).stdout)
    planned = {a["address"]: a["action"] for a in plan["actions"]
               if a["address"].startswith("template.")}
    gone = f"template.{old_template.removeprefix('locki-template-')}"
    assert planned[gone] == "delete"
    assert len(planned) == 2  # the new one waits for a sandbox that needs it

    new = _new(locki, repo)
    [new_template] = _templates(locki)
    assert new_template != old_template
    assert _inside(locki, repo, new, "cat /etc/locki-setup") == "two\n"
    # The older sandbox keeps what it was made with.
    assert _inside(locki, repo, old, "cat /etc/locki-setup") == "one\n"


def test_mise_podman_and_instructions_inside(
    locki: Locki, repo: Path, node: tuple[Path, Path], tmp_path: Path
) -> None:
    (repo / "mise.toml").write_text('[tasks.hello]\nrun = "echo hello from a mise task"\n')
    git(repo, "add", "mise.toml")
    git(repo, "commit", "-q", "-m", "mise")
    git(repo, "push", "-q", "origin", "main")
    sid = _new(locki, repo)

    assert _inside(locki, repo, sid, "mise --version").startswith("2026.")
    assert "hello from a mise task" in _inside(locki, repo, sid, "mise run hello")
    assert _inside(locki, repo, sid, "echo $IS_SANDBOX") == "1\n"

    from locki.resources import provision

    text = provision.instructions()
    for harness, path in provision.INSTRUCTION_FILES.items():
        found = _inside(locki, repo, sid, f"cat {path}")
        assert text.splitlines()[0] in found, f"{harness}: {path}"
    gemini = json.loads(_inside(locki, repo, sid, "cat /etc/gemini-cli/settings.json"))
    assert gemini["context"]["includeDirectories"] == ["/etc/gemini-cli/locki"]
    opencode = json.loads(_inside(locki, repo, sid, "cat $OPENCODE_CONFIG"))
    assert opencode["instructions"] == [provision.INSTRUCTION_FILES["opencode"]]
    assert _inside(locki, repo, sid, "echo $COPILOT_CUSTOM_INSTRUCTIONS_DIRS") == "/etc/copilot\n"

    # podman runs a container from an image imported right here (no registry needed).
    nested = _inside(locki, repo, sid, PODMAN)
    assert "hello from a nested container" in nested
    # ... through locki's podman, which runs the image's own (and installs one if none).
    assert _inside(locki, repo, sid, "command -v podman") == "/usr/local/bin/podman\n"

    # An agent CLI is installed on first use by its shim: a stand-in package, real npm.
    no_npm = locki("x", "-m", sid, "--", "claude", "--version", cwd=repo)
    assert no_npm.returncode == 127
    assert "npm is missing" in no_npm.stderr, _inside(
        locki, repo, sid, "echo $PATH; command -v claude; ls -la /var/lib/mise/shims || true")
    name = f"locki-{sid}"
    binary, npm = node
    push = ["--project", locki.project, "file", "push", "--quiet"]
    incus(*push, "--mode", "0755", str(binary), f"{name}/usr/local/bin/node")
    incus(*push, str(npm), f"{name}/tmp/npm.tgz")
    incus(*push, str(_stand_in(tmp_path)), f"{name}/tmp/stand-in-claude.tgz")
    _inside(locki, repo, sid, NPM_SETUP)
    _inside(locki, repo, sid, "echo file:/tmp/stand-in-claude.tgz > /etc/locki/agents/claude")
    first = locki("x", "-m", sid, "--", "claude", "--version", cwd=repo)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "stand-in claude --version\n"
    assert "installing claude" in first.stderr
    again = locki("x", "-m", sid, "--", "claude", "hi", cwd=repo)
    assert again.stdout == "stand-in claude hi\n"
    assert "installing" not in again.stderr
    where = _inside(locki, repo, sid, "command -v claude")
    assert where == f"{provision.AGENTS_PREFIX}/bin/claude\n", "the real program comes first"


PODMAN = r"""
set -e
r=$(mktemp -d)
mkdir -p "$r/usr/bin"
cp /usr/bin/dash "$r/usr/bin/"
for lib in $(ldd /usr/bin/dash | grep -o '/[^ ]*'); do
    mkdir -p "$r$(dirname "$lib")"; cp -L "$lib" "$r$lib"
done
ln -s usr/bin "$r/bin"
tar -C "$r" -cf /tmp/tiny.tar .
podman import -q /tmp/tiny.tar localhost/tiny:1 >/dev/null
podman run --rm localhost/tiny:1 /bin/dash -c 'echo hello from a nested container'
"""

NPM_SETUP = r"""
set -e
mkdir -p /usr/local/lib/node_modules
tar -xzf /tmp/npm.tgz -C /usr/local/lib/node_modules
mv /usr/local/lib/node_modules/package /usr/local/lib/node_modules/npm
printf '#!/bin/sh\nexec node /usr/local/lib/node_modules/npm/bin/npm-cli.js "$@"\n' \
    > /usr/local/bin/npm
chmod 755 /usr/local/bin/npm
"""


def _stand_in(tmp_path: Path) -> Path:
    """A stand-in for the `claude` package: an npm tarball whose `claude` echoes."""
    package = tmp_path / "stand-in"
    package.mkdir()
    (package / "package.json").write_text(json.dumps(
        {"name": "stand-in-claude", "version": "1.0.0", "bin": {"claude": "cli.js"}}))
    (package / "cli.js").write_text(
        '#!/usr/bin/env node\nconsole.log(["stand-in claude", ...process.argv.slice(2)]'
        '.join(" "))\n')
    packed = subprocess.run(["npm", "pack", "--silent", str(package)], cwd=tmp_path,
                            capture_output=True, text=True, check=True)
    return tmp_path / packed.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """node and npm from the npm registry (what a sandbox's own mise or image would give)."""
    folder = tmp_path_factory.mktemp("node")
    packed = subprocess.run(["npm", "pack", "--silent", NODE, "npm@10"], cwd=folder,
                            capture_output=True, text=True, check=True)
    node_tgz, npm_tgz = (folder / line for line in packed.stdout.split())
    subprocess.run(["tar", "-xzf", str(node_tgz), "-C", str(folder), "package/bin/node"],
                   check=True)
    return folder / "package" / "bin" / "node", npm_tgz
