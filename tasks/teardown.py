"""Teardown (`saf teardown`): stop Ray and remove its jobs/units on every node, workers first.
The auth token goes too; the venvs stay unless the run sets `--data teardown_venvs=true`."""

from pyinfra import host
from pyinfra.facts.server import Command, Home, User
from pyinfra.operations import files, systemd

from saf.auth import NODE_TOKEN_FILE
from saf.node_os import is_macos
from saf.operations.launchd import job
from saf.paths import on_node
from saf.service import ray_service

home = host.get_fact(Home)
user = host.data.get("ssh_user") or host.get_fact(User)
venv_root = on_node(host.data.venv_root, home)
service = ray_service(host, user, home, venv_current=f"{venv_root}/current")
sudo = host.data.use_sudo


def remove_service() -> None:
    if is_macos(host):
        daemon = host.data.macos_service == "daemon"
        plist = (f"/Library/LaunchDaemons/{service.label}.plist" if daemon
                 else f"{home}/Library/LaunchAgents/{service.label}.plist")
        domain = "system" if daemon else f"gui/{host.get_fact(Command, command='id -u')}"
        job(name=f"Stop Ray {service.role} (launchd)", label=service.label, plist=plist, domain=domain,
            present=False, _sudo=daemon)
        files.file(name=f"Remove the Ray {service.role} job definition", path=plist, present=False, _sudo=daemon)
    else:
        unit = (f"/etc/systemd/system/{service.unit}" if sudo else f"{home}/.config/systemd/user/{service.unit}")
        systemd.service(name=f"Stop Ray {service.role} (systemd)", service=service.unit, running=False,
                        enabled=False, user_mode=not sudo, _sudo=sudo)
        removed = files.file(name=f"Remove the Ray {service.role} unit", path=unit, present=False, _sudo=sudo)
        if removed.will_change:
            systemd.daemon_reload(name="Reload systemd", user_mode=not sudo, _sudo=sudo)


if host.data.role == "worker":
    remove_service()

if host.data.role == "head":
    remove_service()

files.file(name="Remove the Ray auth token", path=on_node(NODE_TOKEN_FILE, home), present=False)

if str(host.data.get("teardown_venvs", "")).lower() in ("1", "true", "yes"):
    files.directory(name="Remove the venvs", path=venv_root, present=False)
