"""Loading: the cluster file read, validated against the schema, merged with the defaults and
checked as a whole, or one :class:`ClusterFileError` listing every problem at once."""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from saf.auth import has_token_auth, token_file_problem
from saf.paths import on_control
from saf.ports import ring_port_clashes, ring_ports
from saf.spec.files import cluster_file_path, file_problem, read_cluster_text, resolve
from saf.spec.schema import CONTROL_PATHS, Cluster, ClusterFile, NodeSpec, Settings, own_path_fix
from saf.spec.serve import ServeSpec, serve_problems
from saf.spec.values import folder_problem
from saf.spec.wording import ClusterFileError, format_errors, node_label
from saf.spec.yaml_loader import parse_yaml

GROUP_DATA_ALL = Path("group_data") / "all.py"
KEY_FILES = ("ssh_key", "ssh_known_hosts_file")
EXTENSION_PREFIX = "x-"


def load_defaults(project_dir: Path) -> dict[str, Any]:
    """The defaults of group_data/all.py, read the way pyinfra reads group data."""
    namespace = runpy.run_path(str(project_dir / GROUP_DATA_ALL))
    return {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_") and not isinstance(value, ModuleType) and not callable(value)
    }


def load_cluster(project_dir: Path | str, path: Path | str | None = None) -> Cluster:
    """Load and validate the cluster file and the merged settings, or raise ClusterFileError."""
    project_dir = Path(project_dir).resolve()
    path = Path(path).resolve() if path else cluster_file_path(project_dir)
    raw = read_cluster_file(path)
    try:
        parsed = ClusterFile.model_validate(raw)
    except ValidationError as error:
        raise ClusterFileError(path, format_errors(error.errors(), raw)) from None

    nodes, problems = validate_nodes(parsed.nodes, raw)
    if not problems:  # cross-node rules only make sense once every node is readable
        problems = check_cluster(path, nodes)
    settings = None
    try:
        settings = Settings.model_validate({**load_defaults(project_dir), **parsed.settings})
    except ValidationError as error:
        problems += format_errors(error.errors(), raw, prefix=("settings",))
    if settings is not None and nodes:
        problems += ring_port_problems(settings, len(nodes))
    if settings is not None:
        problems += control_path_problems(settings, project_dir)
    serve, serve_errors = validate_serve(parsed.serve, raw, path, nodes, settings)
    problems += serve_errors
    if problems:
        raise ClusterFileError(path, problems)
    return Cluster(
        path=path, nodes=tuple(with_resolved_paths(path, node) for node in nodes), settings=settings, serve=serve
    )


def validate_serve(
    entry: dict[str, Any] | None, raw: Any, path: Path, nodes: list[NodeSpec], settings: Settings | None
) -> tuple[ServeSpec | None, list[str]]:
    """The ``serve:`` part (None when absent), and its problems with these nodes and settings."""
    if entry is None:
        return None, []
    try:
        serve = ServeSpec.model_validate(entry)
    except ValidationError as error:
        return None, format_errors(error.errors(), raw, prefix=("serve",))
    if settings is None or not nodes:  # their own problems come first
        return serve, []
    return serve, serve_problems(serve, path, [node.name for node in nodes], settings)


def read_cluster_file(path: Path) -> dict[str, Any]:
    """The cluster file as a mapping, or ClusterFileError for a file that is not one."""
    try:
        raw = parse_yaml(read_cluster_text(path))
    except ValueError as error:
        raise ClusterFileError(path, [str(error)]) from None
    if raw is None:
        raise ClusterFileError(path, ["the file is empty; list your nodes under `nodes:` (see cluster.example.yaml)."])
    if not isinstance(raw, dict):
        raise ClusterFileError(
            path, ["the file must be a mapping with `nodes:` (and optional `settings:`); see cluster.example.yaml."]
        )
    return {key: value for key, value in raw.items() if not is_extension_key(key)}


def is_extension_key(key: Any) -> bool:
    """A top-level ``x-...`` key holds YAML anchors for the rest of the file (as in docker compose); ignored."""
    return isinstance(key, str) and key.startswith(EXTENSION_PREFIX)


def validate_nodes(entries: list[Any], raw: Any) -> tuple[list[NodeSpec], list[str]]:
    """Validate every node, so that one run reports the problems of all of them."""
    nodes, problems = [], []
    for index, entry in enumerate(entries):
        try:
            nodes.append(NodeSpec.model_validate(entry))
        except ValidationError as error:
            problems += format_errors(error.errors(), raw, prefix=("nodes", index))
    return nodes, problems


def check_cluster(path: Path, nodes: list[NodeSpec]) -> list[str]:
    """The rules across nodes: one head, one node per machine, key files that exist."""
    return [*_one_head(nodes), *_unique_names(nodes), *_one_node_per_machine(nodes), *_key_files(path, nodes)]


