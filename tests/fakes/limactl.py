"""A faithful stand-in for `limactl` (Lima cannot be installed on these machines).

Used only by tests, through a `limactl` on PATH (see tests/fakes/__init__.py). It keeps
its instances under $LIMA_HOME like Lima (`<LIMA_HOME>/<name>/lima.yaml`), validates the
config the way Lima's loader and validator do for the fields locki writes, and answers
with Lima's output shapes: `list --json` is one JSON object per line, progress and
failures go to stderr as logrus lines (`level=fatal msg=...`, exit 1).

The "VM" is this host: `shell NAME -- CMD` runs CMD here, so the host's real Incus stands
in for the VM's. Only the VM's own state is kept apart: its `/var/lib/locki` (where
locki's provisioning markers live) is the instance's `guest/var-lib-locki`, bound over
the host folder in a private mount namespace for each command, in which locki's
host-only folders (its cache, state and config; a VM sees only the two mounts) are
empty, so a host path handed to the guest fails as in a VM. Socket forwards are
symlinks: `guestSocket -> hostSocket` (reverse) or `hostSocket -> guestSocket`. The
guest has passwordless `sudo`, as Lima's has (a shim on the guest PATH).
Provisioning scripts (`mode: system`) run at every `start`, as Lima runs them at boot;
a failing one leaves the instance running but degraded, and `start` exits 1.
`delete` also deletes the Incus project of the locki installation the LIMA_HOME belongs
to, as the VM's disk would take it along.
Each call is recorded in `$LIMA_HOME/_fake/calls.jsonl` (Lima ignores `_`-folders).
Not emulated: QEMU itself (no `qemu-system-*` is required), downloads of `images`,
`base` templates (refused: locki must not use them), `copy`, interactive shells.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

VERSION = "1.2.1"
TOP = {
    "minimumLimaVersion", "vmType", "arch", "images", "cpus", "memory", "disk", "mounts",
    "mountType", "mountTypesUnsupported", "mountInotify", "containerd", "ssh", "portForwards",
    "provision", "probes", "param", "env", "networks", "hostResolver", "dns", "os",
    "cpuType", "rosetta", "timezone", "firmware", "audio", "video", "upgradePackages",
    "propagateProxyEnv", "caCerts", "copyToHost", "message", "guestInstallPrefix", "plain",
    "vmOpts", "additionalDisks", "base", "user", "nestedVirtualization",
}
MOUNT_KEYS = {"location", "mountPoint", "writable", "sshfs", "9p", "virtiofs"}
FORWARD_KEYS = {"guestIP", "guestIPMustBeZero", "guestPort", "guestPortRange", "hostIP",
                "hostPort", "hostPortRange", "guestSocket", "hostSocket", "proto", "reverse",
                "ignore"}
PROVISION_MODES = {"system", "user", "boot", "dependency", "ansible", "data"}
UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
GUEST_STATE = "/var/lib/locki"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(level: str, msg: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f'time="{stamp}" level={level} msg={json.dumps(msg)}', file=sys.stderr)


def fatal(msg: str) -> NoReturn:
    log("fatal", msg)
    sys.exit(1)


def home() -> Path:
    return Path(os.environ.get("LIMA_HOME") or Path.home() / ".lima")


def inst_dir(name: str) -> Path:
    return home() / name


def state(name: str) -> dict[str, Any]:
    path = inst_dir(name) / "fake-state.json"
    return json.loads(path.read_text()) if path.exists() else {"status": "Stopped"}


def save_state(name: str, data: dict[str, Any]) -> None:
    (inst_dir(name) / "fake-state.json").write_text(json.dumps(data))


def load(name: str) -> dict[str, Any]:
    path = inst_dir(name) / "lima.yaml"
    if not path.exists():
        fatal(f'instance "{name}" does not exist, run `limactl create {name}` to create '
              "a new instance")
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def size(value: Any, key: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|TiB)", str(value))
    if not match:
        fatal(f"field `{key}` has an invalid value {value!r}: expected e.g. \"4GiB\"")
    return int(float(match[1]) * UNITS[match[2]])


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def validate(config: Any, source: str) -> None:
    """What Lima's strict loader and `limayaml.Validate` refuse, for the fields used."""
    if not isinstance(config, dict):
        fatal(f"failed to load YAML file {source!r}: not a mapping")
    for key in config:
        if key not in TOP:
            fatal(f"failed to load YAML file {source!r}: unknown field {key!r}")
    if "base" in config:
        fatal("the fake limactl does not resolve `base` templates (Lima would merge their "
              "mounts into this instance)")
    wanted = config.get("minimumLimaVersion")
    if wanted and version_tuple(str(wanted)) > version_tuple(VERSION):
        fatal(f"template requires Lima version {wanted}; this is only {VERSION}")
    vm_type = config.get("vmType", "qemu")
    if vm_type not in ("qemu", "vz", "krunkit", "wsl2"):
        fatal(f"field `vmType` must be \"qemu\", \"vz\", \"krunkit\" or \"wsl2\"; got {vm_type!r}")
    if vm_type == "vz" and os.uname().sysname != "Darwin":
        fatal('vmType "vz" is supported only on macOS')
    arch = config.get("arch", "default")
    if arch not in ("default", "x86_64", "aarch64", "armv7l", "riscv64", "s390x", "ppc64le"):
        fatal(f"field `arch` must be one of the known architectures; got {arch!r}")
    images = config.get("images")
    if not isinstance(images, list) or not images:
        fatal("field `images` must be set")
    for i, image in enumerate(images):
        if not isinstance(image, dict) or not isinstance(image.get("location"), str):
            fatal(f"field `images[{i}].location` must be set")
    cpus = config.get("cpus", 4)
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        fatal(f"field `cpus` must be a positive integer; got {cpus!r}")
    size(config.get("memory", "4GiB"), "memory")
    size(config.get("disk", "100GiB"), "disk")
    mount_type = config.get("mountType", "default")
    if mount_type not in ("default", "reverse-sshfs", "9p", "virtiofs", "wsl2"):
        fatal(f"field `mountType` must be \"reverse-sshfs\", \"9p\", \"virtiofs\" or "
              f"\"wsl2\"; got {mount_type!r}")
    if mount_type == "9p" and vm_type != "qemu":
        fatal(f"field `mountType` must not be \"9p\" for vmType {vm_type!r}")
    validate_mounts(config.get("mounts") or [])
    validate_forwards(config.get("portForwards") or [])
    for i, item in enumerate(config.get("provision") or []):
        mode = item.get("mode", "system")
        if mode not in PROVISION_MODES:
            fatal(f"field `provision[{i}].mode` must one of {sorted(PROVISION_MODES)}")
        if mode in ("system", "user") and not str(item.get("script", "")).startswith("#!"):
            fatal(f"field `provision[{i}].script` must start with a `#!` line")
    for key, value in (config.get("param") or {}).items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key):
            fatal(f"param {key!r} name is invalid")
        if not str(value).isprintable():
            fatal(f"param {key!r} value contains non-printable characters")


