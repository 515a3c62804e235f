"""Turn a validated cluster into pyinfra inventory groups (``head``, ``workers``) with host data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from saf.mlx_ring import launch_hostfile
from saf.spec import Cluster, ClusterFileError, NodeSpec, load_cluster

HostEntry = tuple[str, dict[str, Any]]
Group = tuple[list[HostEntry], dict[str, Any]]

_SSH_KEYS = ("ssh_user", "ssh_port", "ssh_key", "ssh_known_hosts_file")


def node_data(cluster: Cluster, node: NodeSpec) -> dict[str, Any]:
    """Host data for one node: connection, role, cluster addresses and every merged setting."""
    data: dict[str, Any] = {"ssh_hostname": node.address}
    for key in _SSH_KEYS:
        value = getattr(node, key)
        if value is not None:
            data[key] = value
    if node.ssh_known_hosts_file:
        # A lab or site known-hosts file is authoritative: refuse unknown host keys.
        data["ssh_strict_host_key_checking"] = "yes"
    data.update(cluster.settings.model_dump())
    data.update(
        role=node.role,
        cluster_ip=node.ip,
        head_ip=cluster.head.ip,
        cluster_nodes=[{"name": n.name, "role": n.role, "ip": n.ip} for n in cluster.nodes],
        cluster_file=str(cluster.path),
        mlx_hostfile=launch_hostfile(cluster.nodes),
    )
    return data


def inventory_groups(cluster: Cluster) -> dict[str, Group]:
    """The pyinfra groups of a cluster: ``head`` (one host) and ``workers`` (maybe none)."""
    def entries(nodes: tuple[NodeSpec, ...]) -> list[HostEntry]:
        return [(node.name, node_data(cluster, node)) for node in nodes]

    return {"head": (entries((cluster.head,)), {}), "workers": (entries(cluster.workers), {})}


def load_groups_or_exit(project_dir: Path | str) -> dict[str, Group]:
    """For inventory.py: the groups, or the cluster file's problems on stderr and exit status 2.

    SystemExit passes through pyinfra's CLI untouched, so the user sees our message, not a traceback.
    """
    try:
        return inventory_groups(load_cluster(project_dir))
    except ClusterFileError as error:
        print(f"saf: {error}", file=sys.stderr)
        raise SystemExit(2) from None
