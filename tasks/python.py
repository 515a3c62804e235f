"""Exact Python on every node: pyenv, the build dependencies, CPython `python_version`, proven."""

from pyinfra import host, state
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import Directory, File
from pyinfra.facts.server import Home, Which
from pyinfra.operations import apt, git, server

from saf.build_deps import (
    BREW,
    BREW_ENV,
    BREW_PATH,
    DEBIAN_BUILD_DEPS,
    HOMEBREW_INSTALL,
    MAC_BUILD_DEPS,
)
from saf.node_os import is_macos
from saf.operations.brew import formulae
from saf.operations.python import pyenv_python
from saf.operations.stop import stop_host
from saf.paths import on_control, on_node
from saf.progress import long_step

version = host.data.python_version
pyenv_root = on_node(host.data.pyenv_root, host.get_fact(Home))

if is_macos(host):
    if not host.get_fact(File, path=BREW):
        server.shell(name="Install Homebrew", commands=[HOMEBREW_INSTALL])
    formulae(
        name="Install pyenv and Python's build dependencies (Homebrew)",
        packages=list(MAC_BUILD_DEPS),
        brew=BREW,
        _env=BREW_ENV,
    )
    pyenv, path_prefix = f"{BREW_PATH}/pyenv", BREW_PATH
else:
    if host.data.use_sudo and host.get_fact(Which, command="apt-get"):
        installed = host.get_fact(DebPackages)
        missing = [package for package in DEBIAN_BUILD_DEPS if package not in installed]
        if missing:
            apt.packages(name="Install Python's build dependencies (apt)", packages=missing, update=True, _sudo=True)
    if not host.get_fact(Directory, path=f"{pyenv_root}/.git"):  # pull=False: a clone there is left as it is
        git.repo(name="Install pyenv", src=host.data.pyenv_git_url, dest=pyenv_root, pull=False)
    pyenv, path_prefix = f"{pyenv_root}/bin/pyenv", ""

source_tarball = None
if host.data.python_source_cache:
    tarball = on_control(host.data.python_source_cache, state.cwd) / f"Python-{version}.tar.gz"
    if tarball.is_file():
        source_tarball = str(tarball)
    else:
        stop_host(
            name="Python source cache",
            reason=(
                f"python_source_cache is set but {tarball} does not exist: put the CPython source "
                f"tarball there (Python-{version}.tgz from python.org, renamed), or empty the setting "
                "to let nodes download it."
            ),
        )

built = pyenv_python(
    name=f"Build Python {version} (pyenv)",
    version=version,
    pyenv=pyenv,
    pyenv_root=pyenv_root,
    source_tarball=source_tarball,
    path_prefix=path_prefix,
)
long_step(
    state,
    host.name,
    built,
    f"Building Python {version} from source (pyenv)",
    "about 3 to 10 minutes (the longest on a small Linux box)",
)
