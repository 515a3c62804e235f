"""Exact Python and the pinned venv, planned against fixture facts (macOS and Debian)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.planning import Raw
from tests.facts import converged_mac, fresh_debian, fresh_mac, installed, venv_for

HOME = "/Users/arthurdell"
ONE_MAC = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172"}]}


def with_settings(**settings):
    return {**ONE_MAC, "settings": settings}


def test_fresh_mac_gets_homebrew_pyenv_python_and_the_pinned_venv(plan):
    alpha = plan({"alpha": fresh_mac()}, cluster=ONE_MAC)["alpha"]
    name, reqs = venv_for()
    assert alpha.op("Install Homebrew").commands[0].startswith("NONINTERACTIVE=1 /bin/bash -c")
    assert alpha.op("Homebrew)").commands == [
        "/opt/homebrew/bin/brew install pyenv openssl@3 readline sqlite xz zlib tcl-tk"]
    build = alpha.op("Build Python 3.9.23").commands
    assert build[0] == (f"env PYENV_ROOT={HOME}/.pyenv PYTHON_BUILD_CACHE_PATH={HOME}/.pyenv/cache "
                        'SOURCE_DATE_EPOCH=315532800 PATH=/opt/homebrew/bin:"$PATH" '
                        "/opt/homebrew/bin/pyenv install --skip-existing 3.9.23 "
                        f"</dev/null >{HOME}/.pyenv/saf-build-3.9.23.log 2>&1 "  # nothing left to hold the session
                        f"|| {{ tail -n 40 {HOME}/.pyenv/saf-build-3.9.23.log; exit 1; }}")
    assert build[1].startswith(f"{HOME}/.pyenv/versions/3.9.23/bin/python -c ")
    assert all(module in build[1] for module in ("ssl", "sqlite3", "lzma", "bz2", "ctypes", "readline"))
    venv = alpha.op(f"Venv {name}")
    path = f"{HOME}/saf/venv/{name}"
    assert venv.uploads[f"{path}.requirements.txt"].decode().split() == list(reqs)
    assert reqs == ("ray[default]==2.49.1", "mlx==0.29.1", "numpy==2.0.2")
    script = next(c for c in venv.commands if "-m venv" in c)
    assert f"{HOME}/.pyenv/versions/3.9.23/bin/python -m venv {path}" in script
    assert "--no-index" not in script  # no wheelhouse in this cluster: the index
    assert venv.commands[-1].startswith(f"{path}/bin/python -c ")
    assert venv.commands[-1].endswith(f" {HOME}/saf/venv {name}")  # the switch comes last


def test_converged_mac_runs_nothing(plan):
    alpha = plan({"alpha": converged_mac()}, cluster=ONE_MAC)["alpha"]
    assert alpha.ops, "the tasks were planned"
    assert alpha.changing_ops == []


def test_changed_pin_builds_a_new_venv_beside_and_switches_after_proof(plan):
    old, _ = venv_for()
    new, new_reqs = venv_for(mlx="0.29.3")
    alpha = plan({"alpha": converged_mac(**{"python.SafVenvs:*": {"venvs": {old: True}, "current": old, "previous": None}})},
                 cluster=with_settings(mlx_version="0.29.3"))["alpha"]
    assert [op.name for op in alpha.changing_ops] == [f"tasks/venv.py | Venv {new}",
                                                      "tasks/ray_service.py | Ray head (launchd)"]
    assert alpha.op("Ray head (launchd)").commands == ["launchctl kickstart -k system/org.saf.ray-head"]
    commands = alpha.changing_ops[0].commands
    build = next(i for i, c in enumerate(commands) if "-m venv" in c)
    prove = next(i for i, c in enumerate(commands) if "import ray, mlx.core" in c)
    switch = len(commands) - 1
    assert build < prove < switch
    assert "mlx=0.29.3" in commands[prove]
    assert f"rm -rf {HOME}/saf/venv/{old}" not in " ".join(commands)  # the old venv stays for rollback
    assert f"{HOME}/saf/venv/current" not in " ".join(commands[:switch])  # only the switch touches it


def test_drifted_package_is_repaired_in_place(plan):
    name, reqs = venv_for()
    drifted = {**installed(reqs), "mlx": "0.28.0"}
    alpha = plan({"alpha": converged_mac(**{f"python.VenvDistributions:{HOME}/saf/venv/{name}": drifted})},
                 cluster=ONE_MAC)["alpha"]
    op, restart = alpha.changing_ops
    assert restart.commands == ["launchctl kickstart -k system/org.saf.ray-head"]
    install = next(c for c in op.commands if "pip install" in c)
    assert "-m venv" not in install  # repaired in place, not rebuilt
    assert any("mlx=0.29.1" in c for c in op.commands)


def test_broken_python_is_rebuilt_and_checked(plan):
    alpha = plan({"alpha": converged_mac(**{"python.PythonInterpreter:*": {"version": "3.9.23", "missing": ["ssl"]}})},
                 cluster=ONE_MAC)["alpha"]
    build = alpha.op("Build Python").commands
    assert "pyenv install --force 3.9.23" in build[0]
    assert "was built without" in build[1]


def test_source_cache_is_pushed_and_used(plan, tmp_path):
    (tmp_path / "Python-3.9.23.tar.gz").write_bytes(b"tarball")
    alpha = plan({"alpha": fresh_mac()}, cluster=with_settings(python_source_cache=str(tmp_path)))["alpha"]
    build = alpha.op("Build Python")
    assert build.uploads == {f"{HOME}/.pyenv/cache/Python-3.9.23.tar.gz": b"tarball"}
    assert "_PYTHON_BUILD_FORCE_SKIP_XZ=1" in build.commands[-2]


def test_missing_source_tarball_stops_the_node(plan, tmp_path):
    alpha = plan({"alpha": fresh_mac()}, cluster=with_settings(python_source_cache=str(tmp_path)))["alpha"]
    reason = alpha.op("Python source cache").commands[0]
    assert "Python-3.9.23.tar.gz does not exist" in reason


def test_wheelhouse_wheels_are_pushed_and_installed_offline(plan, tmp_path):
    name, _ = venv_for()
    wheels = tmp_path / "wh" / "cp3.9.23-macosx_15_0_arm64" / name
    wheels.mkdir(parents=True)
    (wheels / ".complete").write_text("done")
    for wheel in ("ray-2.49.1-cp39-cp39-macosx_12_0_arm64.whl", "mlx-0.29.1-cp39-cp39-macosx_15_0_arm64.whl"):
        (wheels / wheel).write_bytes(wheel.encode())
    venv = plan({"alpha": fresh_mac()}, cluster=with_settings(wheelhouse=str(tmp_path / "wh")))["alpha"].op("Venv")
    node_dir = f"{HOME}/.saf/wheels/{name}"
    assert venv.uploads[f"{node_dir}/ray-2.49.1-cp39-cp39-macosx_12_0_arm64.whl"] == b"ray-2.49.1-cp39-cp39-macosx_12_0_arm64.whl"
    assert f"--no-index --find-links {node_dir}" in next(c for c in venv.commands if "pip install" in c)


def test_debian_gets_build_deps_pyenv_from_git_and_mlx_cpu(plan):
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}],
               "settings": {"pyenv_git_url": "git://10.77.0.1/pyenv.git"}}
    alpha = plan({"alpha": fresh_debian()}, cluster=cluster)["alpha"]
    apt = alpha.op("build dependencies (apt)")
    assert apt.sudo and "libssl-dev" in apt.commands[-1]
    assert "git clone git://10.77.0.1/pyenv.git ." in alpha.op("Install pyenv").commands[-1]
    name, reqs = venv_for(extra="cpu")
    assert "mlx[cpu]==0.29.1" in alpha.op(f"Venv {name}").uploads[f"/home/saf/saf/venv/{name}.requirements.txt"].decode()


def test_debian_with_build_deps_installed_skips_apt(plan):
    from saf.build_deps import DEBIAN_BUILD_DEPS

    facts = fresh_debian(**{"deb.DebPackages": {p: {"1"} for p in DEBIAN_BUILD_DEPS}})
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}]}
    alpha = plan({"alpha": facts}, cluster=cluster)["alpha"]
    assert not any("apt" in op.name for op in alpha.ops)


def run_planned(op) -> subprocess.CompletedProcess:
    """Run a planned op's commands here, for real: uploads written, shell run by sh, stop at failure."""
    for command in op.commands:
        if command.startswith("upload "):
            dest = Path(command.removeprefix("upload "))
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(op.uploads[str(dest)])
            continue
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}  # this machine sets some
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=300)
        if result.returncode != 0:
            return result
    return result


