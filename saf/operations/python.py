"""Operations for the node's Python: the exact interpreter via pyenv, and the pinned venv.

Both read facts and yield commands only when something differs, so a converged node runs nothing.
A venv is built beside the current one, proven, and only then made ``current``: a failed build
removes what it made and leaves the node on its old venv.
"""

from __future__ import annotations

from enum import Enum
from io import StringIO
from pathlib import Path
from shlex import quote  # a value as one word of a shell command line

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation

from saf.facts.python import (
    COMPLETE_MARKER,
    REQUIRED_MODULES,
    PythonInterpreter,
    SafVenvs,
    VenvDistributions,
)
from saf.facts.roots import SafRoots
from saf.node_scripts import node_script
from saf.venv_spec import ROOT_MARKER, VENV_NAME_PATTERN, VENV_SIDE_FILES, VenvSpec

# node programs (saf/node_scripts/), sent inline with the commands that run them
_MODULES = node_script("python_modules.py")
_PROVE = node_script("venv_prove.py")
_SWITCH = node_script("venv_switch.py")
_PIP_INSTALL = node_script("pip_install.sh")
_TEARDOWN = node_script("venv_teardown.sh")

BUILD_DATE_EPOCH = 315532800  # 1980-01-01, the reproducible-builds convention (as in wheels)


def _module_check(python: str, version: str) -> str:
    """A command that fails, naming the missing modules, when a built Python is incomplete."""
    return f"{quote(python)} -c {quote(_MODULES)} {quote(version)} {quote(host.name)} {' '.join(REQUIRED_MODULES)}"


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
    yield from _build_python(found, version, pyenv, pyenv_root, source_tarball, path_prefix)


def _build_python(
    found: dict | None, version: str, pyenv: str, pyenv_root: str, source_tarball: str | None, path_prefix: str
):
    """Build with pyenv (again, with ``--force``, over a broken build in ``found``), then prove it."""
    cache = f"{pyenv_root}/cache"
    env = [
        f"PYENV_ROOT={quote(pyenv_root)}",
        f"PYTHON_BUILD_CACHE_PATH={quote(cache)}",
        # a fixed build date: every node's `python -VV` is then identical, not just its version
        f"SOURCE_DATE_EPOCH={BUILD_DATE_EPOCH}",
    ]
    if path_prefix:
        env.append(f'PATH={quote(path_prefix)}:"$PATH"')
    if source_tarball:
        yield f"mkdir -p {quote(cache)}"
        yield FileUploadCommand(source_tarball, f"{cache}/Python-{version}.tar.gz")
        env.append("_PYTHON_BUILD_FORCE_SKIP_XZ=1")  # take the .tar.gz we pushed, not a .tar.xz
    force = "--force" if found else "--skip-existing"  # a broken build is rebuilt
    # The build's output goes to a log on the node, not to the SSH session: a process the build
    # leaves behind (compileall's pool workers were seen on the lab, after the build had finished)
    # would otherwise hold the session open, and the deploy would wait for it forever. On failure
    # the log's end is printed, so the run still shows why.
    log = f"{pyenv_root}/saf-build-{version}.log"
    yield StringCommand(
        f"env {' '.join(env)} {quote(pyenv)} install {force} {quote(version)} </dev/null >{quote(log)} 2>&1 "
        f"|| {{ tail -n 40 {quote(log)}; exit 1; }}"
    )
    yield _module_check(f"{pyenv_root}/versions/{version}/bin/python", version)


def _distribution_name(requirement: str) -> str:
    name = requirement.split("==")[0].split("[")[0]
    return "-".join(part for part in name.replace("_", "-").replace(".", "-").lower().split("-") if part)


def drifted(requirements: tuple[str, ...], installed: dict | None) -> list[str]:
    """The pins whose installed version differs (or that are missing) in a venv."""
    if installed is None:
        return list(requirements)
    return [req for req in requirements if installed.get(_distribution_name(req)) != req.split("==")[1]]


def _pins(spec: VenvSpec, extra: tuple[str, ...] = ()) -> list[str]:
    versions = {_distribution_name(req): req.split("==")[1] for req in spec.requirements}
    return [f"python={spec.python_version}", f"ray={versions['ray']}", f"mlx={versions['mlx']}", *extra]


def _create_venv(venv: str, python: str, cleanup: str, consequence: str) -> str:
    """Shell that creates an empty venv with ``python`` (afresh); on failure runs ``cleanup``."""
    message = f"SAF: creating the venv failed on {host.name}; {consequence}"
    return (
        f"rm -rf {quote(venv)}; {quote(python)} -m venv {quote(venv)} "
        f"|| {{ {cleanup}echo {quote(message)} >&2; exit 1; }}"
    )


def _pip_install(venv: str, requirements_file: str, wheels: str | None, cleanup: str, consequence: str) -> str:
    """Shell that runs saf/node_scripts/pip_install.sh for the venv; on failure runs ``cleanup``."""
    index = ["--no-index", "--find-links", wheels] if wheels else []
    arguments = " ".join(quote(a) for a in (host.name, consequence, venv, requirements_file, *index))
    return f"sh -c {quote(_PIP_INSTALL)} pip_install.sh {arguments} || {{ {cleanup}exit 1; }}"


