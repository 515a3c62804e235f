"""The planned Python and venv commands run here for real (``sh``, files in a temporary home)
where they fail: each failure names the node, the version or package, and what it means for the
node, and removes exactly what the run made. A stand-in executable plays a node program that
fails (a Python that cannot make a venv, a pip that finds no wheel)."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from saf.wheelhouse import platform_key, wheel_dir
from tests.facts import converged_mac, fresh_mac, venv_for, venv_listing
from tests.wheels import stand_in_stack

ONE_MAC = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}]}
NAME, REQS = venv_for()
OLD, _ = venv_for(mlx="0.29.0")
PYENV_PYTHON = ".pyenv/versions/3.9.23/bin/python"


def run_commands(op, replace: dict[str, str] | None = None, **env: str) -> subprocess.CompletedProcess:
    """Run a planned op here: uploads written, each command by ``sh``, stopping at the first failure;
    the status is the last command's, stdout and stderr those of all the commands run."""
    status, stdout, stderr = 0, "", ""
    for command in op.commands:
        for old, new in (replace or {}).items():
            command = command.replace(old, new)
        if command.startswith("upload "):
            dest = Path(command.removeprefix("upload "))
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(op.uploads[str(dest)])
            continue
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        result = subprocess.run(["sh", "-c", command], check=False, capture_output=True, text=True,
                                env={**clean, **env}, timeout=120)
        status, stdout, stderr = result.returncode, stdout + result.stdout, stderr + result.stderr
        if status != 0:
            break
    return subprocess.CompletedProcess(op.commands, status, stdout, stderr)


