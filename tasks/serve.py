"""Serving a model (the cluster file's ``serve:`` part, mode ``replicas``): the model staged on every
serving node, and on the head the program that runs it on Ray Serve, supervised like Ray.

Staging: the model directory goes from the control machine to ``~/.saf/models/.incoming-<digest16>/``
(rsync with checksums, every node in parallel), gets its ``.saf-digest`` and is renamed to
``<digest16>/`` only when complete; ``current`` then points at it; older models are pruned, keeping
the one ``current`` named before (exact names only). A node that holds the model already is not
contacted for it at all: a re-run with the same model changes nothing.

The head's program (saf/node_scripts/serve_app.py) and its config are files in ``~/.saf/serve/``;
the service (LaunchDaemon ``org.saf.serve`` / ``saf-serve.service``) restarts only when its
definition, the program, the config (model, port, replicas, bind), the API key or the venv change,
and the run says why. Without a ``serve:`` part (or on a node that no longer serves), the service and
the files go.
"""

import shlex
from io import StringIO

from pyinfra import host, logger, state
from pyinfra.facts.files import File
from pyinfra.facts.server import Home
from pyinfra.operations import files, server, systemd

from saf.auth import ensure_control_token
from saf.facts.serve import StagedModels
from saf.node_os import is_macos
from saf.node_scripts import DIRECTORY as NODE_SCRIPTS
from saf.operations.launchd import launchd_job
from saf.operations.plist import linted_plist
from saf.paths import on_control, on_node
from saf.restarts import RestartReason, ray_restart_reasons
from saf.serve.removal import remove_models, remove_serving
from saf.serve.service import (
    CURRENT,
    DIGEST_MARKER,
    INCOMING_PREFIX,
    MODELS_DIR,
    PROGRAM,
    config_text,
    model_dir_name,
    node_serve_service,
    serve_config,
)
from saf.templating import unit_template_env

home = host.get_fact(Home)
models = on_node(MODELS_DIR, home)
serve = host.data.serve
staged = host.get_fact(StagedModels, models=models)
macos = is_macos(host)
service = node_serve_service(host) if host.data.role == "head" else None


def _path(name: str) -> str:
    return shlex.quote(f"{models}/{name}")


def stage_model() -> None:
    """The model in ``<digest16>/`` (copied only when missing or incomplete), ``current`` on it, older ones pruned."""
    digest = serve["model_digest"]
    name = model_dir_name(digest)
    if staged["dirs"].get(name) != digest:
        incoming = f"{INCOMING_PREFIX}{name}"
        files.directory(name="Models folder", path=models, present=True)
        files.rsync(
            name=f"Copy the model {serve['model_id']} ({name}) to the node",
            src=serve["model_path"].rstrip("/") + "/",
            dest=f"{models}/{incoming}/",
            flags=["-a", "--checksum", "--partial", "--delete", "--exclude=.*"],
        )
        server.shell(
            name=f"Mark the model {name} complete and put it in place",
            commands=[
                f"printf %s {shlex.quote(digest)} > {_path(incoming)}/{DIGEST_MARKER} && rm -rf {_path(name)} "
                f"&& mv {_path(incoming)} {_path(name)}"
            ],
        )
    if staged["current"] != name:
        server.shell(name=f"Models: {CURRENT} -> {name}", commands=[f"ln -sfn {shlex.quote(name)} {_path(CURRENT)}"])
    old = sorted(set(staged["dirs"]) - {name, staged["current"], f"{INCOMING_PREFIX}{name}"})
    if old:
        server.shell(
            name=f"Prune older models ({', '.join(old)})",
            commands=[f"rm -rf {' '.join(_path(entry) for entry in old)}"],
        )


def serving_files() -> list[str]:
    """The program, its config and (serve_bind: cluster) the API key on the head; why the service restarts."""
    why = []
    files.directory(name="Serving folder (0700)", path=service.directory, mode="700", present=True)
    program = files.put(
        name="Serving program (serve_app.py)", src=str(NODE_SCRIPTS / PROGRAM), dest=service.program, mode="644"
    )
    if program.will_change:
        why.append("the serving program changes")
    config = files.put(
        name="Serving config", src=StringIO(config_text(serve_config(host.data, home))), dest=service.config, mode="644"
    )
    if config.will_change:
        why.append("its config (model, port, replicas or bind) changes")
    if host.data.serve_bind == "cluster":
        key = ensure_control_token(on_control(host.data.serve_api_key_file, state.cwd))
        pushed = files.put(name="Serving API key (0600)", src=str(key), dest=service.key_file, mode="600")
        if pushed.will_change:
            why.append("the API key changes")
    elif host.get_fact(File, path=service.key_file):
        files.file(name="No serving API key (serve_bind: loopback)", path=service.key_file, present=False)
    if RestartReason.VENV_SWITCHED in ray_restart_reasons(host):
        why.append(RestartReason.VENV_SWITCHED.value)
    return why


def supervised_program(why: list[str]) -> None:
    owner = {"user": "root", "group": "wheel", "_sudo": True} if service.system and macos else {}
    if macos:
        files.directory(name="Serving log directory", path=service.logs, present=True)
        plist = linted_plist(
            name="Serving job definition",
            src="templates/serve.plist.j2",
            dest=service.plist_path,
            service=service,
            daemon=service.system,
            mode="644",
            **owner,
        )
        changed = plist.will_change
        _say_why(why, changed)
        launchd_job(
            name="Serving program (launchd)",
            label=service.label,
            plist=service.plist_path,
            domain=service.launchd_domain,
            definition_changed=changed,
            restart=bool(why),
            _sudo=service.system,
        )
        return
    if not service.system:
        files.directory(name="User unit directory", path=service.unit_dir, present=True)
    unit = files.template(
        name="Serving unit",
        src="templates/serve.service.j2",
        dest=service.unit_path,
        service=service,
        ray_unit="saf-ray-head.service",
        mode="644",
        jinja_env_kwargs=unit_template_env(),
        _sudo=service.system,
    )
    changed = unit.will_change
    _say_why(why, changed)
    systemd.service(
        name="Serving program (systemd)",
        service=service.unit,
        running=True,
        enabled=True,
        restarted=bool(why) or changed,
        daemon_reload=changed,
        user_mode=not service.system,
        _sudo=service.system,
    )


def _say_why(why: list[str], definition_changed: bool) -> None:
    reasons = [*(["its service definition changes"] if definition_changed else []), *why]
    if reasons:
        logger.info(f"The serving program restarts on {host.name}: {'; '.join(reasons)}")


if serve and host.data.serves_model:
    stage_model()
else:
    remove_models(host, staged, models)
if service is not None:
    if serve:
        supervised_program(serving_files())
    else:
        remove_serving(host, service)