class VenvWork(str, Enum):
    """What a node's venv needs. ``current`` changes (and Ray must restart) only for the first three."""

    BUILD = "build"  # the pinned venv is missing or incomplete: build it beside, prove it, switch
    REPAIR = "repair"  # it is there but pins drifted: reinstall them in place, prove it
    SWITCH = "switch"  # it is there and sound, but not `current`: switch to it
    PRUNE = "prune"  # it is `current` already; only leftover venvs go
    NOTHING = ""

    @property
    def changes_current(self) -> bool:
        return self in (VenvWork.BUILD, VenvWork.REPAIR, VenvWork.SWITCH)


def venv_work(spec: VenvSpec) -> VenvWork:
    """What the node's venv needs, from its facts (see :class:`VenvWork`)."""
    state = host.get_fact(SafVenvs, root=spec.root)
    if state["venvs"].get(spec.name) is not True:
        return VenvWork.BUILD
    if drifted(spec.requirements, host.get_fact(VenvDistributions, venv=spec.path)):
        return VenvWork.REPAIR
    if state["current"] != spec.name:
        return VenvWork.SWITCH
    if set(state["venvs"]) - {spec.name, state["previous"]}:
        return VenvWork.PRUNE
    return VenvWork.NOTHING


def venv_changes_current(spec: VenvSpec) -> bool:
    """Whether this run changes what ``current`` runs (a new venv, a repair, a switch): the
    reason Ray restarts. Pruning leftover venvs alone does not change it."""
    return venv_work(spec).changes_current


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
    if work is VenvWork.NOTHING:
        host.noop(f"venv {spec.name} is current and matches its pins")
        return

    if work in (VenvWork.BUILD, VenvWork.REPAIR):
        yield from _install(spec, work, python, wheels, wheel_dir)
    # current, previous and pruning in one program (it changes nothing that is already right)
    yield f"{quote(spec.path)}/bin/python -c {quote(_SWITCH)} {quote(spec.root)} {quote(spec.name)}"


def _install(spec: VenvSpec, work: VenvWork, python: str, wheels: list[str] | None, wheel_dir: str):
    """Build (or repair) the venv beside ``current`` and prove it; a failure removes what it made."""
    build = work is VenvWork.BUILD
    requirements_file = f"{spec.path}.requirements.txt"
    # the marker says the root is SAF's (preflight, teardown): written whenever SAF builds there
    yield f"mkdir -p {quote(wheel_dir)} {quote(spec.root)} && touch {quote(f'{spec.root}/{ROOT_MARKER}')}"
    for wheel in wheels or ():
        yield FileUploadCommand(wheel, f"{wheel_dir}/{Path(wheel).name}")
    yield FileUploadCommand(StringIO("\n".join(spec.requirements) + "\n"), requirements_file)
    if build:
        current = host.get_fact(SafVenvs, root=spec.root)["current"]
        consequence = f"the node stays on its current venv ({current or 'none yet'})"
    else:
        consequence = "the venv keeps its drifted packages"
    pushed = wheel_dir if wheels is not None else None
    cleanup = (f"rm -rf {quote(spec.path)}; " if build else "") + (f"rm -rf {quote(pushed)}; " if pushed else "")
    cleanup += f"rm -f {quote(requirements_file)}; "
    if build:
        yield _create_venv(spec.path, python, cleanup, consequence)
    yield _pip_install(spec.path, requirements_file, pushed, cleanup, consequence)
    on_fail = f"rm -rf {quote(spec.path)}; " if build else ""
    yield (
        f"{quote(spec.path)}/bin/python -c {quote(_PROVE)} {' '.join(quote(pin) for pin in _pins(spec))} "
        f"|| {{ {on_fail}rm -rf {quote(wheel_dir)}; exit 1; }}"
    )
    if build:
        reqs = " ".join(quote(r) for r in spec.requirements)
        yield f"printf '%s\\n' {reqs} > {quote(spec.path)}/{COMPLETE_MARKER}"
    yield f"rm -rf {quote(wheel_dir)} {quote(requirements_file)}"


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
    yield f"{quote(root)}/{quote(previous)}/bin/python -c {quote(_SWITCH)} {quote(root)} {quote(previous)}"


@operation()
def removed_venvs(root: str, pyenv_root: str):
    """
    Remove SAF's venvs, the files beside them and the ``current``/``previous`` links under a venv
    root, then the root itself only if nothing else is left in it (saf/node_scripts/venv_teardown.sh):
    a folder or file of the user's in it stays, and so does the root.

    + root: the venv root (absolute)
    + pyenv_root: the pyenv root (absolute; the fact that judges the root reads both)
    """
    venvs = host.get_fact(SafVenvs, root=root)
    found = host.get_fact(SafRoots, venv_root=root, pyenv_root=pyenv_root)["venv_root"]
    if not (venvs["venvs"] or venvs["current"] or venvs["previous"]) and found["state"] not in ("empty", "ours"):
        host.noop(f"no venv of SAF's under {root}")
        return
    arguments = " ".join(quote(a) for a in (root, VENV_NAME_PATTERN, ROOT_MARKER, " ".join(VENV_SIDE_FILES)))
    yield f"sh -c {quote(_TEARDOWN)} venv_teardown.sh {arguments}"
