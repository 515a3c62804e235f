"""`saf lab ...`: make, inspect, enter and remove the lab; `saf lab run` is the whole main job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click

from saf.lab.api import Lab
from saf.lab.system import LabError


def _project_dir() -> Path:
    here = Path.cwd()
    if not (here / "inventory.py").exists():
        raise click.ClickException(f"run saf from the project directory (the one with inventory.py), not {here}")
    return here


def _lab() -> Lab:
    return Lab(_project_dir())


class _LabErrors(click.Group):
    """Turn a LabError into a one-paragraph message and exit status 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LabError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_LabErrors)
def lab() -> None:
    """Simulated nodes on this machine (network namespaces + systemd-nspawn), provisioned over SSH."""


@lab.command()
@click.option("--nodes", "count", default=3, show_default=True, help="How many nodes: alpha is the head.")
def up(count: int) -> None:
    """Make and boot the lab's nodes (idempotent) and write .saf/lab/cluster.yaml."""
    started = time.monotonic()
    made = _lab().up(count)
    click.echo(f"lab up: {', '.join(f'{n.name} {n.address}' for n in made)} ({time.monotonic() - started:.0f} s)")
    click.echo("deploy to it: SAF_CLUSTER=.saf/lab/cluster.yaml pyinfra inventory.py deploy.py -y")


@lab.command()
def status() -> None:
    """Each node: address, namespace, systemd state, sshd."""
    rows = _lab().status()
    if not rows:
        click.echo("the lab is down")
        return
    click.echo(f"{'node':8} {'address':12} {'netns':6} {'systemd':12} ssh")
    for row in rows:
        click.echo(
            f"{row.name:8} {row.address:12} {'yes' if row.namespace else 'no':6} "
            f"{row.systemd if row.running else 'stopped':12} {'yes' if row.ssh else 'no'}"
        )


@lab.command(context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(node: str, command: tuple[str, ...]) -> None:
    """Open a shell (or run COMMAND) on NODE as its SSH user, with the lab's key."""
    argv = _lab().ssh_argv(node, list(command))
    os.execvp(argv[0], argv)


@lab.command()
@click.option("--purge", is_flag=True, help="Also remove the caches (base rootfs, CPython source, pyenv mirror).")
def down(purge: bool) -> None:
    """Remove every node, namespace, process and file the lab made."""
    _lab().down(purge=purge)
    click.echo("lab down" + (" (caches removed)" if purge else " (caches kept in .saf/lab/cache)"))


@lab.command()
@click.option("--nodes", "count", default=3, show_default=True)
@click.option("--no-serve", is_flag=True, help="Do not serve the tiny model (Ray Serve costs the lab's two cores).")
def run(count: int, no_serve: bool) -> None:
    """The main job: lab up, deploy SAF to it serving a tiny model, and verify (the deploy's last step)."""
    lab_ = _lab()
    model = None if no_serve else tiny_model(lab_)
    made = lab_.up(count)
    cluster = lab_.layout.cluster_file
    if model is not None:
        lab_.write_cluster_file([node.name for node in made[:count]], serve={"model": str(model), "mode": "replicas"})
    click.echo(f"lab up; deploying with SAF_CLUSTER={cluster}")
    env = {**os.environ, "SAF_CLUSTER": str(cluster)}
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "inventory.py", "deploy.py", "-y"],
        cwd=lab_.layout.project,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode == 0 and model is not None:
        click.echo(
            f"the lab serves the tiny model {model.name} (random weights: its answers are gibberish, its "
            f'plumbing is real). Ask it:\n  SAF_CLUSTER={cluster} saf ask "Hello"\nor open the endpoint '
            f"for any OpenAI client:\n  SAF_CLUSTER={cluster} saf serve-tunnel   # http://127.0.0.1:8000/v1"
        )
    sys.exit(result.returncode)


def tiny_model(lab_: Lab) -> Path:
    """The lab's model: a real mlx-lm model directory with random weights, made once offline
    (saf/serve/tiny_model.py; needs the control machine's `serve` extra)."""
    from saf.serve.model_dir import model_directory_problems
    from saf.serve.tiny_model import make_tiny_model

    path = lab_.layout.cache / "tiny-model"
    if not model_directory_problems(path):
        return path
    try:
        return make_tiny_model(path)
    except ImportError as error:
        raise click.ClickException(
            f"the lab serves a tiny model made with mlx-lm, which this control machine lacks ({error}); install "
            "the serve extra (`.venv/bin/pip install -e '.[serve]'`), or run `saf lab run --no-serve`"
        ) from None
