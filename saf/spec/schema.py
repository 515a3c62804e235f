"""The cluster file's schema: what a node and the settings may be, as pydantic models.

Each model refuses unknown keys and values of the wrong type (a YAML ``true`` is not a number, a
quoted ``"0.5"`` is not a ratio); a validator's ValueError says what is wrong and how to fix it.
Rules across nodes (one head, one machine per node, key files) are in :mod:`saf.spec.loading`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from saf.auth import RAY_AUTH_SINCE, has_token_auth, ray_has_auth
from saf.ports import PORT_SETTINGS, RAY_FIXED_PORTS, SINGLE_PORT_SETTINGS
from saf.spec.pins import python_pin_problems, supported_python
from saf.spec.serve import ServeSpec
from saf.spec.values import (
    folder_parts,
    folder_problem,
    git_url_problem,
    path_characters_problem,
    scope_id_problem,
    user_name_problem,
)

EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
EXACT_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==\d+(\.\d+)*$")
MACOS_VERSION = re.compile(r"^\d+(\.\d+){0,2}$")
NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
NODE_FOLDERS = ("venv_root", "pyenv_root")  # on every node, SAF's own: it prunes and tears down inside them
CONTROL_PATHS = (
    "wheelhouse",
    "python_source_cache",
    "ray_auth_token_file",
    "serve_api_key_file",
)  # on the control machine
OPTIONAL_PATHS = ("wheelhouse", "python_source_cache")  # "" turns them off
PATH_EXAMPLES = {
    "venv_root": "~/saf/venv or /opt/saf/venv",
    "pyenv_root": "~/.pyenv or /opt/saf/pyenv",
    "wheelhouse": '.saf/wheelhouse (or "" for none)',
    "python_source_cache": '.saf/python-source (or "" for none)',
    "ray_auth_token_file": ".saf/secrets/ray-auth-token",
    "serve_api_key_file": ".saf/secrets/serve-api-key",
}
USE_INSTEAD = "use the node's own address on the network that joins the nodes, like 192.168.1.42"


def usable_ip(value: str) -> str:
    """``value`` as a canonical IP address that one node can be reached at, or a ValueError that says why not."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(_not_an_address(value)) from None
    problem = _unusable(getattr(address, "ipv4_mapped", None) or address)
    if problem:
        raise ValueError(f"{value!r} is {problem}; {USE_INSTEAD}")
    scope_problem = scope_id_problem(address.scope_id) if getattr(address, "scope_id", None) is not None else None
    if scope_problem:
        raise ValueError(f"{value!r}: {scope_problem}")
    return str(address)


def own_path_fix(key: str) -> str:
    """How to fix a path setting: what the path is for, and an example."""
    if key in NODE_FOLDERS:
        return (
            f"SAF manages (and prunes) what is in {key} on every node, so give it a folder of its own, like "
            f"{PATH_EXAMPLES[key]}"
        )
    what = "a file" if key.endswith("_file") else "a folder"
    return (
        f"{key} is {what} of SAF's own on the control machine (relative paths are from the project "
        f"directory), like {PATH_EXAMPLES[key]}"
    )


def _not_an_address(value: str) -> str:
    if "/" in value:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            pass
        else:
            if network.num_addresses > 1 and network.network_address == ipaddress.ip_interface(value).ip:
                return f"{value!r} is a network, not one machine's address; {USE_INSTEAD}"
            return (
                f"{value!r} is written with a prefix length; write the address alone, like "
                f"{ipaddress.ip_interface(value).ip}"
            )
    return f"{value!r} is not an IP address; write it like 192.168.1.42"


