"""The node programs in saf/node_scripts/, run here for real, in the form the node runs them
(``python -c <text> ARG...``, ``sh -c <text> NAME ARG...``): the venv proof against stand-in
``ray`` and ``mlx`` packages, and pip_install.sh with a real venv and a real (tiny) wheel.
The venv switch has its own file, test_venv_switch.py."""

from __future__ import annotations

import ast
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from saf.node_scripts import DIRECTORY, node_script
from tests.wheels import write_wheel

PYTHON_SCRIPTS = sorted(p.name for p in DIRECTORY.glob("*.py") if p.name != "__init__.py")
SHELL_SCRIPTS = sorted(p.name for p in DIRECTORY.glob("*.sh"))
SHELLS = [shell for shell in ("dash", "bash") if shutil.which(shell)]  # Debian's sh, and macOS's (bash as sh)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without pip settings (this machine sets some), plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, **extra}


def test_there_are_node_programs_to_check():
    assert {"python_modules.py", "venv_prove.py", "venv_switch.py"} <= set(PYTHON_SCRIPTS) and "pip_install.sh" in SHELL_SCRIPTS


@pytest.mark.parametrize("name", PYTHON_SCRIPTS)
def test_python_programs_parse_as_python_3_9(name):
    """The nodes' oldest interpreter is the pinned Python (3.9 by default)."""
    ast.parse(node_script(name), filename=name, feature_version=(3, 9))


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("name", SHELL_SCRIPTS)
def test_shell_programs_parse_as_sh(shell, name):
    result = subprocess.run([shell, "-n", "-c", node_script(name)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- venv_prove.py ----------------------------------------------------------------------------


@pytest.fixture
def stand_ins(tmp_path) -> Path:
    """A directory holding importable ``ray`` 2.49.1 and ``mlx`` 0.29.1 (with its metadata)."""
    site = tmp_path / "site"
    (site / "ray").mkdir(parents=True)
    (site / "ray" / "__init__.py").write_text('__version__ = "2.49.1"\n')
    (site / "mlx").mkdir()
    (site / "mlx" / "__init__.py").write_text("")
    (site / "mlx" / "core.py").write_text("")
    (site / "mlx-0.29.1.dist-info").mkdir()
    (site / "mlx-0.29.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: mlx\nVersion: 0.29.1\n")
    return site


def prove(site: Path, *pins: str) -> subprocess.CompletedProcess:
    # -S: only the stand-ins, not this venv's site-packages (which has the real mlx with the serve extra)
    return subprocess.run([sys.executable, "-S", "-c", node_script("venv_prove.py"), *pins], check=False, capture_output=True,
                          text=True, env=clean_env(PYTHONPATH=str(site)))


def test_the_proof_passes_a_venv_that_has_its_pins(stand_ins):
    result = prove(stand_ins, f"python={platform.python_version()}", "ray=2.49.1", "mlx=0.29.1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"python {platform.python_version()} ray 2.49.1 mlx 0.29.1\n"


def test_the_proof_fails_naming_every_version_that_differs_from_its_pin(stand_ins):
    result = prove(stand_ins, "python=3.9.23", "ray=2.49.1", "mlx=0.29.3")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"SAF: the new venv has python {platform.python_version()} (pinned 3.9.23), "
                                     "mlx 0.29.1 (pinned 0.29.3)")


def test_the_proof_fails_when_mlx_does_not_import(stand_ins):
    shutil.rmtree(stand_ins / "mlx")
    result = prove(stand_ins, "ray=2.49.1", "mlx=0.29.1")
    assert result.returncode != 0 and "No module named 'mlx'" in result.stderr


# --- pip_install.sh ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A real venv with pip (made once: it takes seconds)."""
    path = tmp_path_factory.mktemp("venvs") / "py3.11.2-ray2.49.1-mlx0.29.1-aaaaaaaa"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, env=clean_env())
    return path


def pip_install(shell: str, venv: Path, requirements: str, tmp_path: Path, *pip_options: str,
                **env: str) -> subprocess.CompletedProcess:
    requirements_file = tmp_path / "requirements.txt"
    requirements_file.write_text(requirements)
    return subprocess.run(
        [shell, "-c", node_script("pip_install.sh"), "pip_install.sh", "alpha",
         "the node stays on its current venv (old)", str(venv), str(requirements_file), *pip_options],
        check=False, capture_output=True, text=True, env=clean_env(**env), timeout=120)


def installed_version(venv: Path, module: str) -> str | None:
    result = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {module}; print({module}.VERSION)"],
                            check=False, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.mark.parametrize("shell", SHELLS)
def test_pip_install_installs_the_pins_from_the_pushed_wheels_and_removes_its_log(shell, venv, tmp_path):
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "saf-probe", "1.0")
    result = pip_install(shell, venv, "saf-probe==1.0\n", tmp_path, "--no-index", "--find-links", str(wheels))
    assert result.returncode == 0, result.stderr
    assert installed_version(venv, "saf_probe") == "1.0"
    assert not Path(f"{venv}.pip.log").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_pip_install_failure_shows_pips_output_then_names_the_package_node_and_consequence(shell, venv, tmp_path):
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "saf-probe", "1.0")
    result = pip_install(shell, venv, "saf-probe==2.0\n", tmp_path, "--no-index", "--find-links", str(wheels))
    assert result.returncode == 1
    pip_output, _, last = result.stderr.rstrip("\n").rpartition("\n")
    assert "No matching distribution found for saf-probe==2.0" in pip_output
    assert last == "SAF: pip could not install saf-probe==2.0 on alpha; the node stays on its current venv (old)"
    assert not Path(f"{venv}.pip.log").exists()


