"""The macOS application firewall: let Ray's binaries accept connections, before Ray starts.

Whatever the `firewall` setting says (that one is SAF's own pf rules, tasks/firewall.py): when the
application firewall is on (`socketfilterfw --getglobalstate`), the interpreter the venv's
`bin/python` links to and Ray's `raylet` and `gcs_server` are added and unblocked (`--add`,
`--unblockapp`), only those it does not already allow (`--listapps`). A headless node has nobody
to click "Allow".
"""

import shlex

from pyinfra import host, logger
from pyinfra.facts.server import Home
from pyinfra.operations import server

from saf.facts.firewall import SOCKETFILTERFW, AppFirewall
from saf.node_os import is_macos
from saf.paths import on_node
from saf.venv_spec import node_venv

sudo = host.data.use_sudo


def app_firewall_paths(pyenv_root: str, python_version: str, venv_path: str) -> tuple[str, ...]:
    """The binaries that accept Ray's connections on macOS, as the application firewall sees them.

    The venv's ``bin/python`` links to pyenv's interpreter, so the real binary (what a running
    worker is) is ``python3.X`` there; raylet and gcs_server are Ray's own programs in the venv.
    """
    major_minor = ".".join(python_version.split(".")[:2])
    ray_core = f"{venv_path}/lib/python{major_minor}/site-packages/ray/core/src/ray"
    return (f"{pyenv_root}/versions/{python_version}/bin/python{major_minor}",
            f"{ray_core}/raylet/raylet", f"{ray_core}/gcs/gcs_server")


def allow_ray_through_the_app_firewall() -> None:
    """socketfilterfw --add/--unblockapp for Ray's binaries that the application firewall does not allow."""
    app_firewall = host.get_fact(AppFirewall, _sudo=sudo)
    if not app_firewall["state"]:
        return
    home = host.get_fact(Home)
    paths = app_firewall_paths(on_node(host.data.pyenv_root, home), host.data.python_version,
                               node_venv(host, home).path)
    if app_firewall["state"] == 2:
        logger.warning(f"[{host.name}] the application firewall blocks all incoming connections, so Ray's peers "
                       "cannot reach this node: turn off \"Block all incoming connections\" (System Settings, "
                       "Network, Firewall, Options).")
    listed = app_firewall["apps"]
    missing = [path for path in paths if not listed.get(path)]
    if not missing:
        return
    if not sudo:
        logger.warning(f"[{host.name}] the application firewall is on and SAF cannot allow Ray without sudo "
                       f"(use_sudo: false): allow {', '.join(missing)} in System Settings, Network, Firewall.")
        return
    commands = []
    for path in missing:
        if path not in listed:
            commands.append(f"{SOCKETFILTERFW} --add {shlex.quote(path)}")
        commands.append(f"{SOCKETFILTERFW} --unblockapp {shlex.quote(path)}")
    server.shell(name="Let Ray accept connections (application firewall)", commands=commands, _sudo=True)


if is_macos(host):
    allow_ray_through_the_app_firewall()
