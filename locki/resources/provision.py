"""What the sandbox setup is: the steps applied once to a template, and their versions.

Pure except for `fetch_mise`. Each step is a set of files (pushed into the template,
which need not run for that), instance config keys, and shell commands (which need it
running). A step's version is a digest of all of that, so a step that changes re-runs.
locki's own steps come first; the repository's `setup` commands from `locki.toml`
follow, one step each. The template key covers the image, `SETUP_VERSION` and the
repository's setup, so a different repository setup is another template.

Inside, every sandbox gets:

- `IS_SANDBOX=1`, and package caches (npm, pip, uv, cargo, go, mise downloads) in
  `/var/cache/locki`, one disk device shared by every sandbox;
- mise at `/usr/local/bin/mise`, with its own config and installs per sandbox (container
  paths, never the shared home) and every worktree trusted, so a repo's `mise.toml`
  works as it is;
- shims that install each agent CLI with npm on first use;
- locki's instructions, where each harness reads its system-wide instructions.
"""

from __future__ import annotations

import hashlib
import platform
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import structlog

from locki.core import proc
from locki.core.errors import LockiError

log = structlog.get_logger("locki.resources.provision")

# Bump when a change to the steps must not reach existing templates as an update
# (a new template is built instead).
SETUP_VERSION = "1"
MISE_VERSION = "2026.9.15"
MISE_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
CACHE = "/var/cache/locki"
AGENTS_PREFIX = "/var/lib/locki/agents"
JIT = "/usr/local/lib/locki/jit"
MISE_CONFIG = "/etc/locki/mise/config.toml"
# The npm package each harness comes from.
AGENTS = {
    "claude": "@anthropic-ai/claude-code",
    "gemini": "@google/gemini-cli",
    "codex": "@openai/codex",
    "opencode": "opencode-ai",
    "pi": "@earendil-works/pi-coding-agent",
    "copilot": "@github/copilot",
}
# Where each harness reads system-wide instructions, all container-local (the shared
# home would let one sandbox rewrite another's). Claude Code: its managed memory file.
# Gemini CLI: the system settings file, loading context from an included directory.
# Codex: the system config layer's `developer_instructions`. OpenCode: the config file
# named by OPENCODE_CONFIG. pi: AGENTS.md files of every folder from the cwd up to /.
# Copilot CLI: AGENTS.md in a folder named by COPILOT_CUSTOM_INSTRUCTIONS_DIRS.
INSTRUCTION_FILES = {
    "claude": "/etc/claude-code/CLAUDE.md",
    "gemini": "/etc/gemini-cli/locki/GEMINI.md",
    "codex": "/etc/codex/config.toml",
    "opencode": "/etc/opencode/AGENTS.md",
    "pi": "/AGENTS.md",
    "copilot": "/etc/copilot/AGENTS.md",
}


@dataclass(frozen=True)
class File:
    """A file put into the template: `text`, or the host file `source` as it is."""

    path: str
    text: str = ""
    mode: int = 0o644
    source: Path | None = None


@dataclass(frozen=True)
class Step:
    name: str
    files: tuple[File, ...] = ()
    config: tuple[tuple[str, str], ...] = ()
    commands: tuple[str, ...] = ()
    pin: str = ""  # what stands for `source` files' content in the version

    @property
    def version(self) -> str:
        parts = [self.name, self.pin, *self.commands]
        parts += [f"{k}={v}" for k, v in self.config]
        parts += [f"{f.path}:{f.mode:o}:{f.text}" for f in self.files]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Want:
    """The template a sandbox is copied from: its key and how it is built."""

    key: str
    image: str  # the reference as the sandbox states it
    image_id: str  # what identifies the image's content (a fingerprint where known)
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def versions(self) -> dict[str, str]:
        return {step.name: step.version for step in self.steps}


def template_key(image_id: str, repo_setup: Sequence[str], installation_id: str) -> str:
    """The template's identity. The installation is part of it so that two installations
    on one daemon never name a template alike: instance names are DNS names on the
    shared bridge, and Incus refuses a second one across projects."""
    text = "\0".join([image_id, SETUP_VERSION, *repo_setup, installation_id])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def mise_arch(machine: str | None = None) -> str:
    machine = (machine or platform.machine()).lower()
    if machine not in MISE_ARCH:
        raise LockiError(f"no mise build for the architecture `{machine}`")
    return MISE_ARCH[machine]


def mise_binary(cache_dir: Path, version: str = MISE_VERSION) -> Path:
    """Where the host keeps the mise binary of `version` (fetched by `fetch_mise`)."""
    return cache_dir / "downloads" / f"mise-{version}-linux-{mise_arch()}" / "mise"


def environment(worktrees: Path) -> dict[str, str]:
    """The variables every process in a sandbox gets (`incus exec` and login shells)."""
    # The bridge's git shim is linked into /usr/local/bin, which is on this PATH.
    path = ":".join(["/var/lib/mise/shims", "/usr/local/sbin",
                     "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin",
                     f"{AGENTS_PREFIX}/bin", JIT])
    return {
        "IS_SANDBOX": "1",
        "PATH": path,
        "NPM_CONFIG_CACHE": f"{CACHE}/npm",
        "PIP_CACHE_DIR": f"{CACHE}/pip",
        "UV_CACHE_DIR": f"{CACHE}/uv",
        "CARGO_HOME": f"{CACHE}/cargo",
        "GOMODCACHE": f"{CACHE}/go/mod",
        "GOCACHE": f"{CACHE}/go/build",
        "MISE_CACHE_DIR": f"{CACHE}/mise",
        "MISE_DATA_DIR": "/var/lib/mise",
        "MISE_GLOBAL_CONFIG_FILE": MISE_CONFIG,
        "MISE_TRUSTED_CONFIG_PATHS": str(worktrees),
        "MISE_YES": "1",
        "OPENCODE_CONFIG": "/etc/opencode/opencode.json",
        "COPILOT_CUSTOM_INSTRUCTIONS_DIRS": "/etc/copilot",
    }