def validate_mounts(mounts: Any) -> None:
    if not isinstance(mounts, list):
        fatal("field `mounts` must be a list")
    points = set()
    for i, mount in enumerate(mounts):
        if not isinstance(mount, dict):
            fatal(f"field `mounts[{i}]` must be a mapping")
        for key in mount:
            if key not in MOUNT_KEYS:
                fatal(f"unknown field {key!r} in `mounts[{i}]`")
        location = mount.get("location")
        if not isinstance(location, str) or not (location.startswith(("/", "~"))):
            fatal(f"field `mounts[{i}].location` must be an absolute path, got {location!r}")
        point = mount.get("mountPoint") or location
        if not str(point).startswith("/"):
            fatal(f"field `mounts[{i}].mountPoint` must be an absolute path, got {point!r}")
        if point in points:
            fatal(f"field `mounts[{i}].mountPoint` must be unique: {point!r}")
        points.add(point)
        if not isinstance(mount.get("writable", False), bool):
            fatal(f"field `mounts[{i}].writable` must be a boolean")


def validate_forwards(forwards: Any) -> None:
    for i, rule in enumerate(forwards):
        for key in rule:
            if key not in FORWARD_KEYS:
                fatal(f"unknown field {key!r} in `portForwards[{i}]`")
        sockets = "guestSocket" in rule or "hostSocket" in rule
        if rule.get("reverse") and not ("guestSocket" in rule and "hostSocket" in rule):
            fatal(f"field `portForwards[{i}].reverse` can only be used for unix sockets")
        if sockets and not rule.get("guestSocket", "").startswith("/"):
            fatal(f"field `portForwards[{i}].guestSocket` must be an absolute path")


