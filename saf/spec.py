"""The cluster spec: the cluster file and the merged settings, loaded and validated.

The cluster file (``cluster.yaml`` beside ``inventory.py``, or the path in ``SAF_CLUSTER``) is the
only file a user writes: the node list and optional overrides of the defaults in
``group_data/all.py``. Everything is validated here, before any host is contacted; every problem
becomes one line of a :class:`ClusterFileError` that names the file, the node or key, and the fix.
"""

from __future__ import annotations

import ipaddress
import os
import re
import runpy
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from saf.auth import RAY_AUTH_SINCE, ray_has_auth
from saf.ports import PORT_SETTINGS, RAY_FIXED_PORTS, SINGLE_PORT_SETTINGS

CLUSTER_ENV = "SAF_CLUSTER"
DEFAULT_CLUSTER_FILE = "cluster.yaml"
GROUP_DATA_ALL = Path("group_data") / "all.py"

EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
EXACT_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==\d+(\.\d+)*$")
NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class ClusterFileError(Exception):
    """A cluster file or setting that cannot be used; the message says where and how to fix it."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        head = f"Cannot use the cluster file {self.path}:"
        if len(self.problems) == 1:
            return f"{head} {self.problems[0]}"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address; write it like 192.168.1.42") from None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


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
        if not NODE_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a node name; use lowercase letters, digits and '-' (like alpha or mac-3)"
            )
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if _is_ip(value):
            return _ip(value)
        if not HOSTNAME.match(value):
            raise ValueError(f"{value!r} is neither an IP address nor a host name SSH can connect to")
        return value

    @field_validator("ip")
    @classmethod
    def _cluster_ip(cls, value: str | None) -> str | None:
        return None if value is None else _ip(value)

    @model_validator(mode="after")
    def _ip_from_address(self) -> NodeSpec:
        if self.ip is None:
            if not _is_ip(self.address):
                raise ValueError(
                    f"address {self.address!r} is a host name, so the node needs `ip:` too "
                    "(the cluster address Ray binds to and peers reach)"
                )
            object.__setattr__(self, "ip", self.address)
        return self


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
    dashboard_bind: Literal["loopback", "cluster"]
    macos_service: Literal["daemon", "agent"]
    ray_auth: Literal["auto", "token", "off"]
    ray_auth_token_file: StrictStr
    mtu: StrictInt = Field(ge=1280, le=9000)
    manage_mtu: StrictBool
    firewall: StrictBool
    macos_power_settings: StrictBool
    verify_timeout_s: StrictInt = Field(ge=10, le=3600)
    verify_slow_ratio: float = Field(gt=0, le=1)
    min_free_disk_gb: StrictInt = Field(ge=0)
    min_macos_version: StrictStr
    use_sudo: StrictBool

    @field_validator("python_version", "ray_version", "mlx_version")
    @classmethod
    def _exact_version(cls, value: str) -> str:
        if not EXACT_VERSION.match(value):
            raise ValueError(
                f"{value!r} is not an exact version; pin all three parts, like 3.9.23, so that every "
                "node gets the same one"
            )
        return value

    @field_validator("venv_root", "pyenv_root")
    @classmethod
    def _own_directory(cls, value: str) -> str:
        parts = [part for part in value.replace("~", "", 1).split("/") if part not in ("", ".")]
        if not value.strip() or not parts or ".." in parts or value.strip() != value:
            raise ValueError(
                f"{value!r} is not a directory of its own; SAF manages (and prunes) what is in it, so give "
                "it a dedicated path like ~/saf/venv or /opt/saf/venv, never the home directory or /"
            )
        return value

    @field_validator("extra_packages")
    @classmethod
    def _exact_pins(cls, value: list[str]) -> list[str]:
        for pin in value:
            if not EXACT_PIN.match(pin):
                raise ValueError(f"{pin!r} is not an exact pin; write it like mlx-lm==0.28.0")
        return value

    @field_validator(*PORT_SETTINGS)
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1024 <= value <= 65535:
            raise ValueError(f"{value} is not a usable port; choose one from 1024 to 65535")
        return value

    @field_validator("min_macos_version")
    @classmethod
    def _macos_version(cls, value: str) -> str:
        if not re.match(r"^\d+(\.\d+){0,2}$", value):
            raise ValueError(f"{value!r} is not a macOS version; write it like 14.0")
        return value

    @model_validator(mode="after")
    def _token_needs_a_ray_that_has_it(self) -> Settings:
        if self.ray_auth == "token" and EXACT_VERSION.match(self.ray_version) and not ray_has_auth(self.ray_version):
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
            raise ValueError(f"min_worker_port ({low}) must be below max_worker_port ({high}); "
                             "Ray's own range is 10002-19999")
        inside = [key for key in SINGLE_PORT_SETTINGS if low <= getattr(self, key) <= high]
        if inside:
            raise ValueError(f"{', '.join(inside)} ({', '.join(str(getattr(self, k)) for k in inside)}) falls in the "
                             f"worker port range {low}-{high}; move it out, or narrow the range")
        return self


class ClusterFile(_Strict):
    """The cluster file's top level as written; nodes are validated one by one afterwards."""

    nodes: list[Any] = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Cluster:
    """A validated cluster: its nodes, its merged settings and where it came from."""

    path: Path
    nodes: tuple[NodeSpec, ...]
    settings: Settings

    @property
    def head(self) -> NodeSpec:
        return next(node for node in self.nodes if node.role == "head")

    @property
    def workers(self) -> tuple[NodeSpec, ...]:
        return tuple(node for node in self.nodes if node.role == "worker")

    def node(self, name: str) -> NodeSpec:
        return next(node for node in self.nodes if node.name == name)


