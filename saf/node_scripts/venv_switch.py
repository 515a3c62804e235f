"""Make a venv ``current`` under a venv root, atomically, and prune SAF's older venvs.

Run on the node by a Python that stays (the new venv's, or the one rolled back to)::

    python venv_switch.py VENV_ROOT NAME

``current`` is replaced by a link to NAME in one rename, so it never points nowhere; the venv it
pointed to before becomes ``previous`` (for ``saf rollback``). Then every other directory named
like SAF's venvs is removed: only ``current`` and ``previous`` stay. Anything else under the root
(not named by ``saf.venv_spec.venv_name``, or a link) is left alone. Running it again changes nothing.
"""

import os
import re
import shutil
import sys

# what saf.venv_spec.venv_name makes; nothing else is ours to remove
OURS = re.compile(r"^py[0-9][^/]*-ray[^/]*-mlx[^/]*-[^/]+$")


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


def prune(root: str, name: str) -> None:
    keep = {name, target(root, "previous")}
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if entry not in keep and OURS.match(entry) and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)


if __name__ == "__main__":
    switch(sys.argv[1], sys.argv[2])
    prune(sys.argv[1], sys.argv[2])
