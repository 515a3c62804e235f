"""Teardown (`saf teardown`): stop the serving program (if any) and Ray and remove their jobs/units on
every node, workers first; staged models go too.
The auth token goes too; the venvs stay unless the run sets `--data teardown_venvs=true`, and then
only SAF's venvs and links go: venv_root itself only if nothing of anyone else's is left in it."""

from pyinfra import host
from pyinfra.facts.server import Home
from pyinfra.operations import files, systemd

from saf.auth import NODE_TOKEN_FILE
from saf.facts.serve import StagedModels
from saf.node_os import is_macos
from saf.operations.launchd import launchd_job
from saf.operations.python import removed_venvs
from saf.paths import on_node
from saf.preflight import root_paths
from saf.serve.removal import remove_models, remove_serving
from saf.serve.service import MODELS_DIR, node_serve_service
from saf.service import in_role_order, node_ray_service

home = host.get_fact(Home)
service = node_ray_service(host)


def remove_service() -> None:
    if is_macos(host):
        launchd_job(
            name=f"Stop Ray {service.role} (launchd)",
            label=service.label,
            plist=service.plist_path,
            domain=service.launchd_domain,
            present=False,
            _sudo=service.system,
        )
        files.file(
            name=f"Remove the Ray {service.role} job definition",
            path=service.plist_path,
            present=False,
            _sudo=service.system,
        )
    else:
        systemd.service(
            name=f"Stop Ray {service.role} (systemd)",
            service=service.unit,
            running=False,
            enabled=False,
            user_mode=not service.system,
            _sudo=service.system,
        )
        removed = files.file(
            name=f"Remove the Ray {service.role} unit", path=service.unit_path, present=False, _sudo=service.system
        )
        if removed.will_change:
            systemd.daemon_reload(name="Reload systemd", user_mode=not service.system, _sudo=service.system)


if host.data.role == "head":  # the serving program first, while Ray still runs: it deletes its application
    remove_serving(host, node_serve_service(host))
in_role_order(host, remove_service, first="worker")
remove_models(host, host.get_fact(StagedModels, models=on_node(MODELS_DIR, home)), on_node(MODELS_DIR, home))

files.file(name="Remove the Ray auth token", path=on_node(NODE_TOKEN_FILE, home), present=False)

if str(host.data.get("teardown_venvs", "")).lower() in ("1", "true", "yes"):
    venv_root, pyenv_root = root_paths(host)
    removed_venvs(name="Remove SAF's venvs", root=venv_root, pyenv_root=pyenv_root)