def ring_port_problems(settings: Settings, ranks: int) -> list[str]:
    """The MLX ring takes one port per node from mlx_ring_port on: they must stay clear of Ray's."""
    low, high = ring_ports(settings.mlx_ring_port, ranks)
    if high > 65535:
        return [
            f"settings, key mlx_ring_port: the MLX ring needs one port per node ({ranks}), {low}-{high}, and "
            f"ports end at 65535; lower mlx_ring_port"
        ]
    clashes = ring_port_clashes(settings, ranks)
    if not clashes:
        return []
    return [
        f"settings, key mlx_ring_port: the MLX ring's ports {low}-{high} (one per node, {ranks} nodes) take "
        f"{', '.join(clashes)}; move mlx_ring_port to a free run of {ranks} ports outside Ray's, like "
        f"{_free_ring_base(settings, ranks)}"
    ]


def control_path_problems(settings: Settings, project_dir: Path) -> list[str]:
    """The control-side paths where they end up: never a system or personal folder, the project or a parent
    of it; and a token file that is already there must be one SAF can use."""
    problems = []
    for key in CONTROL_PATHS:
        value = getattr(settings, key)
        if not value:
            continue
        path = Path(os.path.normpath(on_control(value, project_dir)))
        problem = folder_problem(_as_written_on_control(path)) or _project_problem(path, project_dir)
        if problem:
            problems.append(f"key settings.{key}: {value!r} {problem}; {own_path_fix(key)}")
    token = Path(os.path.normpath(on_control(settings.ray_auth_token_file, project_dir)))
    if has_token_auth(settings.ray_auth, settings.ray_version) and not problems and os.path.lexists(token):
        problem = token_file_problem(token)
        if problem:
            problems.append(f"key settings.ray_auth_token_file: the Ray auth token file {token} {problem}")
    return problems


def _project_problem(path: Path, project_dir: Path) -> str | None:
    if path == project_dir:
        return "is the project directory itself"
    if path in project_dir.parents:
        return "is a parent of the project directory"
    return None


def _as_written_on_control(path: Path) -> str:
    """``path`` with the control machine's home written as ``~``, so that personal folders are known."""
    home = Path.home()
    if path == home:
        return "~"
    return f"~/{path.relative_to(home)}" if home in path.parents else str(path)


def _free_ring_base(settings: Settings, ranks: int) -> int:
    """The first base from 6390 up whose ring clears Ray's ports (the suggestion in the error)."""
    base = 6390
    while ring_port_clashes(settings.model_copy(update={"mlx_ring_port": base}), ranks):
        base += 1
    return base


def _one_head(nodes: list[NodeSpec]) -> list[str]:
    heads = [node.name for node in nodes if node.role == "head"]
    if len(heads) == 1:
        return []
    which = "no node has" if not heads else f"{len(heads)} nodes ({', '.join(heads)}) have"
    return [f"{which} role: head; exactly one node must be the head, the others role: worker"]


def _unique_names(nodes: list[NodeSpec]) -> list[str]:
    return [
        f"nodes[{index}], key name: {node.name!r} is already used by nodes[{first}]; each node needs its own name"
        for index, first, node in _repeats(nodes, lambda node: node.name)
    ]


def _one_node_per_machine(nodes: list[NodeSpec]) -> list[str]:
    problems = []
    for key, identity in (("address", lambda node: node.machine), ("ip", lambda node: node.ip)):
        for index, first, node in _repeats(nodes, identity):
            problems.append(
                f"{node_label(index, node.name)}, key {key}: {getattr(node, key)!r} is already used by "
                f"{node_label(first, nodes[first].name)}; one machine is one node: remove one of them, or give "
                f"each its own {key}"
            )
    return problems


def _repeats(nodes: list[NodeSpec], identity) -> list[tuple[int, int, NodeSpec]]:
    """(index, index of the first node with the same identity, node) for every repeat."""
    first: dict[Any, int] = {}
    repeats = []
    for index, node in enumerate(nodes):
        value = identity(node)
        if value in first:
            repeats.append((index, first[value], node))
        first.setdefault(value, index)
    return repeats


def _key_files(path: Path, nodes: list[NodeSpec]) -> list[str]:
    problems = []
    for index, node in enumerate(nodes):
        for key in KEY_FILES:
            value = getattr(node, key)
            problem = file_problem(resolve(path, value)) if value else None
            if problem:
                problems.append(f"{node_label(index, node.name)}, key {key}: {value!r} {problem}; {_key_file_fix(key)}")
    return problems


def _key_file_fix(key: str) -> str:
    example = "~/.ssh/id_ed25519" if key == "ssh_key" else "~/.ssh/known_hosts"
    return f"fix the path: it names the file itself (like {example}), relative to the cluster file's directory"


def with_resolved_paths(path: Path, node: NodeSpec) -> NodeSpec:
    """The node with its key file paths made absolute (relative ones are from the cluster file's directory)."""
    updates = {key: str(resolve(path, getattr(node, key))) for key in KEY_FILES if getattr(node, key)}
    return node.model_copy(update=updates) if updates else node
