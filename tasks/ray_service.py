"""Ray as a supervised service: a launchd job on macOS, a systemd unit on Linux.

The head's operations come before the workers' in this file, so pyinfra (re)starts the head
first. A node's Ray restarts only when its definition, the venv it runs or its auth token changed.
"""

from pyinfra import host
from pyinfra.facts.server import Command, Home, User
from pyinfra.operations import files, server, systemd

from saf import runstate
from saf.node_os import is_macos
from saf.operations.launchd import job
from saf.paths import on_node
from saf.service import ray_service

home = host.get_fact(Home)
user = host.data.get("ssh_user") or host.get_fact(User)
service = ray_service(host, user, home, venv_current=f"{on_node(host.data.venv_root, home)}/current")
# a new venv or a new auth token: Ray must restart to use it (the definition itself is unchanged)
restart = runstate.read(host, "venv_changes", False) or runstate.read(host, "auth_changes", False)
macos = is_macos(host)
daemon = host.data.macos_service == "daemon"


def launchd_service() -> None:
    """The job in /Library/LaunchDaemons (boots with nobody logged in) or ~/Library/LaunchAgents."""
    logs = f"{home}/Library/Logs/saf"
    files.directory(name="Ray log directory", path=logs, present=True)
    if daemon:
        plist_path, domain = f"/Library/LaunchDaemons/{service.label}.plist", "system"
        plist = files.template(name=f"Ray {service.role} job definition (LaunchDaemon)", src="templates/ray.plist.j2",
                               dest=plist_path, service=service, daemon=True, logs=logs,
                               user="root", group="wheel", mode="644", _sudo=True)
    else:
        plist_path = f"{home}/Library/LaunchAgents/{service.label}.plist"
        domain = f"gui/{host.get_fact(Command, command='id -u')}"
        plist = files.template(name=f"Ray {service.role} job definition (LaunchAgent)", src="templates/ray.plist.j2",
                               dest=plist_path, service=service, daemon=False, logs=logs, mode="644")
    changed = plist.will_change
    if changed:
        server.shell(name="Check the job definition (plutil -lint)", commands=[f"plutil -lint {plist_path}"])
    job(name=f"Ray {service.role} (launchd)", label=service.label, plist=plist_path, domain=domain,
        definition_changed=changed, restart=restart, _sudo=daemon)


def systemd_service() -> None:
    """A system unit (with sudo) or a user unit with lingering (without)."""
    system = host.data.use_sudo
    dest = (f"/etc/systemd/system/{service.unit}" if system
            else f"{home}/.config/systemd/user/{service.unit}")
    if not system:
        files.directory(name="User unit directory", path=f"{home}/.config/systemd/user", present=True)
        linger = host.get_fact(Command, command=f"loginctl show-user {user} -p Linger --value 2>/dev/null || true")
        if linger != "yes":
            server.shell(name="Let the user's services run without a login (linger)",
                         commands=[f"loginctl enable-linger {user}"])
    unit = files.template(name=f"Ray {service.role} unit", src="templates/ray.service.j2", dest=dest,
                          service=service, mode="644", _sudo=system)
    changed = unit.will_change
    systemd.service(name=f"Ray {service.role} (systemd)", service=service.unit, running=True, enabled=True,
                    restarted=changed or restart, daemon_reload=changed, user_mode=not system,
                    _sudo=system)


def supervised_ray() -> None:
    if macos:
        launchd_service()
    else:
        systemd_service()


if host.data.role == "head":
    supervised_ray()

if host.data.role == "worker":
    supervised_ray()
