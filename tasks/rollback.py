"""Rollback (`saf rollback`): make the previous venv current again on every node and restart Ray,
head first. The next deploy goes back to the pins of the cluster file: revert them to keep it."""

from pyinfra import host
from pyinfra.facts.server import Home
from pyinfra.operations import systemd

from saf.node_os import is_macos
from saf.operations.launchd import launchd_job
from saf.operations.python import rolled_back_venv
from saf.paths import on_node
from saf.service import in_role_order, node_ray_service

service = node_ray_service(host)


def switch_and_restart() -> None:
    switched = rolled_back_venv(
        name="Make the previous venv current", root=on_node(host.data.venv_root, host.get_fact(Home))
    )
    if not switched.will_change:
        return
    if is_macos(host):
        launchd_job(
            name=f"Restart Ray {service.role} (launchd)",
            label=service.label,
            plist=service.plist_path,
            domain=service.launchd_domain,
            restart=True,
            _sudo=service.system,
        )
    else:
        systemd.service(
            name=f"Restart Ray {service.role} (systemd)",
            service=service.unit,
            restarted=True,
            user_mode=not service.system,
            _sudo=service.system,
        )


in_role_order(host, switch_and_restart, first="head")
