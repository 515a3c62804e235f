"""The lab nodes' root filesystems: one Debian 12 base made once with debootstrap, copied per node.

The base holds what an air-gapped site's image would: systemd, sshd, sudo, and the build
dependencies of CPython (the nodes have no internet). Each node gets its own copy, hostname,
host keys, sshd address and authorized key, so booting it touches nothing of this machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from saf.build_deps import DEBIAN_BUILD_DEPS
from saf.lab.layout import NODE_USER, LabLayout, LabNode
from saf.lab.system import run

MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "iproute2",
    "iputils-ping",
    "procps",
    "ca-certificates",
    "curl",
    "nftables",
    "python3",
    "tk-dev",
    "rsync",  # `ray up` (benchmarks/rerun.py) syncs its config and key to the head with it
    *DEBIAN_BUILD_DEPS,
)
READY = ".saf-lab-base"  # written last; it names the packages, so a changed list makes the base again
# timers and units that have no business in a test node (and would fetch from the internet)
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-timesyncd.service",
    "getty@tty1.service",
    "console-getty.service",
)
SSHD_CONFIG = """# SAF lab: key authentication only
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
"""


def ensure_base(layout: LabLayout) -> None:
    """Make the base root filesystem once (a few minutes); later labs reuse it."""
    base = layout.base_rootfs
    if (base / READY).exists() and (base / READY).read_text() == base_marker():
        return
    staging = base.with_name(base.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "bookworm", str(staging), MIRROR],
        timeout=1800,
    )
    _configure_base(staging)
    (staging / READY).write_text(base_marker())
    shutil.rmtree(base, ignore_errors=True)
    staging.rename(base)


def base_marker() -> str:
    """What a finished base holds: a base made from another package list is made again."""
    return "debootstrap bookworm minbase + SAF lab configuration\npackages: " + " ".join(sorted(BASE_PACKAGES)) + "\n"


def _configure_base(root: Path) -> None:
    run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", "--uid", "1000", NODE_USER])
    sudoers = root / "etc/sudoers.d" / NODE_USER
    sudoers.write_text(f"{NODE_USER} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    (root / "etc/ssh/sshd_config.d/saf-lab.conf").write_text(SSHD_CONFIG)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # each node makes its own
    for unit in MASKED_UNITS:
        target = root / "etc/systemd/system" / unit
        target.unlink(missing_ok=True)
        target.symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("")  # each boot gets its own


# systemd-nspawn given a --network-namespace-path bind-mounts this machine's /sys into the node, so
# /sys/class/net would list this machine's interfaces (its eth0 at this machine's MTU), not the
# node's. Early at each boot, the node mounts a sysfs of its own network namespace over those two
# folders: the node then reads its own interfaces there, as a real machine does.
OWN_SYSFS_UNIT = "saf-lab-sysfs.service"
OWN_SYSFS = """# SAF lab: this node's own network interfaces in /sys/class/net
[Unit]
Description=SAF lab: /sys/class/net of this node's network namespace
DefaultDependencies=no
Before=sysinit.target network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mkdir -p /run/saf-lab-sysfs
ExecStart=/bin/mount -t sysfs sysfs /run/saf-lab-sysfs
ExecStart=/bin/mount --bind /run/saf-lab-sysfs/class/net /sys/class/net
ExecStart=/bin/mount --bind /run/saf-lab-sysfs/devices/virtual/net /sys/devices/virtual/net
ExecStart=/bin/umount /run/saf-lab-sysfs

[Install]
WantedBy=sysinit.target
"""


def make_node_root(layout: LabLayout, node: LabNode, nodes: list[LabNode], public_key: str) -> str:
    """The node's own root filesystem (a copy of the base) with its identity; returns its host key."""
    root = layout.node_dir(node.name) / "root"
    if not root.exists():
        staging = root.with_name("root.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", "--reflink=auto", str(layout.base_rootfs), str(staging)])
        _give_identity(staging, node, nodes, public_key)
        staging.rename(root)
    return " ".join((root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2])


def _give_identity(root: Path, node: LabNode, nodes: list[LabNode], public_key: str) -> None:
    (root / "etc/hostname").write_text(node.name + "\n")
    hosts = ["127.0.0.1 localhost", *(f"{n.address} {n.name}" for n in nodes)]
    (root / "etc/hosts").write_text("\n".join(hosts) + "\n")
    (root / "etc/ssh/sshd_config.d/saf-lab-listen.conf").write_text(f"ListenAddress {node.address}\n")
    run(["ssh-keygen", "-q", "-A", "-f", str(root)])
    _give_own_sysfs(root)
    ssh_dir = root / "home" / NODE_USER / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key)
    (ssh_dir / "authorized_keys").chmod(0o600)
    run(["chown", "-R", "1000:1000", str(ssh_dir)])


def _give_own_sysfs(root: Path) -> None:
    units = root / "etc/systemd/system"
    (units / OWN_SYSFS_UNIT).write_text(OWN_SYSFS)
    wants = units / "sysinit.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / OWN_SYSFS_UNIT).unlink(missing_ok=True)
    (wants / OWN_SYSFS_UNIT).symlink_to(f"/etc/systemd/system/{OWN_SYSFS_UNIT}")