PIP_WHEEL = Path("/root/.pyenv/versions/3.13.0/lib/python3.13/ensurepip/_bundled/pip-24.2-py3-none-any.whl")


@pytest.mark.skipif(not PIP_WHEEL.is_file(), reason="needs a pip 24.2 wheel (pyenv's Python 3.13 bundles one)")
def test_pip_install_installs_a_pinned_pip_first_then_the_rest_with_it(tmp_path):
    """The serving venv pins pip: it is installed alone before the others (an old pip takes many minutes
    to resolve Ray Serve's dependencies), from the same pushed wheels."""
    fresh = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, env=clean_env())
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "saf-probe", "1.0")
    shutil.copy(PIP_WHEEL, wheels)
    result = pip_install("sh", fresh, "pip==24.2\nsaf-probe==1.0\n", tmp_path, "--no-index", "--find-links", str(wheels))
    assert result.returncode == 0, result.stderr
    pip = subprocess.run([str(fresh / "bin" / "python"), "-m", "pip", "--version"], capture_output=True, text=True)
    assert pip.stdout.startswith("pip 24.2 ")
    assert installed_version(fresh, "saf_probe") == "1.0"


def test_pip_install_ignores_the_node_users_pip_configuration(venv, tmp_path):
    """A pip.conf that points elsewhere (here: at a wheel of another version) changes nothing."""
    elsewhere = tmp_path / "elsewhere"
    write_wheel(elsewhere, "saf-other", "9.0")
    config = tmp_path / "home" / ".config" / "pip" / "pip.conf"
    config.parent.mkdir(parents=True)
    config.write_text(f"[global]\nfind-links = {elsewhere}\n")
    home = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config")}
    result = pip_install("sh", venv, "saf-other==9.0\n", tmp_path, "--no-index", **home)
    assert result.returncode == 1
    assert installed_version(venv, "saf_other") is None


# --- python_modules.py ------------------------------------------------------------------------


def check_modules(*modules: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", node_script("python_modules.py"), "3.9.23", "alpha", *modules],
                          check=False, capture_output=True, text=True, env=clean_env(**env))


def test_a_complete_python_passes_the_module_check():
    from saf.facts.python import REQUIRED_MODULES

    result = check_modules(*REQUIRED_MODULES)
    assert result.returncode == 0, result.stderr


def test_the_module_check_names_every_module_that_does_not_import_and_the_fix(tmp_path):
    for module in ("lzma", "readline"):  # stand-ins that fail as a Python built without their libraries
        (tmp_path / f"{module}.py").write_text("raise ImportError('built without its library')\n")
    result = check_modules("ssl", "lzma", "bz2", "readline", PYTHONPATH=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == ("SAF: Python 3.9.23 on alpha was built without lzma, readline: install the "
                                     "build dependencies (see README), then re-run to rebuild it")
