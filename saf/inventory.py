"""Turn a validated cluster into pyinfra inventory groups (``head``, ``workers``) with host data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from saf.mlx_ring import launch_hostfile
from saf.serve.model_dir import model_digest
from saf.spec import Cluster, ClusterFileError, NodeSpec, load_cluster
from saf.spec.serve import model_path

HostEntry = tuple[str, dict[str, Any]]
Group = tuple[list[HostEntry], dict[str, Any]]

_SSH_KEYS = ("ssh_user", "ssh_port", "ssh_key", "ssh_known_hosts_file")


def serve_data(cluster: Cluster) -> dict[str, Any] | None:
    """What every node knows of the served model (None when the cluster serves nothing): the model's
    directory on the control machine, its digest (the name it is staged under), mode and serving nodes."""
    if cluster.serve is None:
        return None
    path = model_path(cluster.path, cluster.serve.model).resolve()
    return {
        "model_path": str(path),
        "model_id": path.name,
        "model_digest": model_digest(path),
        "mode": cluster.serve.mode,
        "serving_nodes": [node.name for node in cluster.serving_nodes],
    }


def node_data(cluster: Cluster, node: NodeSpec, serve: dict[str, Any] | None = None) -> dict[str, Any]:
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
        serve=serve,
        serves_model=serve is not None and node.name in serve["serving_nodes"],
    )
    return data


def inventory_groups(cluster: Cluster) -> dict[str, Group]:
    """The pyinfra groups of a cluster: ``head`` (one host) and ``workers`` (maybe none)."""
    serve = serve_data(cluster)  # the model hashed once, not once per node

    def entries(nodes: tuple[NodeSpec, ...]) -> list[HostEntry]:
        return [(node.name, node_data(cluster, node, serve)) for node in nodes]

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
