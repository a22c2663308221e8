"""Provisioning of the Lima VM: Incus installed and initialised inside, step by step.

The script is Lima's `mode: system` provisioning (it runs at every boot) and is also
piped in by `ensure_provisioned` when a step is pending. Each step has a read-only
check and a run; its marker (`MARKERS/<step>`) holds the step's version, so a failed or
changed step runs again while finished ones are skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from locki.core.runtime import VM_CACHE

MARKERS = "/var/lib/locki/provision"
GUEST_INCUS_SOCKET = "/var/lib/incus/unix.socket"
# Inside the VM only: the sandboxes' bridge and pool. The subnet is always explicit
# (Incus's automatic choice probes the network and can pick a subnet in use).
VM_BRIDGE = "lockibr0"
VM_SUBNET = "10.210.77.1/24"
VM_POOL = "default"


@dataclass(frozen=True)
class Step:
    """One provisioning step: `check` succeeds when its work is already there."""

    name: str
    check: str
    run: str

    @property
    def version(self) -> str:
        return hashlib.sha256(f"{self.check}\0{self.run}".encode()).hexdigest()[:16]


def provision_steps(uid: int, gid: int, disk_gib: int) -> list[Step]:
    """Install and initialise Incus in the VM. Every check is read-only, so a VM (or a
    host standing in for one) that already has a piece is left as it is."""
    incus = "incus --project default"
    steps = []
    if uid != 0:
        # raw.idmap maps the host user (the Lima user has the same uid) onto each
        # container's root; newuidmap allows that only for ids delegated to root. First,
        # so the daemon starts with root's range in place.
        ids = f"root:{uid}:1"
        steps.append(Step(
            "subids",
            f"grep -qx {ids} /etc/subuid && grep -qx root:{gid}:1 /etc/subgid "
            "&& grep -q '^root:1000000:' /etc/subuid",
            "usermod --add-subuids 1000000-1000999999 --add-subgids 1000000-1000999999 root"
            f"\n    usermod --add-subuids {uid}-{uid} "
            f"--add-subgids {gid}-{gid} root\n"
            "    systemctl try-restart incus.service || true"))
    steps.append(Step("packages", "command -v incus",
                      "export DEBIAN_FRONTEND=noninteractive\n    apt-get update -q\n"
                      "    apt-get install -y -q --no-install-recommends incus-base "
                      "incus-client dnsmasq-base btrfs-progs acl"))
    steps += [
        Step("daemon", "incus info",
             "systemctl enable --now incus.socket incus.service\n"
             "    incus admin waitready --timeout=120"),
        Step("storage", f"{incus} storage show {VM_POOL}",
             "if grep -qw btrfs /proc/filesystems || modprobe btrfs; then\n"
             f"        {incus} storage create {VM_POOL} btrfs size={disk_gib * 6 // 10}GiB"
             f"\n    else\n        {incus} storage create {VM_POOL} dir\n    fi"),
        Step("network", f"{incus} network show {VM_BRIDGE}",
             f"{incus} network create {VM_BRIDGE} ipv4.address={VM_SUBNET} ipv4.nat=true "
             "ipv6.address=none"),
        Step("profile",
             f"{incus} profile device get default root pool && "
             f"{incus} profile device get default eth0 network",
             f"{incus} profile device add default root disk path=/ pool={VM_POOL} || true\n"
             f"    {incus} profile device add default eth0 nic network={VM_BRIDGE} name=eth0"
             " || true"),
        # The sandboxes' shared package caches, on the VM's own disk (see runtime.VM_CACHE).
        Step("cache", f"test -d {VM_CACHE}", f"mkdir -p {VM_CACHE}"),
        # Lima forwards the Incus socket as the Lima user: it must be allowed in. The
        # group counts from its next login; Lima's SSH master session is older, so an
        # ACL on the socket lets that one in until the VM next boots.
        Step("access",
             '[ "$(id -u "$LOCKI_USER")" = 0 ] || id -nG "$LOCKI_USER" | grep -qw incus-admin',
             'usermod -aG incus-admin "$LOCKI_USER"\n'
             f'    setfacl -m "u:$LOCKI_USER:rw" {GUEST_INCUS_SOCKET} || true'),
    ]
    return steps


_PRELUDE = """\
#!/bin/bash
# Written by locki. Each step leaves $M/<step> holding its version: a step whose marker
# is missing or stale runs again (its check first: work already there is kept).
set -eu -o pipefail
M={markers}
# Lima fills in its user here; a re-run through `limactl shell` passes LOCKI_USER.
lima_user='{{{{.User}}}}'
LOCKI_USER="${{LOCKI_USER:-$lima_user}}"
mkdir -p "$M"
step() {{
    if [ "$(cat "$M/$1" 2>/dev/null || true)" = "$2" ]; then
        echo "locki-provision: $1: done"
        return 0
    fi
    if ! "check_$1" >/dev/null 2>&1; then
        echo "locki-provision: $1: running"
        "run_$1"
        "check_$1" >/dev/null || {{ echo "locki-provision: $1: failed" >&2; exit 1; }}
    fi
    printf '%s\\n' "$2" > "$M/.$1.new" && mv -f "$M/.$1.new" "$M/$1"
    echo "locki-provision: $1: ok"
}}
"""


def provision_script(steps: list[Step]) -> str:
    parts = [_PRELUDE.format(markers=MARKERS)]
    for step in steps:
        parts.append(f"check_{step.name}() {{\n    {step.check}\n}}\n"
                     f"run_{step.name}() {{\n    {step.run}\n}}\n")
    parts += [f"step {step.name} {step.version}\n" for step in steps]
    return "".join(parts)


READ_MARKERS = (f'cd {MARKERS} 2>/dev/null || exit 0; for f in *; do [ -f "$f" ] && '
                'printf "%s %s\\n" "$f" "$(cat "$f")"; done; true')


def pending_steps(steps: list[Step], done: dict[str, str]) -> tuple[str, ...]:
    """The steps whose marker is missing or holds another version."""
    return tuple(s.name for s in steps if done.get(s.name) != s.version)
