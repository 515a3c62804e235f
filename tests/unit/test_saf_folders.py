"""What is SAF's to write into and delete, run for real over temporary folders: the SafRoots fact's
judgement of venv_root and pyenv_root (as pyinfra reads it: its command run by ``sh``), and the
teardown's node script (saf/node_scripts/venv_teardown.sh) run the way the node runs it."""

from __future__ import annotations

import os
import subprocess

import pytest

from saf.facts.roots import SafRoots, root_state
from saf.node_scripts import node_script
from saf.venv_spec import ROOT_MARKER, VENV_NAME_PATTERN, VENV_SIDE_FILES
from tests.unit.test_facts_on_node import read_fact

OLD, NEW = "py3.9.23-ray2.49.1-mlx0.29.0-aaaaaaaa", "py3.9.23-ray2.49.1-mlx0.29.1-bbbbbbbb"
LOOK_ALIKE = "py3.9.23-ray2.49.1-mlx0.29.1-bbbbbbbb-mine"
TEARDOWN = node_script("venv_teardown.sh")


def roots(venv_root, pyenv_root) -> dict:
    return read_fact(SafRoots, venv_root=str(venv_root), pyenv_root=str(pyenv_root))


def saf_venv_root(root) -> None:
    """A venv root as SAF leaves it: two venvs, both links, the marker."""
    for name in (OLD, NEW):
        (root / name / "bin").mkdir(parents=True)
        (root / name / "bin" / "python").write_text("#!")
    os.symlink(NEW, root / "current")
    os.symlink(OLD, root / "previous")
    (root / ROOT_MARKER).write_text("")


# --- SafRoots ------------------------------------------------------------------------------------------


def test_absent_and_empty_folders_are_free_for_saf(tmp_path):
    (tmp_path / "empty").mkdir()
    assert roots(tmp_path / "absent", tmp_path / "empty") == {
        "venv_root": root_state("absent"), "pyenv_root": root_state("empty")}


def test_a_venv_root_of_only_saf_s_venvs_and_links_is_saf_s_marked_or_not(tmp_path):
    root = tmp_path / "venv"
    root.mkdir()
    saf_venv_root(root)
    (root / f"{NEW}.requirements.txt").write_text("ray\n")  # left by a build cut short
    assert roots(root, tmp_path / "p")["venv_root"] == root_state("ours", marked=True)
    (root / ROOT_MARKER).unlink()  # deployed before SAF marked its roots: adopted
    assert roots(root, tmp_path / "p")["venv_root"] == root_state("ours")


@pytest.mark.parametrize(("entry", "shown"), [("Documents", "Documents"), (LOOK_ALIKE, LOOK_ALIKE),
                                              (".ssh", ".ssh"), ("odd\nname", "odd?name")])
def test_anything_else_in_a_venv_root_makes_it_someone_else_s(tmp_path, entry, shown):
    root = tmp_path / "venv"
    (root / entry).mkdir(parents=True)
    assert roots(root, tmp_path / "p")["venv_root"] == root_state("foreign", shown)


def test_a_link_named_like_a_venv_is_not_saf_s(tmp_path):
    root = tmp_path / "venv"
    root.mkdir()
    os.symlink(tmp_path, root / NEW)
    assert roots(root, tmp_path / "p")["venv_root"] == root_state("foreign", NEW)


def test_a_marked_venv_root_holding_the_user_s_folder_stays_saf_s(tmp_path):
    root = tmp_path / "venv"
    root.mkdir()
    saf_venv_root(root)
    (root / "notes").mkdir()
    assert roots(root, tmp_path / "p")["venv_root"] == root_state("foreign", "notes", marked=True)


def test_a_file_where_a_root_should_be(tmp_path):
    (tmp_path / "f").write_text("x")
    assert roots(tmp_path / "f", tmp_path / "f") == {"venv_root": root_state("notdir"),
                                                     "pyenv_root": root_state("notdir")}


def test_pyenv_root_a_checkout_or_what_pyenv_keeps_is_fine_anything_else_is_not(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "libexec").mkdir(parents=True)
    (checkout / "libexec" / "pyenv").write_text("#!")
    (checkout / "README.md").write_text("pyenv")
    assert roots(tmp_path / "v", checkout)["pyenv_root"] == root_state("pyenv")
    brew = tmp_path / "brew"  # Homebrew's pyenv keeps only its data in ~/.pyenv
    for name in ("versions/3.9.23", "shims", "cache"):
        (brew / name).mkdir(parents=True)
    (brew / "saf-build-3.9.23.log").write_text("")
    assert roots(tmp_path / "v", brew)["pyenv_root"] == root_state("ours")
    (brew / "Documents").mkdir()
    assert roots(tmp_path / "v", brew)["pyenv_root"] == root_state("foreign", "Documents")


def test_folders_with_spaces_and_quotes_are_one_argument(tmp_path):
    root = tmp_path / "my 'venv' $HOME"
    root.mkdir()
    saf_venv_root(root)
    assert roots(root, tmp_path / "p")["venv_root"] == root_state("ours", marked=True)


# --- the teardown's node script --------------------------------------------------------------------------


def teardown(root) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", TEARDOWN, "venv_teardown.sh", str(root), VENV_NAME_PATTERN, ROOT_MARKER,
                           " ".join(VENV_SIDE_FILES)], capture_output=True, text=True, timeout=60, check=True)


def test_teardown_removes_saf_s_venvs_and_links_and_keeps_the_user_s_folder_and_the_root(tmp_path):
    root = tmp_path / "venv"
    root.mkdir()
    saf_venv_root(root)
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    os.symlink(outside, root / NEW / "link-out")  # inside a venv that goes: only the link goes
    (root / LOOK_ALIKE).mkdir()
    os.symlink(outside, root / "py3.9.23-ray2.49.1-mlx0.29.2-cccccccc")  # a link named like a venv
    (root / f"{OLD}\n").mkdir()  # a name whose first line is a venv's
    done = teardown(root)
    assert sorted(os.listdir(root)) == sorted([ROOT_MARKER, "notes", LOOK_ALIKE, f"{OLD}\n",
                                               "py3.9.23-ray2.49.1-mlx0.29.2-cccccccc"])
    assert (root / "notes" / "todo.txt").read_text() == "mine" and (outside / "precious").read_text() == "x"
    assert "kept" in done.stderr
    teardown(root)  # again: nothing more goes
    assert (root / "notes" / "todo.txt").is_file()


def test_teardown_of_a_root_of_only_saf_s_things_removes_the_root(tmp_path):
    root = tmp_path / "venv"
    root.mkdir()
    saf_venv_root(root)
    (root / f"{OLD}.pip.log").write_text("")
    os.symlink(NEW, root / ".current.tmp")
    teardown(root)
    assert not root.exists() and tmp_path.is_dir()


def test_teardown_of_an_absent_root_or_a_link_to_one_leaves_them(tmp_path):
    teardown(tmp_path / "absent")
    real = tmp_path / "real"
    real.mkdir()
    saf_venv_root(real)
    os.symlink(real, tmp_path / "link")
    teardown(tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and real.is_dir() and os.listdir(real) == []
