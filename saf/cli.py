"""The ``saf`` command: what pyinfra's own CLI does not cover (the lab, verify, tunnels...)."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Studio Air Fabric: provision and verify a Ray + MLX cluster."""


def _register_subcommands() -> None:
    from saf.lab.cli import lab

    main.add_command(lab)


_register_subcommands()
