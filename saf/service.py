"""The Ray service of a node, in one place: what it runs, where its definition lives, how it is
addressed by launchd or systemd, and the order in which the nodes' services change.

Safe by default: Ray binds to the node's cluster ip, and the dashboard (which runs any code a
visitor submits) to the head's loopback unless the settings say ``dashboard_bind: cluster``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pyinfra.api.host import Host
from pyinfra.facts.server import Command, Home, User

from saf.auth import NODE_TOKEN_FILE, auth_environment, auth_mode
from saf.node_data import NodeData
from saf.node_os import is_macos
from saf.operations.order import role_barrier
from saf.paths import on_node
from saf.ports import NODE_PORTS, port
from saf.venv_spec import current_venv_path

LABEL_PREFIX = "org.saf.ray"  # launchd labels: org.saf.ray-head, org.saf.ray-worker
Role = Literal["head", "worker"]


def service_label(role: Role) -> str:
    """The launchd label of a role's Ray service: org.saf.ray-head, org.saf.ray-worker."""
    return f"{LABEL_PREFIX}-{role}"


def service_unit(role: Role) -> str:
    """The systemd unit of a role's Ray service: saf-ray-head.service, saf-ray-worker.service."""
    return f"saf-ray-{role}.service"


def is_system_service(data: NodeData, macos: bool) -> bool:
    """A LaunchDaemon / system unit (root installs it), else a LaunchAgent / user unit: see
    :func:`node_ray_service`."""
    return bool(data.use_sudo) and (data.macos_service == "daemon" or not macos)


class SupervisedProgram:
    """Where a program SAF supervises has its definition: a LaunchDaemon / system unit when ``system``
    (root installs it), else a LaunchAgent in the user's GUI session (``uid`` names it) / a user unit.
    Subclasses give ``label``, ``unit``, ``home``, ``system`` and ``uid``."""

    label: str
    unit: str
    home: str
    system: bool
    uid: str

    # --- launchd ---
    @property
    def plist_path(self) -> str:
        directory = "/Library/LaunchDaemons" if self.system else f"{self.home}/Library/LaunchAgents"
        return f"{directory}/{self.label}.plist"

    @property
    def launchd_domain(self) -> str:
        return "system" if self.system else f"gui/{self.uid}"

    @property
    def logs(self) -> str:
        return f"{self.home}/Library/Logs/saf"

    # --- systemd ---
    @property
    def unit_dir(self) -> str:
        return "/etc/systemd/system" if self.system else f"{self.home}/.config/systemd/user"

    @property
    def unit_path(self) -> str:
        return f"{self.unit_dir}/{self.unit}"


@dataclass(frozen=True)
class RayService(SupervisedProgram):
    """The Ray service of one node, in the words both service managers need.

    ``system``: a LaunchDaemon / system unit (root installs it; it runs as ``user``), else a
    LaunchAgent in the user's GUI session (``uid`` names it) / a user unit with lingering.
    """

    role: Role
    user: str
    home: str
    venv_current: str
    arguments: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    system: bool = True
    uid: str = ""

    @property
    def label(self) -> str:
        return service_label(self.role)

    @property
    def unit(self) -> str:
        return service_unit(self.role)

    @property
    def ray(self) -> str:
        return f"{self.venv_current}/bin/ray"

    @property
    def python(self) -> str:
        return f"{self.venv_current}/bin/python"


def in_role_order(host: Host, add_operations: Callable[[], None], first: Role = "head") -> None:
    """Add this host's operations so that pyinfra runs every one of them on the ``first`` role's
    node(s) before any on the others': the head before the workers (a worker joins a running head),
    or the workers first on the way down.

    pyinfra runs each operation on all its hosts before the next, in an order that only keeps each
    host's own operations in sequence: two hosts' different operations are otherwise interleaved
    (by the line numbers of their calls). One operation shared by every node, :func:`role_barrier`
    (its call is the same line for all), is added after the first role's operations and before the
    others', so the plan must put all of the first role's operations before all of the others'.
    """
    leads = host.data.role == first
    if leads:
        add_operations()
    role_barrier(name=f"Ray service: every {first} node before the others", first=first)
    if not leads:
        add_operations()


def dashboard_host(host: Host) -> str:
    return host.data.head_ip if host.data.dashboard_bind == "cluster" else "127.0.0.1"


def pinned_port_arguments(data: NodeData) -> tuple[str, ...]:
    """``--node-manager-port=6381 ...``: every port a node listens on, so a firewall can name them."""
    return tuple(entry.argument(getattr(data, entry.setting)) for entry in NODE_PORTS)


def ray_arguments(host: Host) -> tuple[str, ...]:
    """``ray start`` arguments for the node's role, ending in --block (the supervisor keeps it)."""
    data = host.data
    if data.role == "head":
        role_args = (
            "--head",
            port("ray_port").argument(data.ray_port),
            f"--dashboard-host={dashboard_host(host)}",
            port("dashboard_port").argument(data.dashboard_port),
            port("ray_client_server_port").argument(data.ray_client_server_port),
        )
    else:
        role_args = (f"--address={data.head_ip}:{data.ray_port}",)
    return (
        "start",
        *role_args,
        f"--node-ip-address={data.cluster_ip}",
        *pinned_port_arguments(data),
        *serve_resource_arguments(data),
        "--disable-usage-stats",
        "--block",
    )


SERVE_RESOURCE = "saf_serve"  # the custom resource a serving node offers: Ray Serve places one replica on each


def serve_resource_arguments(data: NodeData) -> tuple[str, ...]:
    """``--resources={"saf_serve": 1}`` on a node that serves the model (saf/node_scripts/serve_app.py
    asks for it), nothing elsewhere: changing which nodes serve changes the definition, restarting Ray there."""
    return (f'--resources={{"{SERVE_RESOURCE}": 1}}',) if getattr(data, "serves_model", False) else ()


def node_auth_environment(host: Host, home: str) -> tuple[tuple[str, str], ...]:
    """``RAY_AUTH_MODE`` and ``RAY_AUTH_TOKEN_PATH`` (a path, never the token) for this node."""
    mode = auth_mode(host.data.ray_auth, host.data.ray_version)
    return auth_environment(mode, on_node(NODE_TOKEN_FILE, home))


def ray_service(host: Host, user: str, home: str, venv_current: str, system: bool = True, uid: str = "") -> RayService:
    environment = (
        ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1"),  # Ray refuses multi-node macOS clusters without it
        ("HOME", home),
        ("PATH", f"{venv_current}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        *node_auth_environment(host, home),
    )
    role = "head" if host.data.role == "head" else "worker"
    return RayService(role, user, home, venv_current, ray_arguments(host), environment, system, uid)


def node_ray_service(host: Host) -> RayService:
    """The Ray service ``host`` runs, from its settings and facts.

    macOS: a LaunchDaemon unless ``macos_service: agent`` or ``use_sudo: false`` (installing a
    daemon needs root: then a LaunchAgent); Linux: a system unit unless ``use_sudo: false`` (then a
    user unit with lingering).
    """
    home = host.get_fact(Home)
    user = host.data.get("ssh_user") or host.get_fact(User)
    macos = is_macos(host)
    system = is_system_service(host.data, macos)
    uid = host.get_fact(Command, command="id -u") if macos and not system else ""
    return ray_service(host, user, home, current_venv_path(host.data.venv_root, home), system, uid)
