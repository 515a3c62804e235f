"""Rollback (`saf rollback`): make the previous venv current again on every node and restart Ray,
head first. The next deploy goes back to the pins of the cluster file: revert them to keep it."""

from pyinfra import host
from pyinfra.facts.server import Command, Home, User
from pyinfra.operations import systemd

from saf.node_os import is_macos
from saf.operations.launchd import job
from saf.operations.python import rolled_back_venv
from saf.paths import on_node
from saf.service import ray_service

home = host.get_fact(Home)
user = host.data.get("ssh_user") or host.get_fact(User)
venv_root = on_node(host.data.venv_root, home)
service = ray_service(host, user, home, venv_current=f"{venv_root}/current")


def switch_and_restart() -> None:
    switched = rolled_back_venv(name="Make the previous venv current", root=venv_root)
    if not switched.will_change:
        return
    if is_macos(host):
        daemon = host.data.macos_service == "daemon"
        domain = "system" if daemon else f"gui/{host.get_fact(Command, command='id -u')}"
        plist = (f"/Library/LaunchDaemons/{service.label}.plist" if daemon
                 else f"{home}/Library/LaunchAgents/{service.label}.plist")
        job(name=f"Restart Ray {service.role} (launchd)", label=service.label, plist=plist, domain=domain,
            restart=True, _sudo=daemon)
    else:
        systemd.service(name=f"Restart Ray {service.role} (systemd)", service=service.unit, restarted=True,
                        user_mode=not host.data.use_sudo, _sudo=host.data.use_sudo)


if host.data.role == "head":
    switch_and_restart()

if host.data.role == "worker":
    switch_and_restart()
