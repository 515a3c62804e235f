"""Where the verification runs (which node drives it) and what it expects, from the cluster file's data."""

from __future__ import annotations

from typing import Any

from saf.auth import protection
from saf.verify.strays import census_commands


def verification_host(state: Any, cluster_nodes: list[dict]) -> str:
    """The head when it is part of this run, else the first node of the run (``--limit gamma``)."""
    in_run = [
        node["name"]
        for node in cluster_nodes
        if state.limit_hosts is None or node["name"] in {h.name for h in state.limit_hosts}
    ]
    heads = [node["name"] for node in cluster_nodes if node["role"] == "head" and node["name"] in in_run]
    return heads[0] if heads else (in_run[0] if in_run else "")


def expectation(data: Any) -> dict:
    """What every node must show: the whole cluster (not just the limited nodes) and the pins."""
    return {
        "nodes": [{**node, "census": census_commands(node["role"], data)} for node in data.cluster_nodes],
        "pins": {"python": data.python_version, "ray": data.ray_version, "mlx": data.mlx_version},
        "mtu": data.mtu if data.manage_mtu else 1500,
        "slow_ratio": data.verify_slow_ratio,
        "collective": {"backend": data.mlx_backend, "port": data.mlx_ring_port},
        "protection": protection(data),  # said by the report, not checked by the driver
    }
