"""The ``saf`` command: what pyinfra's own CLI does not cover (the lab, verify, tunnels...)."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Studio Air Fabric: provision and verify a Ray + MLX cluster."""


def _register_subcommands() -> None:
    from saf.commands import dashboard, rollback, rotate_token, teardown, verify
    from saf.lab.cli import lab

    for command in (lab, verify, dashboard, rollback, teardown, rotate_token):
        main.add_command(command)


_register_subcommands()
