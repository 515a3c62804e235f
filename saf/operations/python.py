"""Operations for the node's Python: the exact interpreter via pyenv, and the pinned venv.

Both read facts and yield commands only when something differs, so a converged node runs nothing.
A venv is built beside the current one, proven, and only then made ``current``: a failed build
removes what it made and leaves the node on its old venv.
"""

from __future__ import annotations

import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation

from saf.facts.python import (
    COMPLETE_MARKER,
    REQUIRED_MODULES,
    PythonInterpreter,
    SafVenvs,
    VenvDistributions,
)
from saf.venv_spec import VenvSpec

BUILD_DATE_EPOCH = 315532800  # 1980-01-01, the reproducible-builds convention (as in wheels)


def _q(value: str) -> str:
    return shlex.quote(value)


def _module_check(python: str, version: str) -> str:
    """A command that fails, naming the missing modules, when a built Python is incomplete."""
    script = (
        "import importlib, sys\n"
        "missing = []\n"
        f"for name in {REQUIRED_MODULES!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        missing.append(name)\n"
        "if missing:\n"
        f"    sys.exit('SAF: Python {version} on {host.name} was built without ' + ', '.join(missing) + "
        "': install the build dependencies (see README), then re-run to rebuild it')\n"
    )
    return f"{_q(python)} -c {_q(script)}"


@operation()
def pyenv_python(
    version: str,
    pyenv: str,
    pyenv_root: str,
    source_tarball: str | None = None,
    path_prefix: str = "",
):
    """
    Build CPython ``version`` with pyenv unless a complete one is there, then prove it.

    + version: exact x.y.z
    + pyenv: the pyenv executable
    + pyenv_root: PYENV_ROOT (absolute)
    + source_tarball: control-side ``Python-X.Y.Z.tar.gz`` pushed to pyenv's cache (no download)
    + path_prefix: directories put before PATH for the build (Homebrew's on macOS)
    """
    python = f"{pyenv_root}/versions/{version}/bin/python"
    found = host.get_fact(PythonInterpreter, python=python)
    if found and found["version"] == version and not found["missing"]:
        host.noop(f"Python {version} is built and complete")
        return

    cache = f"{pyenv_root}/cache"
    env = [f"PYENV_ROOT={_q(pyenv_root)}", f"PYTHON_BUILD_CACHE_PATH={_q(cache)}",
           # a fixed build date: every node's `python -VV` is then identical, not just its version
           f"SOURCE_DATE_EPOCH={BUILD_DATE_EPOCH}"]
    if path_prefix:
        env.append(f'PATH={_q(path_prefix)}:"$PATH"')
    if source_tarball:
        yield f"mkdir -p {_q(cache)}"
        yield FileUploadCommand(source_tarball, f"{cache}/Python-{version}.tar.gz")
        env.append("_PYTHON_BUILD_FORCE_SKIP_XZ=1")  # take the .tar.gz we pushed, not a .tar.xz
    force = "--force" if found else "--skip-existing"  # a broken build is rebuilt
    yield StringCommand(f"env {' '.join(env)} {_q(pyenv)} install {force} {version}")
    yield _module_check(python, version)


def _distribution_name(requirement: str) -> str:
    name = requirement.split("==")[0].split("[")[0]
    return "-".join(part for part in name.replace("_", "-").replace(".", "-").lower().split("-") if part)


def drifted(requirements: tuple[str, ...], installed: dict | None) -> list[str]:
    """The pins whose installed version differs (or that are missing) in a venv."""
    if installed is None:
        return list(requirements)
    return [
        req for req in requirements
        if installed.get(_distribution_name(req)) != req.split("==")[1]
    ]


_PROVE = """\
import importlib.metadata as md, platform, sys
import ray, mlx.core
want = dict(arg.split("=", 1) for arg in sys.argv[1:])
have = {"python": platform.python_version(), "ray": ray.__version__, "mlx": md.version("mlx")}
print("python %(python)s ray %(ray)s mlx %(mlx)s" % have)
wrong = [f"{k} {have[k]} (pinned {v})" for k, v in want.items() if have[k] != v]
sys.exit("SAF: the new venv has " + ", ".join(wrong) if wrong else 0)
"""

_SWITCH = """\
import os, re, shutil, sys
root, name = sys.argv[1], sys.argv[2]
def target(at):
    path = os.path.join(root, at)
    return os.readlink(path).rstrip("/").rsplit("/", 1)[-1] if os.path.islink(path) else None
def link(to, at):
    tmp = os.path.join(root, "." + at + ".tmp")
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(to, tmp)
    os.replace(tmp, os.path.join(root, at))  # atomic: `current` never points nowhere
old = target("current")
if old != name:
    if old:
        link(old, "previous")
    link(name, "current")
keep = {name, target("previous")}
ours = re.compile(r"^py[0-9][^/]*-ray[^/]*-mlx[^/]*-[^/]+$")  # what saf.venv_spec.venv_name makes; nothing else
for entry in os.listdir(root):  # older venvs go: only current and previous (for rollback) stay
    path = os.path.join(root, entry)
    if entry not in keep and ours.match(entry) and os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
"""


def _pins(spec: VenvSpec, extra: tuple[str, ...] = ()) -> list[str]:
    versions = {_distribution_name(req): req.split("==")[1] for req in spec.requirements}
    return [f"python={spec.python_version}", f"ray={versions['ray']}", f"mlx={versions['mlx']}", *extra]


