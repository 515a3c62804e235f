"""Programs that run on the nodes, kept as files so that they are read, linted and tested as code.

Each is read once, at import, and sent inline with the command that runs it, as the
verification driver is: ``python -c <text> ARG...`` for a ``.py`` file, ``sh -c <text> NAME ARG...``
for a ``.sh`` file. Nothing is uploaded, so nothing is left behind on the node.

The Python programs run with the node's interpreters, the oldest being the pinned Python (3.9
by default): no syntax or library newer than Python 3.9 in them. The shell programs are POSIX
``sh`` (dash on Debian, bash as sh on macOS).
"""

from __future__ import annotations

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent


def node_script(name: str) -> str:
    """The text of the node program ``name`` (a file in this directory)."""
    return (DIRECTORY / name).read_text(encoding="utf-8")
