"""Make a venv ``current`` under a venv root, atomically, and prune SAF's older venvs.

Run on the node by a Python that stays (the new venv's, or the one rolled back to)::

    python venv_switch.py VENV_ROOT NAME

``current`` is replaced by a link to NAME in one rename, so it never points nowhere; the venv it
pointed to before becomes ``previous`` (for ``saf rollback``). Then every other directory named
exactly as SAF names its venvs is removed: only ``current`` and ``previous`` stay. Anything else
under the root (a name ``saf.venv_spec.venv_name`` does not make, a look-alike such as
``py3.11-ray-notes``, a link, a file) is left alone, and no link is followed. Running it again
changes nothing.
"""

import os
import re
import shutil
import stat
import sys

# saf.venv_spec.VENV_NAME_PATTERN (this program runs on the node without SAF; a test checks the copy):
# exactly what saf.venv_spec.venv_name makes, nothing else is ours to remove
OURS = re.compile(r"py[0-9]+\.[0-9]+\.[0-9]+-ray[0-9]+\.[0-9]+\.[0-9]+-mlx[0-9]+\.[0-9]+\.[0-9]+-[0-9a-f]{8}")


def target(root: str, at: str):
    """The venv name the link ``at`` points to, or None when there is no such link."""
    path = os.path.join(root, at)
    return os.readlink(path).rstrip("/").rsplit("/", 1)[-1] if os.path.islink(path) else None


def link(root: str, to: str, at: str) -> None:
    tmp = os.path.join(root, "." + at + ".tmp")
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(to, tmp)
    os.replace(tmp, os.path.join(root, at))  # atomic: `current` never points nowhere


def switch(root: str, name: str) -> None:
    old = target(root, "current")
    if old != name:
        if old:
            link(root, old, "previous")
        link(root, name, "current")


def is_real_directory(path: str) -> bool:
    """A directory itself, not a link to one (lstat: the link is never followed)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def prune(root: str, name: str) -> None:
    keep = {name, target(root, "previous")}
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if entry not in keep and OURS.fullmatch(entry) and is_real_directory(path):
            shutil.rmtree(path)  # removes links inside, never what they point to


if __name__ == "__main__":
    switch(sys.argv[1], sys.argv[2])
    prune(sys.argv[1], sys.argv[2])
