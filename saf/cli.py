"""The ``saf`` command: what pyinfra's own CLI does not cover.

``saf verify``, ``saf rollback``, ``saf teardown``, ``saf restore-launchers`` and ``saf rotate-token``
run the deploy's parts a user runs alone (task files of their own, through pyinfra); ``saf
dashboard`` is a private way to the dashboard; ``saf ask`` and ``saf serve-tunnel`` reach the served
model the same way; ``saf lab`` (saf/lab/cli.py) is the local lab.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from saf.auth import auth_mode, rotate_control_token
from saf.lab.cli import lab
from saf.launch import LaunchError
from saf.launch import launch as run_launch
from saf.lock import take_or_exit
from saf.mlx_ring import UnknownNodes
from saf.paths import on_control
from saf.serve.client import ServeClientError, api_key, print_answer, tunnel, tunnel_argv
from saf.spec import ClusterFileError, load_cluster
from saf.ssh import ssh_argv


@click.group()
def main() -> None:
    """Studio Air Fabric: provision and verify a Ray + MLX cluster."""


SAF_PROJECT = Path(__file__).resolve().parent.parent  # the project SAF is installed from (editable)


def _project_dir() -> Path:
    here = Path.cwd()
    if not (here / "inventory.py").exists():
        raise click.ClickException(f"run saf from the project directory (the one with inventory.py), not {here}")
    return here


@click.command()
def verify() -> None:
    """Verify the cluster now (the deploy's last step, alone): table, .saf/reports/latest.json, exit status."""
    _run_deploy_file("tasks/verify.py")


def _run_deploy_file(deploy_file: str, *extra: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "inventory.py", deploy_file, "-y", *extra],
        cwd=_project_dir(),
        stdin=subprocess.DEVNULL,
    )
    sys.exit(result.returncode)


@click.command()
@click.option("--limit", "limit", metavar="NODE", help="Only this node (a name from the cluster file).")
def doctor(limit: str | None) -> None:
    """Read every node (or one) as the deploy would and say, per check, OK / would change / cannot,
    with the fix; changes nothing; exits non-zero when the deploy would stop on a node."""
    _run_deploy_file("tasks/doctor.py", *(["--limit", limit] if limit else []))


@click.command()
def rollback() -> None:
    """Make every node's previous venv current again and restart Ray, head first."""
    _run_deploy_file("tasks/rollback.py")


@click.command()
@click.option("--venvs", is_flag=True, help="Also remove the venvs.")
def teardown(venvs: bool) -> None:
    """Stop Ray and remove its launchd jobs / systemd units on every node (venvs stay unless --venvs)."""
    _run_deploy_file("tasks/teardown.py", *(["--data", "teardown_venvs=true"] if venvs else []))


class UnusableClusterFile(click.ClickException):
    """A cluster file that cannot be used: exit status 2, as the deploy gives (no traceback)."""

    exit_code = 2


def _load_cluster():
    try:
        return load_cluster(_project_dir())
    except ClusterFileError as error:
        raise UnusableClusterFile(str(error)) from None


@click.command(name="restore-launchers")
@click.option("--limit", "limit", metavar="NODE", help="Only this node (a name from the cluster file).")
def restore_launchers(limit: str | None) -> None:
    """Put back what `foreign_ray: stop` set aside on every node (or one): launchd jobs and systemd
    units to their paths and enabled, crontab lines uncommented; nothing is started."""
    _run_deploy_file("tasks/restore_launchers.py", *(["--limit", limit] if limit else []))


@click.command(name="rotate-token")
def rotate_token() -> None:
    """Replace the Ray auth token: a new one on the control machine, then a deploy that pushes it
    to every node and restarts Ray, head first, and verifies the cluster."""
    cluster = _load_cluster()
    settings = cluster.settings
    if auth_mode(settings.ray_auth, settings.ray_version) != "token":
        raise click.ClickException(
            f"this cluster runs without token authentication (ray_auth: {settings.ray_auth}, ray_version: "
            f"{settings.ray_version}); there is no token to rotate"
        )
    # the deploy lock before the new token exists: a deploy running now would push the old one
    # (saf/lock.py; the deploy below runs under this lock)
    take_or_exit(cluster.head, "saf rotate-token")
    path = rotate_control_token(on_control(settings.ray_auth_token_file, _project_dir()))
    click.echo(f"saf: new Ray auth token in {path}; deploying it (head first)")
    _run_deploy_file("deploy.py")