def expand(text: str, name: str) -> str:
    values = {"Dir": str(inst_dir(name)), "Name": name, "UID": str(os.getuid()),
              "User": os.environ.get("USER") or "root", "Home": str(Path.home())}
    return re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: values.get(m[1], m[0]), text)


def host_socket(rule: dict[str, Any], name: str) -> Path:
    path = Path(expand(rule["hostSocket"], name))
    return path if path.is_absolute() else inst_dir(name) / path


def guest_bin(name: str) -> Path:
    """The guest's own programs (a `sudo`), in its /var/lib/locki: the instance folder
    itself is on the host, where the guest does not see it."""
    path = inst_dir(name) / "guest" / "var-lib-locki" / ".fake-bin"
    path.mkdir(parents=True, exist_ok=True)
    sudo = path / "sudo"
    if not sudo.exists():
        sudo.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do case "$1" in\n'
                        '  -E|-n|-H) shift ;;\n  *=*) export "$1"; shift ;;\n'
                        '  *) break ;;\nesac; done\nexec "$@"\n')
        sudo.chmod(0o755)
    return path


def host_only() -> list[Path]:
    """locki's folders on the host that no mount of the VM shows (it mounts only the
    worktrees root and the shared home, both under the data folder)."""
    roots = {"XDG_CACHE_HOME": ".cache", "XDG_STATE_HOME": ".local/state",
             "XDG_CONFIG_HOME": ".config"}
    found = [Path(os.environ.get(var) or Path.home() / sub) / "locki"
             for var, sub in roots.items()]
    return [path for path in found if path.is_dir()]


def in_guest(name: str, argv: list[str], *, cwd: str | None = None,
             stdin: Any = None) -> int:
    """Run argv "in the VM": this host, with the VM's own /var/lib/locki."""
    state_dir = inst_dir(name) / "guest" / "var-lib-locki"
    state_dir.mkdir(parents=True, exist_ok=True)
    Path(GUEST_STATE).mkdir(parents=True, exist_ok=True)
    # The guest's own PATH, as a Debian guest has it: nothing of the caller's.
    guest_bin(name)
    env = {**os.environ, "PATH": f"{GUEST_STATE}/.fake-bin:{GUEST_PATH}"}
    # The VM sees the host through its two mounts only: locki's own host folders
    # (cache, state, config) are empty there, so a command that hands a host path
    # outside the mounts to the guest fails here as it would in a real VM.
    hidden = " && ".join(f"mount -t tmpfs -o size=1m locki-hidden {shlex.quote(str(d))}"
                         for d in host_only())
    wrapped = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind "$0" "$1" && shift && ' + (hidden + " && " if hidden else "")
               + 'exec "$@"', str(state_dir), GUEST_STATE, *argv]
    return subprocess.run(wrapped, cwd=cwd, env=env, stdin=stdin).returncode