# --- YAML ------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key written twice (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is written twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClusterFileError(
            path,
            [
                "the file does not exist. Copy cluster.example.yaml to cluster.yaml and list your "
                f"nodes, or point {CLUSTER_ENV} at your cluster file."
            ],
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ClusterFileError(path, [f"the file cannot be read ({error}); check its permissions and encoding."]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ClusterFileError(path, [f"{where}not valid YAML ({problem}); fix the file there."]) from None


# --- Error wording ---------------------------------------------------------------------------


def _describe_location(loc: tuple[Any, ...], raw: Any) -> str:
    """Turn a pydantic error location into words: ``node 'beta' (nodes[1]), key ip``."""
    if loc and loc[0] == "nodes" and len(loc) >= 2 and isinstance(loc[1], int):
        index = loc[1]
        name = None
        if isinstance(raw, dict) and isinstance(raw.get("nodes"), list) and index < len(raw["nodes"]):
            entry = raw["nodes"][index]
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                name = entry["name"]
        where = f"node {name!r} (nodes[{index}])" if name else f"nodes[{index}]"
        rest = [str(part) for part in loc[2:] if not str(part).startswith("function-after")]
        return f"{where}, key {'.'.join(rest)}" if rest else where
    return "key " + ".".join(str(part) for part in loc) if loc else "the file"


def _describe_error(error: dict[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"is not a known key; check its spelling ({_known_keys_hint(error['loc'])})"
    if kind == "missing":
        return "is required but missing; add it"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"is {value!r}; it must be one of {expected}"
    if kind in ("string_type", "int_type", "bool_type", "list_type", "dict_type", "model_type"):
        wanted = {"string_type": "text", "int_type": "a whole number", "bool_type": "true or false",
                  "list_type": "a list", "dict_type": "a mapping of key: value", "model_type": "a mapping of key: value"}[kind]
        hint = " (quote versions and names: python_version: \"3.9.23\")" if kind == "string_type" else ""
        return f"is {value!r}; it must be {wanted}{hint}"
    if kind == "greater_than_equal":
        return f"is {value!r}; it must be at least {error['ctx']['ge']}"
    if kind == "less_than_equal":
        return f"is {value!r}; it must be at most {error['ctx']['le']}"
    if kind in ("float_parsing", "float_type", "int_parsing"):
        wanted = "a whole number" if kind == "int_parsing" else "a number"
        return f"is {value!r}; it must be {wanted}"
    if kind == "too_short":
        return "is empty; list at least one node"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _known_keys_hint(loc: tuple[Any, ...]) -> str:
    if loc and loc[0] == "nodes":
        return "node keys: " + ", ".join(NodeSpec.model_fields)
    if loc and loc[0] == "settings":
        return "settings are listed in group_data/all.py"
    return "top-level keys: nodes, settings"


def _format_errors(errors: list[dict[str, Any]], raw: Any, prefix: tuple[Any, ...] = ()) -> list[str]:
    problems = []
    for error in errors:
        loc = prefix + tuple(error["loc"])
        problems.append(f"{_describe_location(loc, raw)}: {_describe_error({**error, 'loc': loc})}")
    return problems


# --- Loading ---------------------------------------------------------------------------------


def load_defaults(project_dir: Path) -> dict[str, Any]:
    """The defaults of group_data/all.py, read the way pyinfra reads group data."""
    namespace = runpy.run_path(str(project_dir / GROUP_DATA_ALL))
    return {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_") and not isinstance(value, ModuleType) and not callable(value)
    }


def cluster_file_path(project_dir: Path) -> Path:
    """The cluster file in use: $SAF_CLUSTER if set, else cluster.yaml beside inventory.py."""
    override = os.environ.get(CLUSTER_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return project_dir / DEFAULT_CLUSTER_FILE


def _check_cluster(path: Path, nodes: list[NodeSpec]) -> list[str]:
    problems = []
    heads = [node.name for node in nodes if node.role == "head"]
    if len(heads) != 1:
        which = "no node has" if not heads else f"{len(heads)} nodes ({', '.join(heads)}) have"
        problems.append(f"{which} role: head; exactly one node must be the head, the others role: worker")
    for key in ("name", "ip"):
        seen: dict[str, int] = {}
        for index, node in enumerate(nodes):
            value = getattr(node, key)
            if value in seen:
                problems.append(
                    f"nodes[{index}], key {key}: {value!r} is already used by nodes[{seen[value]}]; "
                    f"each node needs its own {key}"
                )
            seen.setdefault(value, index)
    for node in nodes:
        for key in ("ssh_key", "ssh_known_hosts_file"):
            value = getattr(node, key)
            if value and not _resolve(path, value).is_file():
                problems.append(f"node {node.name!r}, key {key}: {value!r} does not exist; fix the path")
    return problems


def _resolve(cluster_path: Path, value: str) -> Path:
    """A path from the cluster file: ~ expanded, relative to the cluster file's directory."""
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else (cluster_path.parent / candidate).resolve()


def load_cluster(project_dir: Path | str, path: Path | str | None = None) -> Cluster:
    """Load and validate the cluster file and the merged settings, or raise ClusterFileError."""
    project_dir = Path(project_dir).resolve()
    path = Path(path).resolve() if path else cluster_file_path(project_dir)
    raw = _read_yaml(path)
    if raw is None:
        raise ClusterFileError(path, ["the file is empty; list your nodes under `nodes:` (see cluster.example.yaml)."])
    if not isinstance(raw, dict):
        raise ClusterFileError(
            path, ["the file must be a mapping with `nodes:` (and optional `settings:`); see cluster.example.yaml."]
        )
    try:
        parsed = ClusterFile.model_validate(raw)
    except ValidationError as error:
        raise ClusterFileError(path, _format_errors(error.errors(), raw)) from None

    nodes, problems = _validate_nodes(parsed.nodes, raw)
    if not problems:  # cross-node rules only make sense once every node is readable
        problems = _check_cluster(path, nodes)
    settings = None
    try:
        settings = Settings.model_validate({**load_defaults(project_dir), **parsed.settings})
    except ValidationError as error:
        problems += _format_errors(error.errors(), raw, prefix=("settings",))
    if problems:
        raise ClusterFileError(path, problems)
    return Cluster(path=path, nodes=tuple(_with_resolved_paths(path, node) for node in nodes), settings=settings)


def _validate_nodes(entries: list[Any], raw: Any) -> tuple[list[NodeSpec], list[str]]:
    """Validate every node, so that one run reports the problems of all of them."""
    nodes, problems = [], []
    for index, entry in enumerate(entries):
        try:
            nodes.append(NodeSpec.model_validate(entry))
        except ValidationError as error:
            problems += _format_errors(error.errors(), raw, prefix=("nodes", index))
    return nodes, problems


def _with_resolved_paths(path: Path, node: NodeSpec) -> NodeSpec:
    updates = {
        key: str(_resolve(path, getattr(node, key)))
        for key in ("ssh_key", "ssh_known_hosts_file")
        if getattr(node, key)
    }
    return node.model_copy(update=updates) if updates else node
