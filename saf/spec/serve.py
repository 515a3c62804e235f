"""The cluster file's ``serve:`` part: which model the cluster serves, how, and from which nodes.

    serve:
      model: ./models/my-llama   # an MLX model directory on the control machine (relative: to the cluster file)
      mode: replicas             # one mlx-lm replica per serving node behind Ray Serve on the head
      nodes: [alpha, beta]       # optional: every node by default

Where the endpoint listens and what the serving venv adds are settings (group_data/all.py):
``serve_port``, ``serve_bind`` (loopback | cluster), ``serve_api_key_file``, ``serve_packages``.
Everything here is checked on the control machine before any host is contacted; each problem is
one line naming the key and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from saf.ports import RAY_FIXED_PORTS, SINGLE_PORT_SETTINGS, ring_ports
from saf.serve.model_dir import model_directory_problems
from saf.spec.values import path_characters_problem

MODES = ("replicas", "sharded")
HF_PREFIX = "hf:"
EXACT = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# What each mlx-lm release needs, from its published metadata (PyPI, checked 2026-12):
# (first version, mlx at least, python at least). 0.28.1 on needs mlx 0.29.2 (on a Mac); 0.30.6 on
# needs transformers 5 (Python 3.10); 0.32 needs Python 3.11 and mlx 0.32.2.
MLX_LM_NEEDS: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...] = (
    ((0, 28, 0), (0, 29, 1), (3, 8)),
    ((0, 28, 1), (0, 29, 2), (3, 8)),
    ((0, 30, 6), (0, 30, 4), (3, 10)),
    ((0, 32, 0), (0, 32, 2), (3, 11)),
)
OLDEST_MLX_LM = MLX_LM_NEEDS[0][0]
SERVE_PINS_NEEDED = ("mlx-lm", "pip")  # in serve_packages: the server's library, and a pip that resolves Serve fast


class ServeSpec(BaseModel):
    """The ``serve:`` part as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: StrictStr
    mode: StrictStr
    nodes: list[StrictStr] | None = Field(default=None, min_length=1)

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value == "sharded":
            raise ValueError(
                "sharded is not built yet (one model split across the nodes with MLX distributed: it needs "
                "mlx-lm >= 0.30.6, MLX >= 0.30.4 and Python >= 3.10); use mode: replicas, one copy of the model "
                "per serving node, for a model that fits one node"
            )
        if value not in MODES:
            raise ValueError(f"{value!r} is not a serving mode; use replicas (one copy of the model per serving node)")
        return value


def model_path(cluster_file: Path, model: str) -> Path:
    """The model directory on the control machine: ``~`` expanded, relative paths from the cluster file's folder."""
    candidate = Path(model).expanduser()
    return candidate if candidate.is_absolute() else cluster_file.parent / candidate


def serve_problems(serve: ServeSpec, cluster_file: Path, node_names: list[str], settings: Any) -> list[str]:
    """Every reason this ``serve:`` part cannot be served with these nodes and settings, each with its fix."""
    return [
        *_model_problems(serve, cluster_file),
        *_node_problems(serve, node_names),
        *_port_problems(settings, len(node_names)),
        *_pin_problems(settings),
        *_bind_problems(settings),
    ]


def _model_problems(serve: ServeSpec, cluster_file: Path) -> list[str]:
    if serve.model.startswith(HF_PREFIX):
        repo = serve.model[len(HF_PREFIX) :]
        return [
            f"key serve.model: {serve.model!r} is a Hugging Face repo id; SAF does not fetch models (the "
            f"control machine may have no network, and the nodes never download): download it where there is a "
            f"network (`huggingface-cli download {repo} --local-dir models/{repo.split('/')[-1]}`, an MLX "
            "model, or convert one with `mlx_lm.convert`) and give that directory"
        ]
    path = model_path(cluster_file, serve.model).resolve()
    characters = path_characters_problem(str(path))
    if characters:  # rsync's command line on the control machine names it
        return [
            f"key serve.model: {serve.model!r} (the folder {path}) {characters}; move the model, or link it, to "
            "a path like ./models/my-model"
        ]
    return [f"key serve.model: {problem}" for problem in model_directory_problems(path)]


