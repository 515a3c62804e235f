"""What the Ray service of a node runs: one definition of the command, for launchd and systemd.

Safe by default: Ray binds to the node's cluster ip, and the dashboard (which runs any code a
visitor submits) to the head's loopback unless the settings say ``dashboard_bind: cluster``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api.host import Host

from saf.auth import NODE_TOKEN_FILE, auth_environment, auth_mode
from saf.paths import on_node
from saf.ports import NODE_PORTS, port

LABEL_PREFIX = "org.saf.ray"  # launchd labels: org.saf.ray-head, org.saf.ray-worker


@dataclass(frozen=True)
class RayService:
    """The Ray service of one node, in the words both service managers need."""

    role: str
    user: str
    home: str
    venv_current: str
    arguments: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        return f"{LABEL_PREFIX}-{self.role}"

    @property
    def unit(self) -> str:
        return f"saf-ray-{self.role}.service"

    @property
    def ray(self) -> str:
        return f"{self.venv_current}/bin/ray"


def dashboard_host(host: Host) -> str:
    return host.data.head_ip if host.data.dashboard_bind == "cluster" else "127.0.0.1"


def pinned_port_arguments(data: object) -> tuple[str, ...]:
    """``--node-manager-port=6381 ...``: every port a node listens on, so a firewall can name them."""
    return tuple(entry.argument(getattr(data, entry.setting)) for entry in NODE_PORTS)


def ray_arguments(host: Host) -> tuple[str, ...]:
    """``ray start`` arguments for the node's role, ending in --block (the supervisor keeps it)."""
    data = host.data
    if data.role == "head":
        role_args = ("--head", port("ray_port").argument(data.ray_port), f"--dashboard-host={dashboard_host(host)}",
                     port("dashboard_port").argument(data.dashboard_port),
                     port("ray_client_server_port").argument(data.ray_client_server_port))
    else:
        role_args = (f"--address={data.head_ip}:{data.ray_port}",)
    return ("start", *role_args, f"--node-ip-address={data.cluster_ip}", *pinned_port_arguments(data),
            "--disable-usage-stats", "--block")


def node_auth_environment(host: Host, home: str) -> tuple[tuple[str, str], ...]:
    """``RAY_AUTH_MODE`` and ``RAY_AUTH_TOKEN_PATH`` (a path, never the token) for this node."""
    mode = auth_mode(host.data.ray_auth, host.data.ray_version)
    return auth_environment(mode, on_node(NODE_TOKEN_FILE, home))


def ray_service(host: Host, user: str, home: str, venv_current: str) -> RayService:
    environment = (
        ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1"),  # Ray refuses multi-node macOS clusters without it
        ("HOME", home),
        ("PATH", f"{venv_current}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        *node_auth_environment(host, home),
    )
    role = "head" if host.data.role == "head" else "worker"
    return RayService(role, user, home, venv_current, ray_arguments(host), environment)
