"""macOS power settings (pmset): a cluster node must not sleep, should come back after a power loss and
wake on LAN. Only the values that differ are set."""

from pyinfra import host, logger
from pyinfra.operations import server

from saf.facts.macos import PmsetSettings
from saf.node_os import is_macos

WANTED = {"sleep": 0, "disksleep": 0, "autorestart": 1, "womp": 1}

if is_macos(host) and host.data.macos_power_settings and not host.data.use_sudo:
    logger.warning(
        f"[{host.name}] power settings left alone: pmset needs sudo (use_sudo: false). Keep the Mac "
        "awake yourself: System Settings, Energy (prevent automatic sleeping, start up after a power "
        "failure, wake for network access)."
    )
elif is_macos(host) and host.data.macos_power_settings:
    current = host.get_fact(PmsetSettings)
    differing = {key: value for key, value in WANTED.items() if current.get(key) != value}
    if differing:
        settings = " ".join(f"{key} {value}" for key, value in differing.items())
        server.shell(name="Keep the node awake and coming back (pmset)", commands=[f"pmset -a {settings}"], _sudo=True)