def cmd_list(args: list[str]) -> None:
    as_json = "--json" in args
    names = [a for a in args if not a.startswith("-")]
    found = sorted(d.parent.name for d in home().glob("*/lima.yaml"))
    if names:
        missing = [n for n in names if n not in found]
        for n in missing:
            log("warning", f"No instance matching {n} found.")
        found = [n for n in found if n in names]
        if missing and not found:
            sys.exit(1)
    if not found:
        log("warning", "No instance found. Run `limactl create` to create an instance.")
        return
    for name in found:
        config = load(name)
        st = state(name)
        entry = {
            "name": name, "hostname": f"lima-{name}", "status": st["status"],
            "dir": str(inst_dir(name)), "vmType": config.get("vmType", "qemu"),
            "arch": os.uname().machine if config.get("arch", "default") == "default"
            else config["arch"],
            "cpus": config.get("cpus", 4), "memory": size(config.get("memory", "4GiB"), "m"),
            "disk": size(config.get("disk", "100GiB"), "d"),
            "sshConfigFile": str(inst_dir(name) / "ssh.config"),
            "config": config, "sshAddress": "127.0.0.1", "protected": False,
            "limaVersion": VERSION, "param": config.get("param") or {},
        }
        if st["status"] == "Running":
            entry.update(sshLocalPort=st.get("sshLocalPort"), hostAgentPID=st.get("pid"))
        if st.get("errors"):
            entry["errors"] = st["errors"]
        if as_json:
            print(json.dumps(entry))
        else:
            print(f"{name}  {st['status']}  127.0.0.1:{st.get('sshLocalPort', 0)}  "
                  f"{entry['vmType']}  {entry['arch']}  {entry['cpus']}")


def cmd_create(args: list[str]) -> None:
    name = next((a.split("=", 1)[1] for a in args if a.startswith("--name=")), None)
    files = [a for a in args if not a.startswith("-")]
    if not files:
        fatal("no template given")
    source = files[-1]
    try:
        config = json.loads(Path(source).read_text())
    except FileNotFoundError:
        fatal(f"failed to open template {source!r}: no such file")
    except json.JSONDecodeError as exc:
        fatal(f"failed to load YAML file {source!r}: the fake reads the JSON form of YAML "
              f"only ({exc})")
    name = name or Path(source).stem
    if (inst_dir(name) / "lima.yaml").exists():
        fatal(f'instance "{name}" already exists ({str(inst_dir(name))!r})')
    validate(config, source)
    inst_dir(name).mkdir(parents=True, exist_ok=True)
    (inst_dir(name) / "lima.yaml").write_text(json.dumps(config, indent=2))
    save_state(name, {"status": "Stopped"})
    log("info", f"Run `limactl start {name}` to start the instance.")


def forwards(name: str, config: dict[str, Any], on: bool) -> None:
    for rule in config.get("portForwards") or []:
        if "guestSocket" not in rule or "hostSocket" not in rule:
            continue
        guest = Path(expand(rule["guestSocket"], name))
        host = host_socket(rule, name)
        link, target = (guest, host) if rule.get("reverse") else (host, guest)
        if link.is_symlink() or link.exists():
            link.unlink()
        if on and link != target:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
            where = ("(host)", "(guest)") if rule.get("reverse") else ("(guest)", "(host)")
            log("info", f"Forwarding {str(target)!r} {where[0]} to {str(link)!r} {where[1]}")


