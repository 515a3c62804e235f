"""What a node's venv holds and what it is called: derived from the pins, the same everywhere.

The venv directory is named by its pins, so a change of pins builds a new venv beside the
current one; ``current`` (a symlink in ``venv_root``) names the active one. Services carry the
venv's name in their definition, so switching venvs changes the definition and restarts Ray.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pyinfra.api.host import Host
from pyinfra.facts.server import Which

from saf.node_os import is_macos
from saf.paths import on_node

CURRENT = "current"  # the link in venv_root naming the venv Ray runs
PREVIOUS = "previous"  # the link naming the one before it (`saf rollback`)
ROOT_MARKER = ".saf-venv-root"  # written in venv_root when SAF builds a venv there: the folder is SAF's
# Exactly what venv_name makes (the spec pins every version as x.y.z): what teardown and the prune may
# remove, and nothing else. Unanchored and in POSIX ERE ([0-9], not \d) so that the node's shell can
# use it too (`grep -Eqx`); Python uses it with re.fullmatch. saf/node_scripts/venv_switch.py keeps a
# copy (it runs on the node without SAF): tests/unit/test_venv_switch.py checks that they agree.
VENV_NAME_PATTERN = r"py[0-9]+\.[0-9]+\.[0-9]+-ray[0-9]+\.[0-9]+\.[0-9]+-mlx[0-9]+\.[0-9]+\.[0-9]+-[0-9a-f]{8}"
# files SAF leaves beside a venv while it builds one (removed afterwards, unless a run was cut short)
VENV_SIDE_FILES = (".requirements.txt", ".pip.log")


def is_venv_name(name: str) -> bool:
    """Whether ``name`` is exactly a name :func:`venv_name` makes (never a look-alike)."""
    return re.fullmatch(VENV_NAME_PATTERN, name) is not None


def current_venv_path(venv_root: str, home: str) -> str:
    """The absolute path of ``<venv_root>/current`` on a node whose SSH user's home is ``home``."""
    return f"{on_node(venv_root, home).rstrip('/')}/{CURRENT}"


@dataclass(frozen=True)
class VenvSpec:
    """The venv a node must run: its name, paths and exact requirements."""

    name: str
    root: str  # venv_root as configured (may start with ~)
    requirements: tuple[str, ...]
    python_version: str

    @property
    def path(self) -> str:
        return f"{self.root}/{self.name}"

    @property
    def current(self) -> str:
        return f"{self.root}/{CURRENT}"


def mlx_extra(host: Host) -> str:
    """The mlx extra a node needs: none on macOS (Metal), cuda with an NVIDIA GPU, else cpu."""
    if is_macos(host):
        return ""
    return "cuda" if host.get_fact(Which, command="nvidia-smi") else "cpu"


def requirements(
    ray_version: str, mlx_version: str, extra: str, extra_packages: list[str], serve_packages: list[str] | None = None
) -> tuple[str, ...]:
    """The venv's exact pins; with ``serve_packages`` (a cluster that serves a model) Ray gets its
    ``serve`` extra and those pins join the others (so the venv's name changes with them)."""
    mlx = f"mlx[{extra}]" if extra else "mlx"
    ray = "ray[default,serve]" if serve_packages is not None else "ray[default]"
    return (f"{ray}=={ray_version}", f"{mlx}=={mlx_version}", *sorted([*extra_packages, *(serve_packages or [])]))


def venv_name(python_version: str, reqs: tuple[str, ...]) -> str:
    """``py3.9.23-ray2.49.1-mlx0.29.1-<hash>``: readable pins, and a hash of every requirement."""
    versions = {req.split("==")[0].split("[")[0]: req.split("==")[1] for req in reqs}
    digest = hashlib.sha256("\n".join([python_version, *reqs]).encode()).hexdigest()[:8]
    return f"py{python_version}-ray{versions['ray']}-mlx{versions['mlx']}-{digest}"


def node_venv(host: Host, home: str | None = None) -> VenvSpec:
    """The venv ``host`` must run, from its settings and facts; its root made absolute if ``home``."""
    data = host.data
    serving = list(data.serve_packages) if getattr(data, "serve", None) else None
    reqs = requirements(data.ray_version, data.mlx_version, mlx_extra(host), list(data.extra_packages), serving)
    root = on_node(data.venv_root, home) if home else data.venv_root
    return VenvSpec(
        name=venv_name(data.python_version, reqs),
        root=root.rstrip("/"),
        requirements=reqs,
        python_version=data.python_version,
    )
