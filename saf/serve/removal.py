"""Taking serving away from a node: the head's serving service and its files, and the staged models.

Used by tasks/serve.py (the cluster file no longer serves, or this node no longer serves) and by
tasks/teardown.py. Only what SAF made goes: the service it installed, ``~/.saf/serve``, and model
directories named exactly as SAF names them (``saf.serve.service.is_model_dir_name``).
"""

from __future__ import annotations

import shlex

from pyinfra.api.host import Host
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd

from saf.node_os import is_macos
from saf.operations.launchd import launchd_job
from saf.serve.service import CURRENT, ServeService


def remove_models(host: Host, staged: dict, models: str) -> None:
    """SAF's model directories and ``current`` go (one command, only when there are some), the folder if empty."""
    if not staged["dirs"] and not staged["current"]:
        return
    paths = " ".join(shlex.quote(f"{models}/{entry}") for entry in sorted(staged["dirs"]))
    remove_dirs = f"rm -rf {paths} && " if paths else ""
    server.shell(
        name="Remove the served models (this node serves none)",
        commands=[
            f"{remove_dirs}rm -f {shlex.quote(f'{models}/{CURRENT}')} && {{ rmdir {shlex.quote(models)} || true; }}"
        ],
    )


def remove_serving(host: Host, service: ServeService) -> None:
    """The serving service stops (its program deletes the application from Ray Serve) and its files go;
    nothing is asked of a node that has none."""
    macos = is_macos(host)
    definition = service.plist_path if macos else service.unit_path
    if host.get_fact(File, path=definition):
        if macos:
            launchd_job(
                name="Stop the serving program (launchd)",
                label=service.label,
                plist=service.plist_path,
                domain=service.launchd_domain,
                present=False,
                _sudo=service.system,
            )
        else:
            systemd.service(
                name="Stop the serving program (systemd)",
                service=service.unit,
                running=False,
                enabled=False,
                user_mode=not service.system,
                _sudo=service.system,
            )
        files.file(name="Remove the serving service definition", path=definition, present=False, _sudo=service.system)
        if not macos:
            systemd.daemon_reload(name="Reload systemd", user_mode=not service.system, _sudo=service.system)
    if host.get_fact(File, path=service.program) or host.get_fact(File, path=service.config):
        files.directory(name="Remove the serving folder", path=service.directory, present=False)
