"""Fact fixtures for plan tests: a fresh Mac Studio, a converged one, a fresh Debian host.

Values wrapped in Raw are command outputs as ../shared/macos/README.md shows them, parsed by the
facts' own code; the rest are already-parsed values, as pyinfra's own tests give them.
"""

from __future__ import annotations

from typing import Any

from saf.pins import requirements, venv_name
from saf.plan import Raw
from saf.platform import MAC_BUILD_DEPS

DF_MAC = """Filesystem     1024-blocks      Used  Available Capacity  Mounted on
/dev/disk3s5    1942700360 402534448 1498231504    22%    /System/Volumes/Data
"""
DF_LINUX = """Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         263174212 23036548 227301400      10% /
"""


def fresh_mac(**overrides: Any) -> dict[str, Any]:
    """A new Mac Studio (macOS 15.1, M3 Ultra) with the Command Line Tools and nothing of ours."""
    facts: dict[str, Any] = {
        "server.Kernel": "Darwin",
        "server.Arch": "arm64",
        "server.MacosVersion": "15.1",
        "system.XcodeCommandLineTools": Raw("/Library/Developer/CommandLineTools\n"),
        "system.FreeDiskKiB": Raw(DF_MAC),
        "system.PasswordlessSudo": Raw("yes\n"),
        "server.Home": "/Users/arthurdell",
        "files.File:/opt/homebrew/bin/brew": None,
        "brew.BrewPackages": {},
        "brew.BrewVersion": (4, 4, 0),
        "server.Which:nvidia-smi": None,
        "python.PythonInterpreter:*": None,
        "python.SafVenvs:*": {"venvs": {}, "current": None, "previous": None},
    }
    facts.update(overrides)
    return facts


def venv_for(python: str = "3.9.23", ray: str = "2.49.1", mlx: str = "0.29.1", extra: str = "",
             extra_packages: tuple[str, ...] = ("numpy==2.0.2",)) -> tuple[str, tuple[str, ...]]:
    """The venv name and requirements SAF derives from these pins (as saf.pins computes them)."""
    reqs = requirements(ray, mlx, extra, list(extra_packages))
    return venv_name(python, reqs), reqs


def installed(reqs: tuple[str, ...]) -> dict[str, str]:
    """What VenvDistributions reports for a venv holding exactly ``reqs`` (plus their deps)."""
    dists = {req.split("==")[0].split("[")[0]: req.split("==")[1] for req in reqs}
    return {**dists, "pip": "23.0.1", "aiohttp": "3.12.15"}


def converged_mac(home: str = "/Users/arthurdell", **overrides: Any) -> dict[str, Any]:
    """A Mac on which a previous run already converged everything (default pins)."""
    name, reqs = venv_for()
    facts = fresh_mac(**{
        "server.Home": home,
        "files.File:/opt/homebrew/bin/brew": {"mode": 755, "size": 1000},
        "brew.BrewPackages": {package: {"1.0"} for package in MAC_BUILD_DEPS},
        "python.PythonInterpreter:*": {"version": "3.9.23", "missing": []},
        "python.SafVenvs:*": {"venvs": {name: True}, "current": name, "previous": None},
        f"python.VenvDistributions:{home}/saf/venv/{name}": installed(reqs),
    })
    facts.update(overrides)
    return facts


def fresh_debian(**overrides: Any) -> dict[str, Any]:
    """A Debian 12 x86_64 box with passwordless sudo and nothing of ours."""
    facts: dict[str, Any] = {
        "server.Kernel": "Linux",
        "server.Arch": "x86_64",
        "system.FreeDiskKiB": Raw(DF_LINUX),
        "system.PasswordlessSudo": Raw("yes\n"),
        "server.Home": "/home/saf",
        "server.Which:apt-get": "/usr/bin/apt-get",
        "python.GlibcVersion": "2.36",
        "server.Which:nvidia-smi": None,
        "deb.DebPackages": {},
        "files.Directory:/home/saf/.pyenv/.git": None,
        "files.Directory:/home/saf/.pyenv": None,
        "python.PythonInterpreter:*": None,
        "python.SafVenvs:*": {"venvs": {}, "current": None, "previous": None},
    }
    facts.update(overrides)
    return facts
