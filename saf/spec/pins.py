"""Which Python the Ray and MLX pins support, checked offline before any node builds one.

The table holds what PyPI's wheels say (their ``cp3XX`` tags, looked up with ``pip install
--dry-run --no-deps --only-binary=:all: --python-version X --platform macosx_14_0_arm64``, and
manylinux2014_x86_64 for Ray; December 2026). A pin outside the table is not judged: SAF does not
guess what a Ray or MLX it has not seen will support (the deploy's own check of the index, or the
wheelhouse, still finds a wheel that is missing). Python 3.8 and older are refused whatever the pins.
Add a row when a new release changes the range.
"""

from __future__ import annotations

from typing import NamedTuple

from packaging.version import Version

OLDEST_PYTHON = (3, 9)  # neither Ray since 2.47 nor MLX has wheels for 3.8 or older


class Supported(NamedTuple):
    """From release ``since`` on (up to the next row), a package has wheels for Python ``oldest``..``newest``."""

    since: str
    oldest: tuple[int, int]
    newest: tuple[int, int]


SUPPORTED_PYTHON: dict[str, tuple[Supported, ...]] = {
    "ray": (
        Supported("2.47.0", (3, 9), (3, 13)),
        Supported("2.52.0", (3, 10), (3, 13)),
        Supported("2.55.0", (3, 10), (3, 14)),
    ),
    "mlx": (
        Supported("0.29.0", (3, 9), (3, 13)),
        Supported("0.29.4", (3, 10), (3, 14)),
    ),
}
NEWEST_KNOWN = {"ray": "2.60.0", "mlx": "0.32.4"}  # the newest release the table was checked against
PIN_SETTING = {"ray": "ray_version", "mlx": "mlx_version"}


def supported_python(package: str, version: str) -> Supported | None:
    """The row of the table for this release, or None for a release the table does not know."""
    pinned = Version(version)
    if pinned > Version(NEWEST_KNOWN[package]):
        return None
    rows = [row for row in SUPPORTED_PYTHON[package] if Version(row.since) <= pinned]
    return rows[-1] if rows else None


def python_pin_problems(python_version: str, pins: dict[str, str]) -> list[str]:
    """Why ``python_version`` cannot run the pinned packages (``{"ray": "2.49.1", ...}``): one sentence each."""
    minor = tuple(int(part) for part in python_version.split(".")[:2])
    if minor < OLDEST_PYTHON:
        return [
            f"python_version {python_version} is older than any Ray or MLX SAF installs supports; pin "
            f"Python {_dotted(OLDEST_PYTHON)} or newer, like 3.9.23 (with the default pins) or 3.11.9"
        ]
    problems = []
    for package, version in pins.items():
        row = supported_python(package, version)
        if row and not row.oldest <= minor <= row.newest:
            problems.append(
                f"python_version {python_version} is not supported by {package} {version} (its wheels are for "
                f"Python {_dotted(row.oldest)} to {_dotted(row.newest)}); pin a Python in that range, or change "
                f"{PIN_SETTING[package]} to a release that supports Python {_dotted(minor)}"
            )
    return problems


def _dotted(minor: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in minor)
