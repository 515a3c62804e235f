"""Ray as a supervised service: a launchd job on macOS, a systemd unit on Linux.

The head's operations come before the workers' (``in_role_order``), so pyinfra (re)starts the
head first. A node's Ray restarts when its definition changed, for a reason another task
recorded (its venv or its auth token changes in this run), or because the node says the running Ray
is stale (it runs another venv than ``current``, or started before its definition, token or packages
last changed: a run stopped before its restart; saf/restarts.py), and only then, saying why.
"""

import shlex

from pyinfra import host, logger
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd

from saf.auth import NODE_TOKEN_FILE, auth_mode
from saf.facts.service import RayServiceRun
from saf.node_os import is_macos
from saf.operations.launchd import launchd_job
from saf.operations.plist import linted_plist
from saf.paths import on_node
from saf.restarts import plan_ray_restart, ray_restart_reasons, stale_ray
from saf.service import in_role_order, node_ray_service
from saf.templating import unit_template_env

service = node_ray_service(host)
if is_macos(host) and host.data.macos_service == "daemon" and not service.system:
    logger.warning(
        f"[{host.name}] Ray runs as a LaunchAgent, not a LaunchDaemon: installing a daemon needs sudo "
        "(use_sudo: false). It runs only while the user is logged in to the Mac's desktop."
    )
# e.g. {VENV_SWITCHED}: what Ray has loaded changes while its definition stays the same
restart_reasons = ray_restart_reasons(host)
macos = is_macos(host)
definition = service.plist_path if macos else service.unit_path
token = (
    on_node(NODE_TOKEN_FILE, service.home) if auth_mode(host.data.ray_auth, host.data.ray_version) == "token" else None
)
# what the running Ray has loaded against what is on disk (read before any operation of this run)
stale = stale_ray(
    host.get_fact(
        RayServiceRun,
        manager="launchd" if macos else "systemd",
        target=f"{service.launchd_domain}/{service.label}" if macos else service.unit,
        venv_root=on_node(host.data.venv_root, service.home),
        watched=(definition, *([token] if token else [])),
        user_mode=not macos and not service.system,
    ),
    definition,
    token,
)
if restart_reasons or stale.reasons:
    why = [reason.value for reason in sorted(restart_reasons, key=lambda reason: reason.name)] + list(stale.reasons)
    logger.info(f"Ray restarts on {host.name}: {'; '.join(why)}")
    plan_ray_restart(host, why)


def launchd_service() -> None:
    """The job in /Library/LaunchDaemons (boots with nobody logged in) or ~/Library/LaunchAgents."""
    files.directory(name="Ray log directory", path=service.logs, present=True)
    kind = "LaunchDaemon" if service.system else "LaunchAgent"
    # root:wheel for a daemon (launchd refuses a daemon's plist others can write); the user's own for an agent
    owner = {"user": "root", "group": "wheel", "_sudo": True} if service.system else {}
    plist = linted_plist(
        name=f"Ray {service.role} job definition ({kind})",
        src="templates/ray.plist.j2",
        dest=service.plist_path,
        service=service,
        daemon=service.system,
        logs=service.logs,
        mode="644",
        **owner,
    )
    changed = plist.will_change
    launchd_job(
        name=f"Ray {service.role} (launchd)",
        label=service.label,
        plist=service.plist_path,
        domain=service.launchd_domain,
        definition_changed=changed or stale.reload_definition,
        restart=bool(restart_reasons or stale.reasons),
        _sudo=service.system,
    )


def systemd_service() -> None:
    """A system unit (with sudo) or a user unit with lingering (without)."""
    if not service.system:
        files.directory(name="User unit directory", path=service.unit_dir, present=True)
        user = shlex.quote(service.user)
        linger = host.get_fact(Command, command=f"loginctl show-user {user} -p Linger --value 2>/dev/null || true")
        if linger != "yes":
            server.shell(
                name="Let the user's services run without a login (linger)", commands=[f"loginctl enable-linger {user}"]
            )
    unit = files.template(
        name=f"Ray {service.role} unit",
        src="templates/ray.service.j2",
        dest=service.unit_path,
        service=service,
        mode="644",
        jinja_env_kwargs=unit_template_env(),
        _sudo=service.system,
    )
    changed = unit.will_change
    systemd.service(
        name=f"Ray {service.role} (systemd)",
        service=service.unit,
        running=True,
        enabled=True,
        restarted=changed or bool(restart_reasons or stale.reasons),
        daemon_reload=changed or stale.daemon_reload,
        user_mode=not service.system,
        _sudo=service.system,
    )


def supervised_ray() -> None:
    if macos:
        launchd_service()
    else:
        systemd_service()


in_role_order(host, supervised_ray, first="head")
