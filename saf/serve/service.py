"""The served model on the nodes: where it is staged, what the head's serving program is given, and
the service that keeps that program running (launchd / systemd), in one place.

Layout on a node (paths under the SSH user's home):

- ``~/.saf/models/<digest16>/``: a staged model, named by the first 16 hex digits of its digest
  (``saf.serve.model_dir.model_digest``), with ``.saf-digest`` holding the whole digest, written
  last: a directory without it is incomplete. ``.incoming-<digest16>/`` is one being copied;
  ``current`` links the model in use (for people and rollback: the program's config names the
  digest's directory itself, so a new model is a config change).
- ``~/.saf/serve/``: on the head, ``serve_app.py`` (saf/node_scripts/serve_app.py), ``config.json``
  and, with ``serve_bind: cluster``, ``api-key`` (0600; the service names it in its environment,
  never in argv).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pyinfra.api.host import Host
from pyinfra.facts.server import Command, Home, User

from saf.auth import NODE_TOKEN_FILE, auth_environment, auth_mode
from saf.node_data import NodeData
from saf.node_os import is_macos
from saf.paths import on_node
from saf.service import SERVE_RESOURCE, SupervisedProgram, is_system_service
from saf.venv_spec import current_venv_path

MODELS_DIR = "~/.saf/models"
SERVE_DIR = "~/.saf/serve"
PROGRAM = "serve_app.py"
CONFIG = "config.json"
NODE_KEY_FILE = f"{SERVE_DIR}/api-key"
KEY_FILE_ENV = "SAF_SERVE_API_KEY_FILE"  # saf/node_scripts/serve_app.py reads the key from the file it names
DIGEST_MARKER = ".saf-digest"
INCOMING_PREFIX = ".incoming-"
CURRENT = "current"
MODEL_NAME_PATTERN = r"[0-9a-f]{16}"  # exactly what model_dir_name makes: all the prune may remove
LABEL = "org.saf.serve"
UNIT = "saf-serve.service"
APP_NAME = "saf-serve"
SERVE_READY_S = 300  # the least the verification waits for the endpoint and its replicas


def model_dir_name(digest: str) -> str:
    """The staged model's directory name: the first 16 hex digits of its digest."""
    return digest[:16]


def is_model_dir_name(name: str) -> bool:
    """Whether ``name`` is exactly a name :func:`model_dir_name` makes, or one being copied."""
    bare = name[len(INCOMING_PREFIX) :] if name.startswith(INCOMING_PREFIX) else name
    return re.fullmatch(MODEL_NAME_PATTERN, bare) is not None


def endpoint_host(data: NodeData) -> str:
    """Where the endpoint listens on the head: its loopback, or its cluster ip with ``serve_bind: cluster``."""
    return data.head_ip if data.serve_bind == "cluster" else "127.0.0.1"


def endpoint_url(data: NodeData) -> str:
    """The endpoint as seen from the head (what the report and ``saf ask`` name), ending in /v1."""
    return f"http://{endpoint_host(data)}:{data.serve_port}/v1"


def serve_config(data: NodeData, home: str) -> dict:
    """The serving program's config (saf/node_scripts/serve_app.py ``load_config``): the model's staged
    path, the endpoint and one replica per serving node."""
    serve = data.serve
    return {
        "address": f"{data.head_ip}:{data.ray_port}",
        "model_path": f"{on_node(MODELS_DIR, home)}/{model_dir_name(serve['model_digest'])}",
        "model_id": serve["model_id"],
        "host": endpoint_host(data),
        "port": data.serve_port,
        "replicas": len(serve["serving_nodes"]),
        "resource": SERVE_RESOURCE,
        "app_name": APP_NAME,
    }


def config_text(config: dict) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class ServeService(SupervisedProgram):
    """The head's serving program as a service: a LaunchDaemon / system unit like Ray's (``system``),
    else a LaunchAgent (``uid`` names its domain) / a user unit."""

    user: str
    home: str
    venv_current: str
    environment: tuple[tuple[str, str], ...]
    system: bool = True
    uid: str = ""

    label = LABEL
    unit = UNIT

    @property
    def directory(self) -> str:
        return on_node(SERVE_DIR, self.home)

    @property
    def program(self) -> str:
        return f"{self.directory}/{PROGRAM}"

    @property
    def config(self) -> str:
        return f"{self.directory}/{CONFIG}"

    @property
    def key_file(self) -> str:
        return on_node(NODE_KEY_FILE, self.home)

    @property
    def python(self) -> str:
        return f"{self.venv_current}/bin/python"

    @property
    def arguments(self) -> tuple[str, ...]:
        """The command line: the venv's Python, the program, its config (no secret in it)."""
        return (self.python, self.program, "--config", self.config)


def serve_environment(data: NodeData, home: str, venv_current: str) -> tuple[tuple[str, str], ...]:
    """The program's environment: PATH with the venv first, Ray's auth token path (never the token) and,
    with ``serve_bind: cluster``, the API key's file (never the key)."""
    key = ((KEY_FILE_ENV, on_node(NODE_KEY_FILE, home)),) if data.serve_bind == "cluster" else ()
    return (
        ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1"),
        ("HOME", home),
        ("PATH", f"{venv_current}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        ("PYTHONUNBUFFERED", "1"),
        *auth_environment(auth_mode(data.ray_auth, data.ray_version), on_node(NODE_TOKEN_FILE, home)),
        *key,
    )


def node_serve_service(host: Host) -> ServeService:
    """The serving service ``host`` (the head) runs, from its settings and facts (like Ray's service)."""
    home = host.get_fact(Home)
    user = host.data.get("ssh_user") or host.get_fact(User)
    macos = is_macos(host)
    system = is_system_service(host.data, macos)
    uid = host.get_fact(Command, command="id -u") if macos and not system else ""
    venv_current = current_venv_path(host.data.venv_root, home)
    return ServeService(user, home, venv_current, serve_environment(host.data, home, venv_current), system, uid)


def serve_expectation(data: NodeData, home: str, python: str) -> dict | None:
    """What the verification proves of the served model from the head (None: nothing served, or the
    verifying node is not the head, whose endpoint the probe needs)."""
    if not getattr(data, "serve", None) or data.role != "head":
        return None
    return {
        "python": python,
        "endpoint": endpoint_url(data),
        "model": data.serve["model_id"],
        "mode": data.serve["mode"],
        "replicas": len(data.serve["serving_nodes"]),
        "key_file": on_node(NODE_KEY_FILE, home) if data.serve_bind == "cluster" else "",
        # a model's replicas may still be loading after a (re)start: at least 5 minutes for the endpoint
        "timeout": max(data.verify_timeout_s, SERVE_READY_S),
    }
