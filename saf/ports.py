"""Every port Ray listens on, as data: the one catalogue the service, the firewall and the
validation read.

Each pinned port is a setting of group_data/all.py named like the ``ray start`` option that pins
it; ``scope`` says whether only the head listens on it or every node does. The worker range is
two settings that bound a range rather than name a port. Ray's head also listens on two ports
that no option sets (its autoscaler's and its dashboard's metrics): they are listed beside the
settings so that nothing else may take them and the firewall covers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from saf.node_data import NodeData, PortSettings


@dataclass(frozen=True)
class RayPort:
    """One port setting: its key in the settings, the ``ray start`` option and who listens."""

    setting: str
    option: str
    scope: Literal["head", "node"]  # head: only the head listens; node: every node does
    worker_range: Literal["min", "max", None] = None  # a bound of the worker processes' range

    def argument(self, value: int) -> str:
        return f"{self.option}={value}"


PORTS: tuple[RayPort, ...] = (
    RayPort("ray_port", "--port", "head"),
    RayPort("dashboard_port", "--dashboard-port", "head"),
    RayPort("ray_client_server_port", "--ray-client-server-port", "head"),
    RayPort("node_manager_port", "--node-manager-port", "node"),
    RayPort("object_manager_port", "--object-manager-port", "node"),
    RayPort("runtime_env_agent_port", "--runtime-env-agent-port", "node"),
    RayPort("dashboard_agent_grpc_port", "--dashboard-agent-grpc-port", "node"),
    RayPort("dashboard_agent_listen_port", "--dashboard-agent-listen-port", "node"),
    RayPort("metrics_export_port", "--metrics-export-port", "node"),
    RayPort("min_worker_port", "--min-worker-port", "node", worker_range="min"),
    RayPort("max_worker_port", "--max-worker-port", "node", worker_range="max"),
)

# ports Ray's head always listens on, set by no `ray start` option (its autoscaler and dashboard metrics)
RAY_FIXED_PORTS: tuple[int, ...] = (44217, 44227)

# Ray's own defaults and Redis's: where a Ray started by hand listens (its GCS on 6379 or the seeds'
# 6380, its dashboard, its client server), whatever this cluster's settings pin
RAY_DEFAULT_PORTS: tuple[int, ...] = (6379, 6380, 8265, 10001)

PORT_SETTINGS: tuple[str, ...] = tuple(port.setting for port in PORTS)
# settings that each name one port (every one but the two bounds of the worker range)
SINGLE_PORT_SETTINGS: tuple[str, ...] = tuple(port.setting for port in PORTS if port.worker_range is None)
# the ports every node listens on, pinned by options common to both roles (the head's own are role arguments)
NODE_PORTS: tuple[RayPort, ...] = tuple(port for port in PORTS if port.scope == "node")


def port(setting: str) -> RayPort:
    return next(entry for entry in PORTS if entry.setting == setting)


def single_ports(data: NodeData) -> tuple[int, ...]:
    """Every single port Ray listens on somewhere in the cluster, with these settings: the port
    settings and Ray's fixed ports (the worker range aside)."""
    return (*(getattr(data, key) for key in SINGLE_PORT_SETTINGS), *RAY_FIXED_PORTS)


def worker_range(data: NodeData) -> tuple[int, int]:
    return data.min_worker_port, data.max_worker_port


def ring_ports(base: int, ranks: int) -> tuple[int, int]:
    """The MLX ring's ports, first and last: rank r listens on ``base + r`` (as ``mlx.launch
    --starting-port`` numbers them, one connection per ip)."""
    return base, base + max(ranks, 1) - 1


def mlx_ring_ports(data: NodeData) -> tuple[int, int]:
    """The ring's ports for this cluster: one rank per node of the cluster file."""
    return ring_ports(data.mlx_ring_port, len(data.cluster_nodes))


def ring_port_clashes(data: PortSettings, ranks: int) -> list[str]:
    """What the ring's ports would take from Ray (settings named, with their ports), for ``ranks`` nodes."""
    low, high = ring_ports(data.mlx_ring_port, ranks)
    clashes = [f"{key} ({getattr(data, key)})" for key in SINGLE_PORT_SETTINGS if low <= getattr(data, key) <= high]
    clashes += [f"Ray's fixed metrics port {port}" for port in RAY_FIXED_PORTS if low <= port <= high]
    if low <= data.max_worker_port and data.min_worker_port <= high:
        clashes.append(f"the worker port range {data.min_worker_port}-{data.max_worker_port}")
    return clashes


def unnamed_listener_ports(data: NodeData) -> frozenset[int]:
    """Where a listener whose process the OS does not name (another user's, read without root)
    counts as Ray's: the settings' single ports, Ray's fixed ones and its defaults. Not the worker
    range: Ray's workers come and go there, a socket seen as a worker exits has no process left to
    name (seen on the lab), and another user's Ray there shows in ``ps`` anyway."""
    return frozenset((*single_ports(data), *RAY_DEFAULT_PORTS))
