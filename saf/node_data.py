"""What a node's settings look like to the code that reads them: ``host.data`` (pyinfra's HostData,
built by ``saf/inventory.py`` from ``group_data/all.py`` and the cluster file) or, for the port
rules, the cluster file's ``Settings`` themselves. Types for the type checker only: nothing here
runs, and a setting read by name (``getattr(data, "ray_port")``) needs no entry."""

from __future__ import annotations

from typing import Any, Literal, Protocol


class PortSettings(Protocol):
    """The settings the port rules read by attribute (``saf/ports.py``)."""

    min_worker_port: int
    max_worker_port: int
    mlx_ring_port: int


class NodeData(PortSettings, Protocol):
    """One node's ``host.data``, as far as SAF's modules read it by attribute."""

    role: str
    head_ip: str
    cluster_nodes: list[dict[str, Any]]
    ray_port: int
    ray_version: str
    ray_auth: Literal["auto", "token", "off"]
    dashboard_port: int
    dashboard_bind: Literal["loopback", "cluster"]
    macos_service: Literal["daemon", "agent"]
    use_sudo: bool
    verify_timeout_s: int
    serve: dict[str, Any] | None
    serve_port: int
    serve_bind: Literal["loopback", "cluster"]
