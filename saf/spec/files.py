"""Files the cluster file names or is: where it is, and why a file cannot be used.

The cluster file is ``cluster.yaml`` beside ``inventory.py``, or the path in ``SAF_CLUSTER``; the
paths inside it (``ssh_key``, ``ssh_known_hosts_file``) are relative to its directory.
"""

from __future__ import annotations

import os
from pathlib import Path

CLUSTER_ENV = "SAF_CLUSTER"
DEFAULT_CLUSTER_FILE = "cluster.yaml"


def cluster_file_path(project_dir: Path) -> Path:
    """The cluster file in use: $SAF_CLUSTER if set, else cluster.yaml beside inventory.py."""
    override = os.environ.get(CLUSTER_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return project_dir / DEFAULT_CLUSTER_FILE


def resolve(cluster_path: Path, value: str) -> Path:
    """A path from the cluster file: ~ expanded, relative to the cluster file's directory."""
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else (cluster_path.parent / candidate).resolve()


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable file (the start of a sentence), or None when it is one."""
    if path.is_dir():
        return "is a directory, not a file"
    if not path.exists():
        return "does not exist"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def read_cluster_text(path: Path) -> str:
    """The cluster file's text, or a ValueError whose message says what is wrong with the file and the fix."""
    problem = file_problem(path)
    if problem == "does not exist":
        raise ValueError(
            "the file does not exist. Copy cluster.example.yaml to cluster.yaml and list your "
            f"nodes, or point {CLUSTER_ENV} at your cluster file."
        )
    if problem == "is a directory, not a file":
        raise ValueError(
            f"it is a directory, not a file; point {CLUSTER_ENV} at the cluster file itself "
            f"(like {path / DEFAULT_CLUSTER_FILE})."
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        reason = "permission denied" if isinstance(error, PermissionError) else error.strerror or str(error)
        raise ValueError(
            f"the file cannot be read ({reason}); make it readable by this user (chmod u+r), or run as its owner."
        ) from None
    return decode_text(data)


def decode_text(data: bytes) -> str:
    """UTF-8 text, or a ValueError: a cluster file is YAML text, never a binary file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"the file is not text (byte {data[error.start]:#04x} at offset {error.start} is not "
            "UTF-8); a cluster file is YAML written in a text editor and saved as UTF-8."
        ) from None
    if "\x00" in text:
        raise ValueError(
            f"the file is not text (it holds a NUL byte at offset {text.index(chr(0))}); a cluster "
            "file is YAML written in a text editor and saved as UTF-8."
        )
    return text