def executable(path: Path, script: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


def venv_op(plan, facts, settings=None):
    cluster = {**ONE_MAC, "settings": settings or {}}
    return plan({"alpha": facts}, cluster=cluster)["alpha"].op(f"Venv {NAME}")


def test_a_python_built_without_a_module_is_named_with_its_version_node_and_the_fix(plan, tmp_path):
    home = tmp_path / "home"
    build = plan({"alpha": fresh_mac(**{"server.Home": str(home)})}, cluster=ONE_MAC)["alpha"].op("Build Python")
    check = build.commands[-1].replace(f"{home}/{PYENV_PYTHON}", sys.executable)
    (tmp_path / "lzma.py").write_text("raise ImportError('no liblzma when it was built')\n")
    result = subprocess.run(["sh", "-c", check], check=False, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip() == ("SAF: Python 3.9.23 on alpha was built without lzma: install the build "
                                     "dependencies (see README), then re-run to rebuild it")


def test_the_source_tarball_goes_to_pyenvs_cache_and_the_build_takes_it(plan, tmp_path):
    (tmp_path / "Python-3.9.23.tar.gz").write_bytes(b"tarball")
    cluster = {**ONE_MAC, "settings": {"python_source_cache": str(tmp_path)}}
    build = plan({"alpha": fresh_mac()}, cluster=cluster)["alpha"].op("Build Python").commands
    assert build[0] == "mkdir -p /Users/arthurdell/.pyenv/cache"
    words = shlex.split(build[-2])
    assert words[0] == "env" and "_PYTHON_BUILD_FORCE_SKIP_XZ=1" in words and "PYENV_ROOT=/Users/arthurdell/.pyenv" in words


def test_without_a_wheelhouse_pip_installs_from_the_index(plan):
    venv = venv_op(plan, fresh_mac())
    words = shlex.split(next(c for c in venv.commands if c.startswith("sh -c ")))
    assert "--no-index" not in words and "--find-links" not in words


def test_a_venv_that_cannot_be_created_is_removed_and_the_node_stays_on_its_venv(plan, tmp_path):
    home = tmp_path / "home"
    root = home / "saf" / "venv"
    (root / OLD).mkdir(parents=True)
    os.symlink(OLD, root / "current")
    (root / NAME / "stale").mkdir(parents=True)  # left by an earlier, interrupted build
    listing = venv_listing({OLD: True, NAME: False}, current=OLD)
    facts = converged_mac(home=str(home), **{f"python.SafVenvs:{root}": listing})  # asked of this root
    # a Python that starts the venv, then fails (as one whose ensurepip is missing does)
    broken = executable(tmp_path / "python", 'mkdir -p "$3/bin"; echo "Error: ensurepip is not available" >&2; exit 1')
    result = run_commands(venv_op(plan, facts), {f"{home}/{PYENV_PYTHON}": broken})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (f"SAF: creating the venv failed on alpha; the node stays on its "
                                              f"current venv ({OLD})")
    assert not (root / NAME).exists() and not Path(f"{root / NAME}.requirements.txt").exists()
    assert os.readlink(root / "current") == OLD and (root / OLD).is_dir()


def test_a_first_venv_that_cannot_be_built_says_the_node_has_none_yet(plan, tmp_path):
    home = tmp_path / "home"
    broken = executable(tmp_path / "python", "exit 1")
    facts = fresh_mac(**{"server.Home": str(home)})
    result = run_commands(venv_op(plan, facts), {f"{home}/{PYENV_PYTHON}": broken})
    assert result.stderr.splitlines()[-1] == ("SAF: creating the venv failed on alpha; the node stays on its "
                                              "current venv (none yet)")


def test_a_failed_repair_keeps_the_venv_and_says_so(plan, tmp_path):
    home = tmp_path / "home"
    venv = home / "saf" / "venv" / NAME
    # the venv's pip finds no wheel for the drifted pin (what pip prints, then its exit status)
    executable(venv / "bin" / "python",
               'echo "ERROR: No matching distribution found for mlx==0.29.1"; exit 1')
    drifted = {"ray": "2.49.1", "mlx": "0.28.0", "numpy": "2.0.2"}
    facts = converged_mac(home=str(home), **{f"python.VenvDistributions:{venv}": drifted})
    result = run_commands(venv_op(plan, facts))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == ("SAF: pip could not install mlx==0.29.1 on alpha; the venv keeps "
                                              "its drifted packages")
    assert (venv / "bin" / "python").exists()  # repaired in place: a failure does not remove it
    assert not Path(f"{venv}.requirements.txt").exists()


# --- a whole build, run for real: stand-in wheels for ray, mlx and numpy in the wheelhouse ----


def wheelhouse_for(tmp_path: Path, python: str, name: str) -> Path:
    """A control-side wheelhouse already holding the stand-in wheels of ``name`` for the Mac fixtures' platform."""
    wheelhouse = tmp_path / "wheelhouse"
    wheels = wheel_dir(wheelhouse, platform_key("Darwin", "arm64", "15.1", python), name)
    stand_in_stack(wheels)
    (wheels / ".complete").write_text("")
    return wheelhouse


def build_for_real(plan, tmp_path, python: str):
    """Plan the venv of ``python`` beside a current OLD venv, then run it here: (result, home, name)."""
    home = tmp_path / "home"
    root = home / "saf" / "venv"
    (root / OLD).mkdir(parents=True)
    os.symlink(OLD, root / "current")
    name, _ = venv_for(python=python)
    (root / name).mkdir()
    (root / name / "left-by-an-interrupted-build").write_text("")
    facts = converged_mac(home=str(home), **{"python.SafVenvs:*": venv_listing({OLD: True}, current=OLD)})
    settings = {"python_version": python, "wheelhouse": str(wheelhouse_for(tmp_path, python, name))}
    venv = plan({"alpha": facts}, cluster={**ONE_MAC, "settings": settings})["alpha"].op(f"Venv {name}")
    pyenv_python = f"{home}/.pyenv/versions/{python}/bin/python"
    return run_commands(venv, {pyenv_python: sys.executable}), home, name


def test_a_new_venv_is_built_offline_proven_marked_and_switched_to(plan, tmp_path):
    this_python = platform.python_version()
    result, home, name = build_for_real(plan, tmp_path, this_python)
    root = home / "saf" / "venv"
    assert result.returncode == 0, result.stderr
    assert f"python {this_python} ray 2.49.1 mlx 0.29.1" in result.stdout  # the proof's line
    assert os.readlink(root / "current") == name and os.readlink(root / "previous") == OLD
    assert not (root / name / "left-by-an-interrupted-build").exists()  # built afresh
    assert (root / name / ".saf-complete").read_text().split() == ["ray[default]==2.49.1", "mlx==0.29.1",
                                                                  "numpy==2.0.2"]
    assert not (home / ".saf" / "wheels" / name).exists()
    assert not Path(f"{root / name}.requirements.txt").exists() and not Path(f"{root / name}.pip.log").exists()


def test_a_new_venv_that_fails_its_proof_is_removed_and_the_node_stays_on_its_venv(plan, tmp_path):
    result, home, name = build_for_real(plan, tmp_path, "3.9.23")  # the pin; this machine's Python is another
    root = home / "saf" / "venv"
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"SAF: the new venv has python {platform.python_version()} (pinned 3.9.23)")
    assert not (root / name).exists() and not (home / ".saf" / "wheels" / name).exists()
    assert os.readlink(root / "current") == OLD


def test_a_repair_that_fails_its_proof_keeps_the_venv(plan, tmp_path):
    home = tmp_path / "home"
    venv = home / "saf" / "venv" / NAME
    # the venv's Python: pip succeeds, the proof finds the drifted version still there
    executable(venv / "bin" / "python",
               'case "$1" in -m) exit 0 ;; esac; echo "SAF: the new venv has mlx 0.28.0 (pinned 0.29.1)" >&2; exit 1')
    drifted = {"ray": "2.49.1", "mlx": "0.28.0", "numpy": "2.0.2"}
    facts = converged_mac(home=str(home), **{f"python.VenvDistributions:{venv}": drifted})
    result = run_commands(venv_op(plan, facts))
    assert result.returncode == 1 and "mlx 0.28.0 (pinned 0.29.1)" in result.stderr
    assert (venv / "bin" / "python").exists() and not (home / ".saf" / "wheels" / NAME).exists()
