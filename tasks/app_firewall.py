"""The macOS application firewall: let Ray's binaries accept connections, before Ray starts.

Whatever the `firewall` setting says (that one is SAF's own pf rules, tasks/firewall.py): when the
application firewall is on (`socketfilterfw --getglobalstate`), the interpreter the venv's
`bin/python` links to and Ray's `raylet` and `gcs_server` are added and unblocked (`--add`,
`--unblockapp`), only those it does not already allow (`--listapps`). A headless node has nobody
to click "Allow".
"""

import shlex

from pyinfra import host, logger
from pyinfra.operations import server

from saf.app_firewall import BLOCKS_ALL, app_firewall_state
from saf.facts.firewall import SOCKETFILTERFW
from saf.node_os import is_macos


def allow_ray_through_the_app_firewall() -> None:
    """socketfilterfw --add/--unblockapp for Ray's binaries that the application firewall does not allow."""
    found = app_firewall_state(host)
    if found.state == BLOCKS_ALL:
        logger.warning(
            f"[{host.name}] the application firewall blocks all incoming connections, so Ray's peers "
            'cannot reach this node: turn off "Block all incoming connections" (System Settings, '
            "Network, Firewall, Options)."
        )
    if not found.missing:
        return
    if not host.data.use_sudo:
        logger.warning(
            f"[{host.name}] the application firewall is on and SAF cannot allow Ray without sudo "
            f"(use_sudo: false): allow {', '.join(found.missing)} in System Settings, Network, Firewall."
        )
        return
    commands = []
    for path in found.missing:
        if path not in found.listed:
            commands.append(f"{SOCKETFILTERFW} --add {shlex.quote(path)}")
        commands.append(f"{SOCKETFILTERFW} --unblockapp {shlex.quote(path)}")
    server.shell(name="Let Ray accept connections (application firewall)", commands=commands, _sudo=True)


if is_macos(host):
    allow_ray_through_the_app_firewall()
