#!/usr/bin/env bash
# Bring this machine to the point where locki and its tests can run for real:
# a Python environment for locki, an Incus daemon started by hand (no systemd needed),
# a storage pool, a bridge with an explicit subnet, and a small Debian image built
# with debootstrap (no image server is needed). Every step checks first and skips what
# is already done, so running it again is cheap.
#
#   scripts/host-setup.sh          set everything up (default)
#   scripts/host-setup.sh stop     stop incusd (and its instances) again
#
# Environment knobs:
#   LOCKI_BRIDGE        name of the bridge to create            (lockibr0)
#   LOCKI_BRIDGE_CIDR   its gateway address; always explicit    (10.210.77.1/24)
#   LOCKI_POOL          storage pool name                       (default)
#   LOCKI_IMAGE_ALIAS   alias of the test image                 (locki-test)
#   LOCKI_IMAGE_CACHE   where the built image archive is kept   (/var/cache/locki-ci)
set -euo pipefail

BRIDGE=${LOCKI_BRIDGE:-lockibr0}
BRIDGE_CIDR=${LOCKI_BRIDGE_CIDR:-10.210.77.1/24}
POOL=${LOCKI_POOL:-default}
CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
IMAGE_ALIAS=${LOCKI_IMAGE_ALIAS:-locki-test}
IMAGE_CACHE=${LOCKI_IMAGE_CACHE:-/var/cache/locki-ci}
# What the test image holds. Changing this list changes the cache key, so the image is
# rebuilt rather than an old one silently reused.
IMAGE_PACKAGES=systemd,systemd-sysv,systemd-resolved,udev,dbus,iproute2,ca-certificates,netbase,procps,bash,git,openssh-client,python3,curl,podman,crun,fuse-overlayfs,uidmap,slirp4netns,containernetworking-plugins,iptables
INCUSD=/usr/libexec/incus/incusd
HERE=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

say() { printf '[host-setup %s] %s\n' "$(date +%T)" "$*" >&2; }

[ "$(id -u)" = 0 ] || { say "run as root (it installs packages and starts incusd)"; exit 1; }

apt_mirror() {
    # The Debian mirror this machine already uses, so nothing else is contacted.
    local uri
    uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '{print $2}' | grep -vE 'security|backports' | grep -E '/debian/?$' | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' |
            grep -v security | head -n1 || true)
    fi
    [ -n "$uri" ] || { say "no Debian mirror found in the apt sources"; exit 1; }
    echo "${uri%/}"
}

install_packages() {
    # python3-venv: the uid-mapping test builds a venv a non-root user may run.
    local want=(incus-base incus-client dnsmasq-base debootstrap zstd btrfs-progs git python3-venv) missing=()
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then say "packages present"; return; fi
    local suite=()
    # Incus 6.0 is in bookworm-backports on Debian 12 and in the main suite later on.
    if [ "$CODENAME" = bookworm ]; then
        if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
                "$(apt_mirror)" /usr/share/keyrings/debian-archive-keyring.gpg \
                > /etc/apt/sources.list.d/locki-backports.sources
        fi
        suite=(-t bookworm-backports)
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    # incus-base and incus-client: the daemon without QEMU (containers only).
    apt-get install -y -qq --no-install-recommends "${suite[@]}" "${missing[@]}" >/dev/null
}

ensure_npm() {
    # locki fetches mise with `npm pack` (from the registry npm is configured for).
    if command -v npm >/dev/null 2>&1; then say "npm present"; return; fi
    say "installing npm"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends npm >/dev/null
}

ensure_subids() {
    # incusd maps container ids into root's subordinate range and reads it at start-up.
    local added=
    grep -q '^root:' /etc/subuid 2>/dev/null || { usermod --add-subuids 1000000-1000999999 root; added=1; }
    grep -q '^root:' /etc/subgid 2>/dev/null || { usermod --add-subgids 1000000-1000999999 root; added=1; }
    if [ -n "$added" ] && "$INCUSD" waitready --timeout=1 >/dev/null 2>&1; then
        say "subordinate ids added; restarting incusd to read them"
        stop_daemon
    fi
}

start_daemon() {
    # Many systemd containers share one host uid, hence one inotify instance budget.
    sysctl -qw fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576 || true
    if "$INCUSD" waitready --timeout=1 >/dev/null 2>&1; then say "incusd running"; return; fi
    mkdir -p /var/log/incus /run/locki-ci
    # Started directly: there is no systemd here, and the init script trips over
    # resource limits this machine does not let root raise.
    setsid "$INCUSD" --group incus-admin --logfile=/var/log/incus/incusd.log \
        </dev/null >>/var/log/incus/incusd.out 2>&1 &
    echo $! > /run/locki-ci/incusd.pid
    "$INCUSD" waitready --timeout=90
    say "incusd started"
}