def _install_script(venv: str, wheels: str | None, requirements_file: str, python: str | None, what: str) -> str:
    """Shell that creates (if python is given) and fills a venv; on failure removes what it made."""
    index = f"--no-index --find-links {_q(wheels)}" if wheels else ""
    cleanup = f"rm -rf {_q(venv)}; " if python else ""
    cleanup += f"rm -rf {_q(wheels)}; " if wheels else ""
    cleanup += f"rm -f {_q(requirements_file)}; "
    log = f"{venv}.pip.log"
    lines = [
        f"fail() {{ {cleanup}echo \"SAF: $1 on {host.name}; {what}\" >&2; exit 1; }}",
    ]
    if python:
        lines += [f"rm -rf {_q(venv)}", f"{_q(python)} -m venv {_q(venv)} || fail 'creating the venv failed'"]
    lines += [
        f"PIP_CONFIG_FILE=/dev/null {_q(venv)}/bin/python -m pip install --disable-pip-version-check -q {index}"
        f" -r {_q(requirements_file)}"
        f" >{_q(log)} 2>&1 || {{ cat {_q(log)} >&2; "
        f"pkg=$(sed -n 's/.*matching distribution found for \\([^ ]*\\).*/\\1/p; s/.*Failed to build \\([^ ]*\\).*/\\1/p' {_q(log)} | head -n 1); "
        f"rm -f {_q(log)}; fail \"pip could not install ${{pkg:-the pinned packages}}\"; }}",
        f"rm -f {_q(log)}",
    ]
    return "\n".join(lines)


def venv_work(spec: VenvSpec) -> str:
    """What the node's venv needs: ``build``, ``repair`` (drifted pins), ``switch`` or ``""``."""
    state = host.get_fact(SafVenvs, root=spec.root)
    if state["venvs"].get(spec.name) is not True:
        return "build"
    if drifted(spec.requirements, host.get_fact(VenvDistributions, venv=spec.path)):
        return "repair"
    leftovers = set(state["venvs"]) - {spec.name, state["current"], state["previous"]}
    if state["current"] != spec.name or leftovers:
        return "switch"
    return ""


def venv_changes_current(spec: VenvSpec) -> bool:
    """Whether this run changes what ``current`` runs: a new venv, a repair, or a switch."""
    work = venv_work(spec)
    return work in ("build", "repair") or host.get_fact(SafVenvs, root=spec.root)["current"] != spec.name


@operation()
def pinned_venv(spec: VenvSpec, python: str, wheels: list[str] | None, wheel_dir: str):
    """
    Make ``spec`` the node's current venv: build it beside the current one if needed, prove it,
    switch ``current`` atomically (the old one becomes ``previous``), and repair drifted pins.

    + spec: the venv (absolute root) and its exact requirements
    + python: the interpreter that creates it (pyenv's exact version)
    + wheels: control-side wheel files to push, or None to install from the package index
    + wheel_dir: where the wheels go on the node while installing (removed afterwards)
    """
    work = venv_work(spec)
    if not work:
        host.noop(f"venv {spec.name} is current and matches its pins")
        return

    if work in ("build", "repair"):
        requirements_file = f"{spec.path}.requirements.txt"
        yield f"mkdir -p {_q(wheel_dir)} {_q(spec.root)}"
        for wheel in wheels or ():
            yield FileUploadCommand(wheel, f"{wheel_dir}/{Path(wheel).name}")
        yield FileUploadCommand(StringIO("\n".join(spec.requirements) + "\n"), requirements_file)
        current = host.get_fact(SafVenvs, root=spec.root)["current"]
        if work == "build":
            what = f"the node stays on its current venv ({current or 'none yet'})"
        else:
            what = "the venv keeps its drifted packages"
        creator = python if work == "build" else None
        yield _install_script(spec.path, wheel_dir if wheels is not None else None, requirements_file, creator, what)
        on_fail = f"rm -rf {_q(spec.path)}; " if work == "build" else ""
        yield (f"{_q(spec.path)}/bin/python -c {_q(_PROVE)} {' '.join(_pins(spec))} "
               f"|| {{ {on_fail}rm -rf {_q(wheel_dir)}; exit 1; }}")
        if work == "build":
            reqs = " ".join(_q(r) for r in spec.requirements)
            yield f"printf '%s\\n' {reqs} > {_q(spec.path)}/{COMPLETE_MARKER}"
        yield f"rm -rf {_q(wheel_dir)} {_q(requirements_file)}"
    yield f"{_q(spec.path)}/bin/python -c {_q(_SWITCH)} {_q(spec.root)} {_q(spec.name)}"


@operation()
def rolled_back_venv(root: str):
    """
    Swap ``current`` and ``previous`` under a venv root (atomically), if there is a previous venv.

    + root: the venv root (absolute)
    """
    state = host.get_fact(SafVenvs, root=root)
    previous = state["previous"]
    if not previous or state["venvs"].get(previous) is not True:
        host.noop(f"no previous venv under {root}: nothing to roll back to")
        return
    yield f"{_q(root)}/{_q(previous)}/bin/python -c {_q(_SWITCH)} {_q(root)} {_q(previous)}"