def cmd_start(args: list[str]) -> None:
    names = [a for a in args if not a.startswith("-")]
    name = names[0] if names else "default"
    config = load(name)
    if state(name)["status"] == "Running":
        log("info", f'The instance "{name}" is already running. Run `limactl shell {name}` '
                    "to open the shell.")
        return
    for mount in config.get("mounts") or []:
        location = Path(expand(mount["location"], name)).expanduser()
        if not location.is_dir():
            fatal(f"mount location {str(location)!r} does not exist")
    log("info", f"Starting the instance {name!r} with VM driver {config.get('vmType')!r}")
    save_state(name, {"status": "Running", "pid": os.getpid(), "sshLocalPort": 60022})
    forwards(name, config, True)
    failed = []
    for i, item in enumerate(config.get("provision") or []):
        if item.get("mode", "system") != "system":
            continue
        script = inst_dir(name) / f"provision.system.{i:02d}"
        script.write_text(expand(item["script"], name))
        log_file = inst_dir(name) / "ha.stderr.log"
        with log_file.open("a") as out, script.open("rb") as source:
            rc = subprocess.run([sys.executable, __file__, "_guest", name, "bash", "-s"],
                                stdin=source, stdout=out, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            failed.append(f"provisioning script {i} failed with exit code {rc}")
    if failed:
        save_state(name, {"status": "Running", "pid": os.getpid(), "sshLocalPort": 60022,
                          "degraded": True})
        fatal("degraded, status={Running:true Degraded:true Exiting:false Errors:"
              f"[{'; '.join(failed)}] SSHLocalPort:60022}}")
    log("info", f"READY. Run `limactl shell {name}` to open the shell.")


def cmd_stop(args: list[str]) -> None:
    names = [a for a in args if not a.startswith("-")]
    name = names[0] if names else "default"
    config = load(name)
    status = state(name)["status"]
    if status != "Running":
        fatal(f'expected status "Running", got "{status}"')
    log("info", "Sending SIGINT to hostagent process")
    forwards(name, config, False)
    save_state(name, {"status": "Stopped"})
    log("info", "The host agent process has shut down")


def cmd_delete(args: list[str]) -> None:
    force = "--force" in args or "-f" in args
    for name in [a for a in args if not a.startswith("-")]:
        if not (inst_dir(name) / "lima.yaml").exists():
            log("warning", f'Ignoring non-existent instance "{name}"')
            continue
        if state(name)["status"] == "Running":
            if not force:
                fatal('expected status "Stopped", got "Running" (Hint: try --force)')
            forwards(name, load(name), False)
        wipe_guest_incus()
        shutil.rmtree(inst_dir(name))
        log("info", f'Deleted "{name}" ({str(inst_dir(name))!r})')


def wipe_guest_incus() -> None:
    """What goes with a real VM's disk: the Incus project of the locki installation this
    LIMA_HOME belongs to (found from the same environment). Nothing else on the host's
    daemon is touched."""
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share")
    id_file = data / "locki" / "installation-id"
    if not id_file.exists():
        return
    project = f"locki-{id_file.read_text().strip()}"
    incus = ["incus", "--project", project]
    names = subprocess.run([*incus, "list", "-f", "csv", "-c", "n"], capture_output=True,
                           text=True).stdout.split()
    for instance in names:
        subprocess.run([*incus, "delete", "--force", instance], capture_output=True)
    subprocess.run([*incus, "profile", "delete", "locki"], capture_output=True)
    subprocess.run(["incus", "project", "delete", project], capture_output=True)


def cmd_shell(args: list[str]) -> None:
    workdir = None
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] == "--workdir":
            workdir, i = args[i + 1], i + 2
        elif args[i].startswith("--workdir="):
            workdir, i = args[i].split("=", 1)[1], i + 1
        else:
            i += 1  # --start, --preserve-env, --tty=false: no effect here
    if i >= len(args):
        fatal("requires at least 1 arg(s), only received 0")
    name, command = args[i], args[i + 1:]
    if command[:1] == ["--"]:
        command = command[1:]
    load(name)
    if state(name)["status"] != "Running":
        fatal(f'instance "{name}" is stopped, run `limactl start {name}` to start the '
              "instance")
    if not command:
        fatal("the fake limactl runs commands only, not an interactive shell")
    sys.exit(in_guest(name, command, cwd=workdir or os.getcwd()))


def record(argv: list[str]) -> None:
    """Every call, for tests that pin the commands locki issues."""
    folder = home() / "_fake"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "calls.jsonl").open("a") as out:
        out.write(json.dumps(argv) + "\n")


def main(argv: list[str]) -> None:
    if argv[:1] != ["_guest"]:
        record(argv)
    args = [a for a in argv if not a.startswith(("--tty", "--debug", "--log-level"))]
    if not args or args[0] in ("-v", "--version", "version"):
        print(f"limactl version {VERSION}")
        return
    command, rest = args[0], args[1:]
    if command == "_guest":  # internal: the provisioning run of `start`
        sys.exit(in_guest(rest[0], rest[1:], stdin=sys.stdin))
    commands = {"list": cmd_list, "ls": cmd_list, "create": cmd_create, "start": cmd_start,
                "stop": cmd_stop, "delete": cmd_delete, "rm": cmd_delete, "shell": cmd_shell}
    if command not in commands:
        fatal(f'unknown command "{command}" for "limactl"')
    commands[command](rest)


if __name__ == "__main__":
    main(sys.argv[1:])
