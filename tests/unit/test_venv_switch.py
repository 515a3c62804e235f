"""The venv switch, run for real in a temporary venv root: atomic links, pruning only SAF's venvs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from saf.operations.python import _SWITCH
from saf.spec import ClusterFileError, load_cluster
from tests.conftest import PROJECT_DIR

OLD, MID, NEW = ("py3.11.2-ray2.49.1-mlx0.29.1-aaaaaaaa", "py3.11.2-ray2.49.1-mlx0.29.3-bbbbbbbb",
                 "py3.11.2-ray2.60.0-mlx0.32.4-cccccccc")


def switch(root, name) -> None:
    subprocess.run([sys.executable, "-c", _SWITCH, str(root), name], check=True)


def test_the_switch_keeps_current_and_previous_and_prunes_only_its_own_venvs(tmp_path):
    for name in (OLD, MID, "projects", "py-notes"):
        (tmp_path / name).mkdir()
    switch(tmp_path, MID)
    assert (tmp_path / "projects").is_dir() and not (tmp_path / OLD).exists()
    (tmp_path / NEW).mkdir()  # the next venv, built beside
    switch(tmp_path, NEW)
    assert os.readlink(tmp_path / "current") == NEW and os.readlink(tmp_path / "previous") == MID
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MID, NEW, "current", "previous", "projects",
                                                                 "py-notes"])


@pytest.mark.parametrize("root", ["", "~", "~/", "/", "~/../elsewhere", " ~/saf/venv"])
def test_a_venv_root_that_is_not_a_directory_of_its_own_is_refused(write_cluster, root):
    path = write_cluster({"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}],
                          "settings": {"venv_root": root}})
    with pytest.raises(ClusterFileError, match="key settings.venv_root: .* is not a directory of its own"):
        load_cluster(PROJECT_DIR, path)