ensure_pool_and_bridge() {
    if ! incus storage show "$POOL" >/dev/null 2>&1; then
        # btrfs on a loop file makes container copies instant; dir is the fallback.
        incus storage create "$POOL" btrfs size=20GiB >/dev/null 2>&1 ||
            incus storage create "$POOL" dir >/dev/null
        say "storage pool $POOL: $(incus storage get "$POOL" source 2>/dev/null || true)"
    fi
    if ! incus network show "$BRIDGE" >/dev/null 2>&1; then
        # Never an automatic subnet: its probe sends traffic off this machine.
        incus network create "$BRIDGE" ipv4.address="$BRIDGE_CIDR" ipv4.nat=true \
            ipv6.address=none >/dev/null
        say "bridge $BRIDGE ($BRIDGE_CIDR) created"
    fi
    # locki copies the pool and the bridge from the default profile into its own.
    local devices
    devices=$(incus profile device list default)
    grep -qx root <<<"$devices" ||
        incus profile device add default root disk path=/ pool="$POOL" >/dev/null
    grep -qx eth0 <<<"$devices" ||
        incus profile device add default eth0 nic network="$BRIDGE" name=eth0 >/dev/null
}

build_image() {
    local out=$1 work root mirror
    mirror=$(apt_mirror)
    work=$(mktemp -d /var/tmp/locki-image.XXXXXX)
    root=$work/rootfs
    say "debootstrap $CODENAME with $IMAGE_PACKAGES (about a minute)"
    if ! debootstrap --variant=minbase --include="$IMAGE_PACKAGES" "$CODENAME" "$root" \
        "$mirror" >"$work/debootstrap.log" 2>&1; then
        tail -n 20 "$work/debootstrap.log" >&2
        exit 1
    fi
    # DHCP through systemd-networkd. udev has to be there, or eth0 stays "pending".
    mkdir -p "$root/etc/systemd/network"
    printf '[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n' >"$root/etc/systemd/network/eth0.network"
    chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service \
        >/dev/null 2>&1
    # Each container makes its own machine-id on first boot.
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    printf 'deb %s %s main\n' "$mirror" "$CODENAME" >"$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    mkdir -p "$work/templates"
    printf '{{ instance.name }}\n' >"$work/templates/hostname.tpl"
    printf '127.0.0.1 localhost\n127.0.1.1 {{ instance.name }}\n' >"$work/templates/hosts.tpl"
    cat >"$work/metadata.yaml" <<EOF
architecture: $(uname -m)
creation_date: $(date +%s)
properties:
  description: Debian $CODENAME with systemd (locki test image)
  os: debian
  release: $CODENAME
templates:
  /etc/hostname:
    when: [create, copy, rename]
    template: hostname.tpl
  /etc/hosts:
    when: [create, copy, rename]
    template: hosts.tpl
EOF
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$work" -cf - metadata.yaml templates rootfs |
        zstd -q -T0 -3 -f -o "$out.partial"
    mv -f "$out.partial" "$out"
    rm -rf "$work"
    say "image archive $out ($(du -h "$out" | cut -f1))"
}

ensure_image() {
    local key archive
    key=$(printf '%s %s' "$CODENAME" "$IMAGE_PACKAGES" | sha256sum | cut -c1-12)
    archive=$IMAGE_CACHE/$IMAGE_ALIAS-$key.tar.zst
    if [ "$(incus image get-property "$IMAGE_ALIAS" user.locki-ci.key 2>/dev/null || true)" = "$key" ]; then
        say "image $IMAGE_ALIAS present"; return
    fi
    mkdir -p "$IMAGE_CACHE"
    [ -s "$archive" ] || build_image "$archive"
    incus image delete "$IMAGE_ALIAS" >/dev/null 2>&1 || true
    incus image import "$archive" --alias "$IMAGE_ALIAS" >/dev/null
    incus image set-property "$IMAGE_ALIAS" user.locki-ci.key "$key"
    say "image $IMAGE_ALIAS imported"
}

ensure_python_env() {
    # uv comes from PyPI; the project's virtualenv (.venv) holds locki and its tests.
    python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
    (cd "$HERE" && python3 -m uv sync --quiet)
    say "python environment ready: $HERE/.venv"
}

stop_daemon() {
    "$INCUSD" waitready --timeout=1 >/dev/null 2>&1 && incus admin shutdown --timeout 120 || true
    local pid
    pid=$(cat /run/locki-ci/incusd.pid 2>/dev/null || true)
    # A zombie is as good as gone: nothing reaps children here.
    for _ in $(seq 100); do
        [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] && [ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ] ||
            break
        sleep 0.1
    done
    rm -f /run/locki-ci/incusd.pid
}

case "${1:-up}" in
up)
    install_packages
    ensure_npm
    ensure_subids
    start_daemon
    ensure_pool_and_bridge
    ensure_image
    ensure_python_env
    say "ready: runtime incus, image alias $IMAGE_ALIAS"
    ;;
stop) stop_daemon ;;
*)
    echo "usage: $0 [up|stop]" >&2
    exit 2
    ;;
esac
