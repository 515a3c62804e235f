"""The venv switch (saf/node_scripts/venv_switch.py), run for real in a temporary venv root, the
way the node runs it (``python -c <text> ROOT NAME``): atomic links, pruning only SAF's venvs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from saf.node_scripts import node_script
from saf.spec import ClusterFileError, load_cluster
from tests.conftest import PROJECT_DIR

OLD, MID, NEW = ("py3.11.2-ray2.49.1-mlx0.29.1-aaaaaaaa", "py3.11.2-ray2.49.1-mlx0.29.3-bbbbbbbb",
                 "py3.11.2-ray2.60.0-mlx0.32.4-cccccccc")
SWITCH = node_script("venv_switch.py")


def switch(root, name) -> None:
    subprocess.run([sys.executable, "-c", SWITCH, str(root), name], check=True)


def links(root) -> dict[str, str]:
    return {at: os.readlink(root / at) for at in ("current", "previous") if (root / at).is_symlink()}


def venvs(root, *names: str) -> None:
    for name in names:
        (root / name).mkdir()


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


def test_the_first_switch_makes_current_and_no_previous(tmp_path):
    venvs(tmp_path, NEW)
    switch(tmp_path, NEW)
    assert links(tmp_path) == {"current": NEW}


def test_switching_to_the_current_venv_again_changes_nothing(tmp_path):
    venvs(tmp_path, MID)
    switch(tmp_path, MID)
    venvs(tmp_path, NEW)
    switch(tmp_path, NEW)
    switch(tmp_path, NEW)
    assert links(tmp_path) == {"current": NEW, "previous": MID}
    assert (tmp_path / MID).is_dir() and (tmp_path / NEW).is_dir()


def test_switching_to_previous_swaps_the_two_links_as_a_rollback_does(tmp_path):
    venvs(tmp_path, MID)
    switch(tmp_path, MID)
    venvs(tmp_path, NEW)
    switch(tmp_path, NEW)
    switch(tmp_path, MID)
    assert links(tmp_path) == {"current": MID, "previous": NEW}
    assert (tmp_path / NEW).is_dir()


def test_a_link_left_by_an_interrupted_switch_is_replaced(tmp_path):
    venvs(tmp_path, NEW)
    os.symlink("nowhere", tmp_path / ".current.tmp")
    switch(tmp_path, NEW)
    assert links(tmp_path) == {"current": NEW}
    assert not os.path.lexists(tmp_path / ".current.tmp")


def test_links_and_files_named_like_its_venvs_are_not_removed(tmp_path):
    venvs(tmp_path, NEW)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / OLD)  # a link named like a venv: not ours to remove
    (tmp_path / MID).write_text("a file")
    switch(tmp_path, NEW)
    assert (tmp_path / OLD).is_symlink() and (tmp_path / MID).is_file() and elsewhere.is_dir()


@pytest.mark.parametrize("root", ["", "~", "~/", "/", "~/../elsewhere", " ~/saf/venv"])
def test_a_venv_root_that_is_not_a_directory_of_its_own_is_refused(write_cluster, root):
    path = write_cluster({"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}],
                          "settings": {"venv_root": root}})
    with pytest.raises(ClusterFileError, match=r"key settings.venv_root: .*; SAF manages \(and prunes\) what is in venv_root"):
        load_cluster(PROJECT_DIR, path)


LOOK_ALIKES = ("py3.11.2-ray2.49.1-mlx0.29.1-aaaaaaaa-mine", "py3.11.2-ray2.49.1-mlx0.29.1-AAAAAAAA",
               "py3.11-ray2.49.1-mlx0.29.1-aaaaaaaa", "py3.11.2-ray2.49.1-mlx0.29.1-aaaaaaa",
               "py3.11.2-ray2.49.1-mlx0.29.1-aaaaaaaa\n", "py3.11.2-ray-mlx-notes", "xpy3.11.2-ray2.49.1-mlx0.29.1-aaaaaaaa",
               "py3.11.2-ray2.49.1-mlx0.29.1-aaaaaaaa.bak")


def test_the_prune_matches_only_the_exact_venv_name_form_and_look_alikes_survive(tmp_path):
    for name in (OLD, *LOOK_ALIKES):
        (tmp_path / name).mkdir()
        (tmp_path / name / "keep.txt").write_text("the user's")
    venvs(tmp_path, NEW)
    switch(tmp_path, NEW)
    assert not (tmp_path / OLD).exists()
    assert all((tmp_path / name / "keep.txt").read_text() == "the user's" for name in LOOK_ALIKES)


def test_the_prune_never_follows_a_link_into_what_it_points_to(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    root = tmp_path / "root"
    root.mkdir()
    venvs(root, NEW, OLD)
    os.symlink(outside, root / OLD / "link")  # inside a venv that goes: the link goes, not its target
    os.symlink(outside, root / MID)  # named like a venv: not ours
    switch(root, NEW)
    assert not (root / OLD).exists() and (root / MID).is_symlink() and (outside / "precious").read_text() == "x"


def test_the_node_copy_of_the_venv_name_pattern_is_saf_s_and_matches_what_saf_names():
    from saf.node_scripts import venv_switch
    from saf.venv_spec import VENV_NAME_PATTERN, is_venv_name, requirements, venv_name

    assert venv_switch.OURS.pattern == VENV_NAME_PATTERN
    assert is_venv_name(venv_name("3.9.23", requirements("2.49.1", "0.29.1", "cpu", ["numpy==2.0.2"])))
    assert not any(is_venv_name(name) for name in LOOK_ALIKES)
