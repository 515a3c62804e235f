"""The macOS application firewall and Ray: which of Ray's binaries it must allow, and which it
does not allow yet. Read by tasks/app_firewall.py (which allows them) and by `saf doctor`."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api.host import Host
from pyinfra.facts.server import Home

from saf.facts.firewall import AppFirewall
from saf.paths import on_node
from saf.venv_spec import node_venv

OFF, ON, BLOCKS_ALL = 0, 1, 2  # socketfilterfw --getglobalstate: (State = N)


@dataclass(frozen=True)
class AppFirewallState:
    """The application firewall's state and Ray's binaries it does not allow: ``listed`` ones
    only need unblocking, the others must be added first."""

    state: int
    missing: tuple[str, ...]
    listed: frozenset[str]


def app_firewall_paths(pyenv_root: str, python_version: str, venv_path: str) -> tuple[str, ...]:
    """The binaries that accept Ray's connections on macOS, as the application firewall sees them.

    The venv's ``bin/python`` links to pyenv's interpreter, so the real binary (what a running
    worker is) is ``python3.X`` there; raylet and gcs_server are Ray's own programs in the venv.
    """
    major_minor = ".".join(python_version.split(".")[:2])
    ray_core = f"{venv_path}/lib/python{major_minor}/site-packages/ray/core/src/ray"
    return (
        f"{pyenv_root}/versions/{python_version}/bin/python{major_minor}",
        f"{ray_core}/raylet/raylet",
        f"{ray_core}/gcs/gcs_server",
    )


def app_firewall_state(host: Host) -> AppFirewallState:
    """Read on a Mac: its application firewall and what it lacks for Ray (nothing when it is off)."""
    app_firewall = host.get_fact(AppFirewall, _sudo=host.data.use_sudo)
    if not app_firewall["state"]:
        return AppFirewallState(OFF, (), frozenset())
    home = host.get_fact(Home)
    paths = app_firewall_paths(
        on_node(host.data.pyenv_root, home), host.data.python_version, node_venv(host, home).path
    )
    listed = _by_path(app_firewall["apps"], paths)
    return AppFirewallState(
        app_firewall["state"], tuple(path for path in paths if not listed.get(path)), frozenset(listed)
    )


def _by_path(apps: dict[str, bool], paths: tuple[str, ...]) -> dict[str, bool]:
    """``--listapps`` keyed by path; some versions list names only (``raylet (state: 1)``): a
    name stands for the binary of that name among ``paths``, so a re-run does not add it again."""
    keyed = {app: allowed for app, allowed in apps.items() if "/" in app}
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if path not in keyed and name in apps:
            keyed[path] = apps[name]
    return keyed