@click.command()
@click.option("--port", default=8265, show_default=True, help="Local port for the tunnel.")
def dashboard(port: int) -> None:
    """Open an SSH tunnel to the head's dashboard (bound to its loopback) and keep it open."""
    cluster = _load_cluster()
    head, settings = cluster.head, cluster.settings
    bind = head.ip if settings.dashboard_bind == "cluster" else "127.0.0.1"
    argv = ssh_argv(head, options=("-N", "-L", f"127.0.0.1:{port}:{bind}:{settings.dashboard_port}"))
    click.echo(f"dashboard of {head.name}: http://127.0.0.1:{port} (Ctrl-C closes the tunnel)")
    if auth_mode(settings.ray_auth, settings.ray_version) == "token":
        token_file = on_control(settings.ray_auth_token_file, _project_dir())
        click.echo(f"it asks for the cluster's token: the content of {token_file}")
    os.execvp(argv[0], argv)


def _serving_cluster():
    cluster = _load_cluster()
    if cluster.serve is None:
        raise click.ClickException(
            "this cluster file serves no model: add a `serve:` part (README, Serving a model) and run the deploy"
        )
    return cluster


@click.command()
@click.argument("prompt")
@click.option("--max-tokens", default=128, show_default=True, help="Most tokens in the answer.")
def ask(prompt: str, max_tokens: int) -> None:
    """Send PROMPT to the cluster's served model (greedy, through an SSH tunnel to the head's endpoint);
    print the answer as it streams, then its tokens/s."""
    cluster = _serving_cluster()
    try:
        key = api_key(cluster, _project_dir())
        with tunnel(cluster) as url:
            print_answer(url, prompt, key, max_tokens)
    except (ServeClientError, OSError) as error:
        raise click.ClickException(f"{error}; is the model served? `saf verify` says") from None


@click.command(name="serve-tunnel")
@click.option("--port", default=8000, show_default=True, help="Local port for the tunnel.")
def serve_tunnel(port: int) -> None:
    """Open an SSH tunnel to the served model's endpoint on the head and keep it open: any OpenAI client
    can then use http://127.0.0.1:PORT/v1."""
    cluster = _serving_cluster()
    click.echo(f"the model served by {cluster.head.name}: http://127.0.0.1:{port}/v1 (Ctrl-C closes the tunnel)")
    if cluster.settings.serve_bind == "cluster":
        click.echo(
            f"it asks for the API key: the content of {on_control(cluster.settings.serve_api_key_file, _project_dir())}"
        )
    argv = tunnel_argv(cluster, port)
    os.execvp(argv[0], argv)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--nodes", "names", metavar="A,B,...", help="Only these nodes (names from the cluster file).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def launch(names: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND as an MLX distributed program: one rank per node, through Ray, from this directory
    (shipped to every node). `saf launch -- python train.py`; exits with the worst rank's status."""
    try:
        cluster = load_cluster(_project_dir() if (Path.cwd() / "inventory.py").exists() else SAF_PROJECT)
    except ClusterFileError as error:
        raise UnusableClusterFile(str(error)) from None
    try:
        status = run_launch(cluster, names, list(command), Path.cwd())
    except (LaunchError, UnknownNodes) as error:
        raise click.ClickException(str(error)) from None
    sys.exit(status)


for _command in (
    lab,
    doctor,
    verify,
    dashboard,
    rollback,
    teardown,
    restore_launchers,
    rotate_token,
    launch,
    ask,
    serve_tunnel,
):
    main.add_command(_command)