def _node_problems(serve: ServeSpec, node_names: list[str]) -> list[str]:
    if serve.nodes is None:
        return []
    problems = [
        f"key serve.nodes: {name!r} is not a node of this cluster file; name nodes from `nodes:` "
        f"({', '.join(node_names)})"
        for name in serve.nodes
        if name not in node_names
    ]
    repeated = sorted({name for name in serve.nodes if serve.nodes.count(name) > 1})
    if repeated:
        problems.append(
            f"key serve.nodes: {', '.join(repeated)} listed twice; a node serves one replica, name each once"
        )
    return problems


def _port_problems(settings: Any, node_count: int) -> list[str]:
    port = settings.serve_port
    if not 1024 <= port <= 65535:
        return [f"key settings.serve_port: {port} is not a usable port; choose one from 1024 to 65535, like 8000"]
    taken = [f"{key} ({getattr(settings, key)})" for key in SINGLE_PORT_SETTINGS if getattr(settings, key) == port]
    taken += [f"Ray's fixed metrics port {port}" for fixed in RAY_FIXED_PORTS if fixed == port]
    if settings.min_worker_port <= port <= settings.max_worker_port:
        taken.append(f"the worker port range {settings.min_worker_port}-{settings.max_worker_port}")
    low, high = ring_ports(settings.mlx_ring_port, node_count)
    if low <= port <= high:
        taken.append(f"the MLX ring's ports {low}-{high}")
    if not taken:
        return []
    return [
        f"key settings.serve_port: {port} is taken by {', '.join(taken)}; give the endpoint a port of its own, "
        "like 8000"
    ]


def pinned_versions(pins: list[str]) -> dict[str, str]:
    """``{"mlx-lm": "0.28.0", ...}`` from exact pins (names lowercased, extras dropped)."""
    return {pin.split("==")[0].split("[")[0].lower(): pin.split("==")[1] for pin in pins if "==" in pin}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def mlx_lm_needs(version: str) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(mlx at least, python at least) that mlx-lm ``version`` needs; None before the oldest SAF knows."""
    needs = None
    for first, mlx, python in MLX_LM_NEEDS:
        if _version(version) >= first:
            needs = (mlx, python)
    return needs


def _pin_problems(settings: Any) -> list[str]:
    pins = pinned_versions(settings.serve_packages)
    missing = [name for name in SERVE_PINS_NEEDED if name not in pins]
    if missing:
        return [
            f"key settings.serve_packages: no exact pin of {', '.join(missing)}; add one, like mlx-lm==0.28.0 "
            "and pip==26.0.1 (an older pip spends many minutes resolving Ray Serve's dependencies)"
        ]
    version = pins["mlx-lm"]
    needs = mlx_lm_needs(version) if EXACT.fullmatch(version) else None
    if needs is None:
        return [
            f"key settings.serve_packages: mlx-lm=={version} is older than the mlx-lm SAF's server is made for; "
            f"pin mlx-lm=={'.'.join(map(str, OLDEST_MLX_LM))} or newer"
        ]
    mlx, python = needs
    changes = []
    if _version(settings.mlx_version) < mlx:
        changes.append(f"settings.mlx_version to {'.'.join(map(str, mlx))} or newer")
    if _version(settings.python_version)[:2] < python:
        changes.append(f"settings.python_version to {python[0]}.{python[1]}.x or newer")
    if not changes:
        return []
    return [
        f"key settings.serve_packages: mlx-lm=={version} needs MLX >= {'.'.join(map(str, mlx))} and Python >= "
        f"{python[0]}.{python[1]}, and the pins are mlx_version {settings.mlx_version}, python_version "
        f"{settings.python_version}: set {' and '.join(changes)}, or pin mlx-lm==0.28.0 (MLX 0.29.1, Python 3.8+)"
    ]


def _bind_problems(settings: Any) -> list[str]:
    if settings.serve_bind != "cluster" or settings.firewall:
        return []
    return [
        "key settings.serve_bind: cluster puts the endpoint on the head's cluster ip; set firewall: true as well "
        "(then only the cluster's nodes reach it, and it asks for the API key in serve_api_key_file), or keep "
        "serve_bind: loopback and reach it with `saf serve-tunnel`"
    ]