def _guest(name: str) -> str:
    return (resources.files("locki.resources") / "guest" / name).read_text(encoding="utf-8")


def instructions() -> str:
    return _guest("instructions.md")


def _env_step(env: Mapping[str, str]) -> Step:
    # Login shells keep the PATH /etc/profile and the bridge's profile.d script give
    # them, with mise's shims in front and the agent CLIs behind.
    lines = ["# Written by locki: the sandbox's environment for login shells.",
             f'PATH="/var/lib/mise/shims:$PATH:{AGENTS_PREFIX}/bin:{JIT}"']
    lines += [f"export {key}=" + "'" + value.replace("'", "'\\''") + "'"
              for key, value in env.items() if key != "PATH"]
    return Step("env", files=(File("/etc/profile.d/locki-sandbox.sh", "\n".join(lines) + "\n"),),
                config=tuple((f"environment.{k}", v) for k, v in env.items()))


def _mise_step(cache_dir: Path) -> Step:
    config = "# mise settings and tools of this sandbox only (`mise use -g` writes here).\n"
    return Step("mise", files=(File("/usr/local/bin/mise", mode=0o755,
                                    source=mise_binary(cache_dir)),
                               File(MISE_CONFIG, config)),
                pin=f"{MISE_VERSION}-{mise_arch()}")


def _agents_step() -> Step:
    shim = _guest("agent")
    files = [File(f"{JIT}/{name}", shim.replace("@NAME@", name), mode=0o755)
             for name in AGENTS]
    files += [File(f"/etc/locki/agents/{name}", package + "\n")
              for name, package in AGENTS.items()]
    return Step("agents", files=tuple(files))


def _instructions_step() -> Step:
    text = instructions()
    codex = ('# Written by locki.\ndeveloper_instructions = """\n'
             + text.replace("\\", "\\\\").replace('"""', '\\"""') + '"""\n')
    gemini = ('{"context": {"includeDirectories": ["/etc/gemini-cli/locki"], '
              '"loadMemoryFromIncludeDirectories": true}}\n')
    opencode = '{"$schema": "https://opencode.ai/config.json", ' \
        f'"instructions": ["{INSTRUCTION_FILES["opencode"]}"]}}\n'
    files = [File(path, text) for name, path in INSTRUCTION_FILES.items() if name != "codex"]
    files += [File(INSTRUCTION_FILES["codex"], codex),
              File("/etc/gemini-cli/settings.json", gemini),
              File("/etc/opencode/opencode.json", opencode)]
    return Step("instructions", files=tuple(files))


def _containers_step(cgroup_v1: bool) -> Step:
    """podman inside: on a cgroup v1 machine a nested container cannot get cgroups of its
    own (the container sees them read-only), so podman runs them without."""
    text = "# Written by locki: podman in a sandbox.\n[containers]\n"
    if cgroup_v1:
        text += 'cgroups = "disabled"\n'
    return Step("containers", files=(
        File("/etc/containers/containers.conf.d/locki.conf", text),
        # The image's own podman when it has one; else installed on first use (like the
        # agent CLIs), so building a template needs neither a start nor the network.
        File("/usr/local/bin/podman", _guest("podman"), mode=0o755)))


def steps(*, cache_dir: Path, worktrees: Path, repo_setup: Sequence[str],
          cgroup_v1: bool = False) -> tuple[Step, ...]:
    """Every step, in order: locki's own, then one per repository setup command."""
    own = (_env_step(environment(worktrees)), _mise_step(cache_dir), _agents_step(),
           _instructions_step(), _containers_step(cgroup_v1))
    repo = tuple(Step(f"repo-{n}", commands=(command,))
                 for n, command in enumerate(repo_setup, start=1))
    return own + repo


async def fetch_mise(cache_dir: Path, version: str = MISE_VERSION) -> Path:
    """The mise binary, fetched once with `npm pack` on the host (the registry the host's
    npm is configured for) and kept in locki's cache, by version."""
    target = mise_binary(cache_dir, version)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    package = f"@jdxcode/mise-linux-{mise_arch()}@{version}"
    with tempfile.TemporaryDirectory(dir=target.parent.parent) as tmp:
        packed = await proc.run(["npm", "pack", "--silent", package], cwd=Path(tmp),
                                check=False)
        if not packed.ok:
            raise LockiError(
                f"could not fetch mise ({package}) with npm: "
                f"{(packed.stderr or packed.stdout).strip()[-300:]}",
                hint="check that `npm` works on this machine (npm config get registry)",
            )
        tarball = Path(tmp) / packed.stdout.strip().splitlines()[-1]
        await proc.run(["tar", "-xzf", str(tarball), "-C", tmp, "package/bin/mise"])
        (Path(tmp) / "package/bin/mise").replace(target)
    log.info("mise.fetched", version=version, path=str(target))
    return target
