"""Homebrew formulae by exact name.

pyinfra's ``brew.packages`` reads ``openssl@3`` as formula ``openssl`` at version ``3``, so a Mac
with openssl@3 installed would be told to install it again on every run; this operation compares
formula names as Homebrew lists them.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation
from pyinfra.facts.brew import BrewPackages


@operation()
def formulae(packages: list[str], brew: str = "brew"):
    """
    Install the Homebrew formulae in ``packages`` that are not installed (canonical names).

    + packages: formula names as ``brew list --versions`` prints them (``sqlite``, not ``sqlite3``)
    + brew: the brew executable
    """
    missing = missing_formulae(packages, host.get_fact(BrewPackages))
    if missing:
        yield f"{shlex.quote(brew)} install {' '.join(shlex.quote(name) for name in missing)}"
    else:
        host.noop(f"formulae {', '.join(packages)} are installed")


def missing_formulae(packages: list[str], installed: dict) -> list[str]:
    """The formulae of ``packages`` (in their order) that ``brew list --versions`` does not list."""
    return [name for name in packages if name not in installed]