def test_failed_venv_build_leaves_the_node_on_its_current_venv(plan, tmp_path):
    """A real run of the planned venv commands here: a pin that cannot be installed fails the
    build, which removes only what it made; `current` and the old venv are untouched."""
    home = tmp_path / "home"
    old, _ = venv_for()
    root = home / "saf" / "venv"
    (root / old).mkdir(parents=True)
    (root / old / ".saf-complete").write_text("old")
    os.symlink(old, root / "current")
    empty_wheelhouse = tmp_path / "wh" / "cp3.9.23-macosx_15_0_arm64"
    new, _ = venv_for(ray="2.49.2")
    (empty_wheelhouse / new).mkdir(parents=True)
    (empty_wheelhouse / new / ".complete").write_text("")  # a wheelhouse without the wheels: pip must fail
    facts = converged_mac(home=str(home), **{
        "python.SafVenvs:*": {"venvs": {old: True}, "current": old, "previous": None},
    })
    settings = with_settings(ray_version="2.49.2", wheelhouse=str(tmp_path / "wh"))
    venv = plan({"alpha": facts}, cluster=settings)["alpha"].op("Venv")
    # the node's pyenv Python stands in as this machine's interpreter
    venv.commands = [c.replace(f"{home}/.pyenv/versions/3.9.23/bin/python", sys.executable) for c in venv.commands]
    result = run_planned(venv)
    assert result.returncode != 0
    assert "pip could not install ray[default]==2.49.2 on alpha" in result.stderr
    assert "the node stays on its current venv" in result.stderr
    assert os.readlink(root / "current") == old
    assert (root / old / ".saf-complete").read_text() == "old"
    assert not (root / new).exists()
    assert not (home / ".saf" / "wheels" / new).exists()
