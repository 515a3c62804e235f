"""Where the lab keeps its state, and how its nodes are named and addressed."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

NODE_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
BRIDGE = "saf-br0"
SUBNET = ipaddress.ip_network("10.77.0.0/24")
NODE_USER = "saf"
PYTHON_VERSION = "3.11.2"  # Debian 12's python3.11 source is byte-identical to upstream's tarball


@dataclass(frozen=True)
class LabNode:
    """One lab node: its name, role, address and namespace."""

    name: str
    role: str
    address: str

    @property
    def netns(self) -> str:
        return f"saf-{self.name}"

    @property
    def host_veth(self) -> str:
        return f"saf-{self.name}"[:15]


@dataclass(frozen=True)
class LabLayout:
    """The lab's files under ``<project>/.saf/lab``."""

    project: Path

    @property
    def root(self) -> Path:
        return self.project / ".saf" / "lab"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def base_rootfs(self) -> Path:
        return self.cache / "rootfs-base"

    @property
    def python_cache(self) -> Path:
        return self.cache / "python"

    @property
    def pyenv_mirror(self) -> Path:
        return self.cache / "pyenv.git"

    @property
    def nodes_dir(self) -> Path:
        return self.root / "nodes"

    def node_dir(self, name: str) -> Path:
        return self.nodes_dir / name

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def ssh_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.yaml"

    @property
    def git_daemon_pid(self) -> Path:
        return self.root / "git-daemon.pid"


def gateway() -> str:
    return str(SUBNET.network_address + 1)


def outsider_address() -> str:
    return str(SUBNET.network_address + 250)


def lab_nodes(count: int) -> list[LabNode]:
    """alpha (head), then workers beta, gamma...: addresses .11, .12, ..."""
    if not 1 <= count <= len(NODE_NAMES):
        raise ValueError(f"the lab has 1 to {len(NODE_NAMES)} nodes, not {count}")
    return [
        LabNode(name, "head" if index == 0 else "worker", str(SUBNET.network_address + 11 + index))
        for index, name in enumerate(NODE_NAMES[:count])
    ]
