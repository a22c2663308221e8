"""`locki doctor`: what the chosen runtime needs, checked one by one, with a fix each.

It never raises for a missing piece (that is what it reports); it exits 1 when something
blocks the chosen runtime, 0 otherwise (warnings included).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from locki.bridge import client, server
from locki.core import lima, proc, runtime
from locki.core.errors import LockiError
from locki.core.paths import Paths
from locki.resources import provision, vm
from locki.resources.model import Health
from locki.state.models import UserConfig
from locki.state.store import load

GIB = 1024**3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    blocking: bool = True  # whether a failure blocks the runtime (else: a warning)


async def _version(argv: list[str]) -> str:
    try:
        result = await proc.run(argv, check=False)
    except LockiError as exc:
        return exc.message
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0] if text else f"exit code {result.returncode}"


async def _git() -> Check:
    found = shutil.which("git")
    if found is None:
        return Check("git", False, "not on PATH", "install git (macOS: xcode-select "
                     "--install; Debian: apt install git)")
    return Check("git", True, await _version([found, "--version"]))


async def _incus_reachable(prefix: list[str], where: str, fix: str) -> Check:
    result = await proc.run([*prefix, "info"], check=False)
    if result.ok:
        version = next((line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
                        if line.strip().startswith("server_version:")), "?")
        return Check("incus daemon", True, f"answers {where} (server {version})")
    detail = (result.stderr.strip().splitlines() or ["no answer"])[-1]
    return Check("incus daemon", False, detail, fix)


async def _host_incus() -> list[Check]:
    found = shutil.which("incus")
    if found is None:
        return [Check("incus", False, "the `incus` client is not on PATH",
                      "install Incus (Debian: apt install incus-base incus-client)")]
    return [Check("incus", True, found),
            await _incus_reachable([found], "on this host",
                                   "start incusd (`systemctl start incus`) and make sure you "
                                   "are in the `incus-admin` group")]


def _qemu() -> Check:
    binary = f"qemu-system-{vm.host_arch()}"
    found = shutil.which(binary)
    if found is None:
        return Check("qemu", False, f"`{binary}` is not on PATH (Lima needs it on Linux)",
                     "install QEMU (Debian: apt install qemu-system-x86 qemu-utils), or "
                     "choose the host's Incus: LOCKI_RUNTIME=incus")
    return Check("qemu", True, found)


async def _lima(paths: Paths, config: UserConfig) -> list[Check]:
    found = shutil.which("limactl")
    if found is None:
        return [Check("limactl", False, "not on PATH", lima.INSTALL_HINT)]
    version = await _version([found, "--version"])
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
    if numbers < lima.MINIMUM_VERSION:
        return [Check("limactl", False, f"{found}: {version}",
                      f"upgrade Lima to {'.'.join(map(str, lima.MINIMUM_VERSION))} or later")]
    checks = [Check("limactl", True, f"{found} ({version})")]
    if lima.host_os() == "Linux":
        checks.append(_qemu())
    runner = runtime.LimaVM(paths)
    spec = vm.sized_from_host(paths, cpus=config.vm.cpus, memory_gib=config.vm.memory_gib,
                              disk_gib=config.vm.disk_gib,
                              bridge_guest_socket=runner.bridge_socket(paths))
    obs = await vm.observe(lima.Limactl(paths), spec)
    checks.append(_vm_check(obs, spec))
    if obs.running and not obs.pending:
        checks.append(await _incus_reachable(runner.incus_prefix(), "in the VM",
                                             "`locki vm stop`, then `locki apply`"))
    return checks


def _vm_check(obs: vm.VmObs, spec: vm.VmSpec) -> Check:
    if obs.health is Health.MISSING:
        return Check("vm", False, obs.reason, "`locki apply` (or `locki x`) creates it",
                     blocking=False)
    if obs.health is not Health.OK:
        return Check("vm", False, obs.reason, "`locki vm delete`, then `locki apply`")
    if obs.config_hash != spec.config_hash:
        return Check("vm", False, f"{obs.reason}, built from another config",
                     "`locki plan` shows the rebuild; `locki apply --force` does it",
                     blocking=False)
    if not obs.running:
        return Check("vm", False, obs.reason, "`locki apply` starts it", blocking=False)
    if obs.pending:
        return Check("vm", False, f"provisioning not done: {', '.join(obs.pending)}",
                     "`locki apply` runs the missing steps", blocking=False)
    return Check("vm", True, "running and provisioned")


async def _daemon(paths: Paths) -> Check:
    answer = await client.ping(paths, timeout=2)
    if answer is None:
        return Check("bridge daemon", False, "not running",
                     "nothing to do: the next `locki x` or `locki apply` starts it",
                     blocking=False)
    if answer != server.code_version():
        return Check("bridge daemon", False, f"runs `{answer}`, not this locki",
                     "`locki apply` restarts it", blocking=False)
    return Check("bridge daemon", True, f"answers as `{answer}`")


def _npm(paths: Paths) -> Check:
    """Templates need the mise binary, which locki fetches once with `npm pack`."""
    try:
        cached = provision.mise_binary(paths.cache)
    except LockiError as exc:
        return Check("npm", False, exc.message, "use an x86_64 or arm64 machine")
    if cached.is_file():
        return Check("npm", True, f"not needed: mise {provision.MISE_VERSION} is cached")
    found = shutil.which("npm")
    if found is None:
        return Check("npm", False, "not on PATH (locki fetches mise with `npm pack` to build "
                     "the sandboxes' template)", "install npm (macOS: brew install node; "
                     "Debian: apt install npm)")
    return Check("npm", True, found)


def _disk(paths: Paths) -> Check:
    folder: Path = paths.data_dir
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    detail = f"{free / GIB:.1f} GiB free in {folder}"
    if free < GIB:
        return Check("disk", False, detail, f"free space in {folder}")
    if free < 5 * GIB:
        return Check("disk", False, detail, f"free space in {folder} (images and "
                     "containers need several GiB)", blocking=False)
    return Check("disk", True, detail)


async def checks(paths: Paths, flag: str | None) -> tuple[str, list[Check]]:
    try:
        config = load(paths.user_config, UserConfig)
    except LockiError as exc:
        return "", [Check("config", False, exc.message, exc.hint)]
    name = runtime.selected(flag, config.runtime)
    found = [Check("runtime", name in runtime.RUNTIMES, f"`{name}`",
                   None if name in runtime.RUNTIMES else "choose `lima` or `incus`")]
    if name == "lima":
        found += await _lima(paths, config)
    elif name == "incus":
        found += await _host_incus()
    found += [await _git(), _npm(paths), await _daemon(paths), _disk(paths)]
    return name, found


async def cmd_doctor(paths: Paths, *, flag: str | None, as_json: bool) -> int:
    name, found = await checks(paths, flag)
    blocked = [c for c in found if not c.ok and c.blocking]
    if as_json:
        print(json.dumps({"runtime": name or None, "ok": not blocked,
                          "checks": [asdict(c) for c in found]}, indent=2))
    else:
        width = max(len(c.name) for c in found)
        for check in found:
            mark = "ok" if check.ok else ("FAIL" if check.blocking else "warn")
            print(f"{mark:<4}  {check.name:<{width}}  {check.detail}")
            if check.fix and not check.ok:
                print(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
        what = f"the `{name}` runtime" if name else "locki (its config cannot be read)"
        verdict = (f"{what} is blocked by: " + ", ".join(c.name for c in blocked)) if blocked \
            else f"{what} has what it needs"
        print(f"\n{verdict}", file=sys.stderr if blocked else sys.stdout)
    return 1 if blocked else 0