def _unusable(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why no node can be reached at this address (link-local ones can: a Thunderbolt Bridge has only those)."""
    if address.is_loopback:
        return "a loopback address: it always means the machine itself, so no other node can reach it"
    if address.is_unspecified:
        return "the unspecified address: it means every address of a machine, not one node"
    if address.is_multicast:
        return "a multicast address: it names a group of listeners, not one node"
    if address == LIMITED_BROADCAST:
        return "the broadcast address: it reaches every machine on the link, not one node"
    return None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _looks_like_ip(value: str) -> bool:
    """Digits, dots and a slash (or colons): meant as an address, so judged as one."""
    return bool(re.fullmatch(r"[\d./]+", value)) or (":" in value and bool(re.fullmatch(r"[\dA-Fa-f:./%]+", value)))


def _is_localhost(name: str) -> bool:
    name = name.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSpec(_Strict):
    """One node of the cluster file."""

    name: StrictStr
    role: Literal["head", "worker"]
    address: StrictStr
    ip: StrictStr | None = None
    ssh_user: StrictStr | None = None
    ssh_port: StrictInt | None = Field(default=None, ge=1, le=65535)
    ssh_key: StrictStr | None = None
    ssh_known_hosts_file: StrictStr | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NODE_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a node name; use lowercase letters, digits and '-' (like alpha or mac-3)"
            )
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if is_ip(value) or _looks_like_ip(value):
            return usable_ip(value)
        if _is_localhost(value):
            raise ValueError(f"{value!r} is this machine's own name for itself; {USE_INSTEAD}, or the node's host name")
        if not HOSTNAME.fullmatch(value):
            raise ValueError(f"{value!r} is neither an IP address nor a host name SSH can connect to")
        return value

    @field_validator("ip")
    @classmethod
    def _cluster_ip(cls, value: str | None) -> str | None:
        return None if value is None else usable_ip(value)

    @field_validator("ssh_user")
    @classmethod
    def _ssh_user(cls, value: str | None) -> str | None:
        problem = None if value is None else user_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("ssh_key", "ssh_known_hosts_file")
    @classmethod
    def _key_file_path(cls, value: str | None) -> str | None:
        problem = None if value is None else path_characters_problem(value)
        if problem:
            raise ValueError(f"{value!r} {problem}; move or link the file to a path like ~/.ssh/id_ed25519")
        return value

    @model_validator(mode="after")
    def _ip_from_address(self) -> NodeSpec:
        if self.ip is None:
            if not is_ip(self.address):
                raise ValueError(
                    f"address {self.address!r} is a host name, so the node needs `ip:` too "
                    "(the cluster address Ray binds to and peers reach)"
                )
            object.__setattr__(self, "ip", self.address)
        return self

    @property
    def machine(self) -> str:
        """The address as one machine: host names compare case-insensitively, without a trailing dot."""
        return self.address.lower().rstrip(".")


class Settings(_Strict):
    """The merged settings: group_data/all.py defaults with the cluster file's overrides.

    Fields carry no defaults on purpose: the defaults live in group_data/all.py only.
    """

    python_version: StrictStr
    ray_version: StrictStr
    mlx_version: StrictStr
    extra_packages: list[StrictStr]
    venv_root: StrictStr
    pyenv_root: StrictStr
    pyenv_git_url: StrictStr
    python_source_cache: StrictStr
    wheelhouse: StrictStr
    ray_port: StrictInt
    dashboard_port: StrictInt
    node_manager_port: StrictInt
    object_manager_port: StrictInt
    runtime_env_agent_port: StrictInt
    dashboard_agent_grpc_port: StrictInt
    dashboard_agent_listen_port: StrictInt
    metrics_export_port: StrictInt
    ray_client_server_port: StrictInt
    min_worker_port: StrictInt
    max_worker_port: StrictInt
    mlx_backend: StrictStr
    mlx_ring_port: StrictInt
    dashboard_bind: Literal["loopback", "cluster"]
    macos_service: Literal["daemon", "agent"]
    ray_auth: Literal["auto", "token", "off"]
    foreign_ray: Literal["stop", "refuse"]
    ray_auth_token_file: StrictStr
    mtu: StrictInt = Field(ge=1280, le=9000)
    manage_mtu: StrictBool
    firewall: StrictBool
    trusted_network: StrictBool
    macos_power_settings: StrictBool
    verify_after_deploy: StrictBool
    verify_timeout_s: StrictInt = Field(ge=10, le=3600)
    verify_slow_ratio: StrictFloat = Field(gt=0, le=1)  # strict: a whole number is fine, true and "0.5" are not
    min_free_disk_gb: StrictInt = Field(ge=0)
    min_macos_version: StrictStr
    use_sudo: StrictBool
    serve_port: StrictInt  # checked with the serve: part (saf/spec/serve.py)
    serve_bind: Literal["loopback", "cluster"]
    serve_api_key_file: StrictStr
    serve_packages: list[StrictStr]

    @field_validator("python_version", "ray_version", "mlx_version")
    @classmethod
    def _exact_version(cls, value: str) -> str:
        if not EXACT_VERSION.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an exact version; pin all three parts, like 3.9.23, so that every "
                "node gets the same one"
            )
        return value

    @field_validator(
        "venv_root", "pyenv_root", "wheelhouse", "python_source_cache", "ray_auth_token_file", "serve_api_key_file"
    )
    @classmethod
    def _own_path(cls, value: str, info: ValidationInfo) -> str:
        if value == "" and info.field_name in OPTIONAL_PATHS:
            return value
        problem = "is empty" if not value else path_characters_problem(value)
        if problem is None and info.field_name in NODE_FOLDERS:
            problem = folder_problem(value)
        if problem:
            raise ValueError(f"{value!r} {problem}; {own_path_fix(info.field_name)}")
        return value

    @field_validator("extra_packages", "serve_packages")
    @classmethod
    def _exact_pins(cls, value: list[str]) -> list[str]:
        for pin in value:
            if not EXACT_PIN.fullmatch(pin):
                raise ValueError(f"{pin!r} is not an exact pin; write it like mlx-lm==0.28.0")
        return value

    @field_validator("mlx_backend")
    @classmethod
    def _mlx_backend(cls, value: str) -> str:
        if value != "ring":
            later = (
                " (RDMA over Thunderbolt 5 is not offered yet; `saf doctor` says which Macs have it)"
                if value == "jaccl"
                else ""
            )
            raise ValueError(f"{value!r} is not an MLX backend SAF provisions{later}; use ring")
        return value

    @field_validator(*PORT_SETTINGS, "mlx_ring_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1024 <= value <= 65535:
            raise ValueError(f"{value} is not a usable port; choose one from 1024 to 65535")
        return value

    @field_validator("min_macos_version")
    @classmethod
    def _macos_version(cls, value: str) -> str:
        if not MACOS_VERSION.fullmatch(value):
            raise ValueError(f"{value!r} is not a macOS version; write it like 14.0")
        return value

    @model_validator(mode="after")
    def _token_needs_a_ray_that_has_it(self) -> Settings:
        if self.ray_auth == "token" and not ray_has_auth(self.ray_version):
            raise ValueError(
                f"ray_auth is token but ray_version {self.ray_version} has no token authentication (it came "
                f"with Ray {RAY_AUTH_SINCE}); raise ray_version, or set ray_auth: auto"
            )
        return self

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        seen: dict[int, str] = {port: "Ray's own fixed metrics port" for port in RAY_FIXED_PORTS}
        for key in PORT_SETTINGS:
            port = getattr(self, key)
            if port in seen:
                raise ValueError(f"{key} and {seen[port]} are both {port}; give each its own port")
            seen[port] = key
        return self

    @model_validator(mode="after")
    def _worker_port_range(self) -> Settings:
        low, high = self.min_worker_port, self.max_worker_port
        if low >= high:
            raise ValueError(
                f"min_worker_port ({low}) must be below max_worker_port ({high}); Ray's own range is 10002-19999"
            )
        inside = [key for key in SINGLE_PORT_SETTINGS if low <= getattr(self, key) <= high]
        if inside:
            raise ValueError(
                f"{', '.join(inside)} ({', '.join(str(getattr(self, k)) for k in inside)}) falls in the "
                f"worker port range {low}-{high}; move it out, or narrow the range"
            )
        return self

    @model_validator(mode="after")
    def _python_the_pins_support(self) -> Settings:
        problems = python_pin_problems(self.python_version, {"ray": self.ray_version, "mlx": self.mlx_version})
        if problems:
            raise ValueError("; and ".join(problems))
        return self

    @model_validator(mode="after")
    def _pyenv_from_a_url_no_one_can_change(self) -> Settings:
        problem = git_url_problem(self.pyenv_git_url, self.trusted_network)
        if problem:
            raise ValueError(f"pyenv_git_url {problem}")
        return self

    @model_validator(mode="after")
    def _separate_node_folders(self) -> Settings:
        venvs, pyenv = (folder_parts(self.venv_root), folder_parts(self.pyenv_root))
        inner, outer = sorted((venvs, pyenv), key=lambda folder: len(folder[1]))[::-1]
        if inner[0] == outer[0] and inner[1][: len(outer[1])] == outer[1]:
            raise ValueError(
                f"venv_root ({self.venv_root}) and pyenv_root ({self.pyenv_root}) overlap; SAF prunes venv_root and "
                "pyenv manages its root, so give each a folder of its own, like ~/saf/venv and ~/.pyenv"
            )
        return self

    @model_validator(mode="after")
    def _ray_closed_to_strangers(self) -> Settings:
        if has_token_auth(self.ray_auth, self.ray_version) or self.firewall or self.trusted_network:
            return self
        raise ValueError(
            f"{self._why_no_token()} and firewall is false, so anyone on the network can reach Ray's ports and "
            "run any code on every node through its job API (Ray's security guidance; ShadowRay, CVE-2023-48022). "
            "Choose one: set firewall: true (only the cluster's nodes reach Ray; onboarding a new node then needs a "
            f"deploy without --limit, so the other nodes admit it); {self._token_fix()}; or set trusted_network: "
            "true, if no one else is on the network between the nodes"
        )

    @model_validator(mode="after")
    def _dashboard_on_the_network_only_when_closed(self) -> Settings:
        if self.dashboard_bind != "cluster" or has_token_auth(self.ray_auth, self.ray_version) or self.firewall:
            return self
        raise ValueError(
            f"dashboard_bind is cluster, but {self._why_no_token()} and firewall is false: the dashboard's job "
            "API would run code from anyone who reaches the head's cluster ip (trusted_network does not lift "
            f"this). Set firewall: true, or {self._token_fix()}; or keep dashboard_bind: loopback and reach the "
            "dashboard with `saf dashboard`"
        )

    def _why_no_token(self) -> str:
        if self.ray_auth == "off":
            return "ray_auth is off"
        return f"ray_version {self.ray_version} has no token authentication (it came with Ray {RAY_AUTH_SINCE})"

    @staticmethod
    def _token_fix() -> str:
        row = supported_python("ray", str(RAY_AUTH_SINCE))
        python = f" (with python_version {row.oldest[0]}.{row.oldest[1]} or newer)" if row else ""
        return f"pin ray_version {RAY_AUTH_SINCE} or newer{python} and keep ray_auth: auto, for token authentication"


class ClusterFile(_Strict):
    """The cluster file's top level as written; nodes are validated one by one afterwards."""

    nodes: list[Any] = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)
    serve: dict[str, Any] | None = None  # validated by saf.spec.serve once the nodes and settings are


@dataclass(frozen=True)
class Cluster:
    """A validated cluster: its nodes, its merged settings and where it came from."""

    path: Path
    nodes: tuple[NodeSpec, ...]
    settings: Settings
    serve: ServeSpec | None = None  # the model the cluster serves, if any

    @property
    def serving_nodes(self) -> tuple[NodeSpec, ...]:
        """The nodes that hold a replica (every node unless ``serve.nodes`` names some); none without serving."""
        if self.serve is None:
            return ()
        return tuple(node for node in self.nodes if self.serve.nodes is None or node.name in self.serve.nodes)

    @property
    def head(self) -> NodeSpec:
        return next(node for node in self.nodes if node.role == "head")

    @property
    def workers(self) -> tuple[NodeSpec, ...]:
        return tuple(node for node in self.nodes if node.role == "worker")

    def node(self, name: str) -> NodeSpec:
        return next(node for node in self.nodes if node.name == name)
