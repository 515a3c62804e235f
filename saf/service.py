"""What the Ray service of a node runs: one definition of the command, for launchd and systemd.

Safe by default: Ray binds to the node's cluster ip, and the dashboard (which runs any code a
visitor submits) to the head's loopback unless the settings say ``dashboard_bind: cluster``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api.host import Host

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


def ray_arguments(host: Host) -> tuple[str, ...]:
    """``ray start`` arguments for the node's role, ending in --block (the supervisor keeps it)."""
    data = host.data
    if data.role == "head":
        role_args = ("--head", f"--port={data.ray_port}", f"--dashboard-host={dashboard_host(host)}",
                     f"--dashboard-port={data.dashboard_port}")
    else:
        role_args = (f"--address={data.head_ip}:{data.ray_port}",)
    return ("start", *role_args, f"--node-ip-address={data.cluster_ip}", "--disable-usage-stats", "--block")


def ray_service(host: Host, user: str, home: str, venv_current: str) -> RayService:
    environment = (
        ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1"),  # Ray refuses multi-node macOS clusters without it
        ("HOME", home),
        ("PATH", f"{venv_current}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
    )
    role = "head" if host.data.role == "head" else "worker"
    return RayService(role, user, home, venv_current, ray_arguments(host), environment)
