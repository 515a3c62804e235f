"""Paths on nodes and on the control machine, resolved the same way everywhere."""

from __future__ import annotations

from pathlib import Path


def on_node(path: str, home: str) -> str:
    """An absolute node path: ``~`` is the SSH user's home; relative paths are under it too.

    Plists, units and SFTP do not expand ``~``, so every path SAF writes is made absolute.
    """
    if path == "~":
        return home
    if path.startswith("~/"):
        return f"{home.rstrip('/')}/{path[2:]}"
    if path.startswith("/"):
        return path
    return f"{home.rstrip('/')}/{path}"


def on_control(path: str, project_dir: str | Path) -> Path:
    """A control-side path from a setting: ``~`` expanded, relative to the project directory."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(project_dir) / candidate
