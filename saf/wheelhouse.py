"""The control-side wheelhouse: wheels downloaded once per node platform, pushed to the nodes.

One ``pip download`` per (platform, pin set) for the whole cluster, instead of one download per
node. It runs while the deploy is prepared, before any host changes, so a pin that has no wheel
for a node's platform and Python stops the run before anything is touched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import gevent.lock
from packaging.version import Version
from pyinfra import logger
from pyinfra.api.exceptions import PyinfraError

from saf.node_os import is_macos_kernel

COMPLETE = ".complete"
_locks: defaultdict[str, gevent.lock.Semaphore] = defaultdict(gevent.lock.Semaphore)


class WheelhouseError(PyinfraError):
    """The wheels for a pin set cannot be had for a node's platform; the message says which and why.

    A PyinfraError: raised while the deploy is prepared, it stops the whole run before any host
    changes, and pyinfra shows its message without a traceback.
    """


def wheel_platforms(kernel: str, arch: str, os_version: str) -> list[str]:
    """Every platform tag a node accepts, newest first (pip does not expand them for --platform)."""
    if is_macos_kernel(kernel):
        major = int(os_version.split(".")[0])
        tags = [f"macosx_{v}_0_{a}" for v in range(major, 10, -1) for a in (arch, "universal2")]
        return tags + [f"macosx_10_{minor}_universal2" for minor in range(16, 8, -1)]
    glibc_minor = int(os_version.split(".")[1])
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc_minor, 16, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return tags


def platform_key(kernel: str, arch: str, os_version: str, python_version: str) -> str:
    """A directory name for one node platform: ``cp3.9.23-macosx_15_0_arm64``."""
    return f"cp{python_version}-{wheel_platforms(kernel, arch, os_version)[0]}"


def wheel_dir(wheelhouse: Path, key: str, venv_name: str) -> Path:
    return wheelhouse / key / venv_name


def ensure_wheels(
    wheelhouse: Path,
    key: str,
    venv_name: str,
    requirements: tuple[str, ...],
    platforms: list[str],
    python_version: str,
    node: str,
) -> list[Path]:
    """The wheels of ``requirements`` for one platform, downloaded once; raises WheelhouseError."""
    target = wheel_dir(wheelhouse, key, venv_name)
    with _locks[str(target)]:
        if not (target / COMPLETE).exists():
            logger.info(
                f"--> Downloading the wheels of {venv_name} for {key} into {target} (for every node of "
                "this platform; once): about a minute, nothing more is printed until it ends"
            )
            _download(target, requirements, platforms, python_version, key, node)
    return sorted(path for path in target.iterdir() if path.suffix == ".whl")


_checked: set[tuple[str, ...]] = set()


def check_pins_available(
    requirements: tuple[str, ...], platforms: list[str], python_version: str, key: str, node: str
) -> None:
    """Without a wheelhouse: ask the index (pip's dry run, no dependencies) that every pin has a
    wheel for the node's platform and Python, once per platform and pin set; raises WheelhouseError."""
    identity = (key, *requirements)
    if identity in _checked:
        return
    with tempfile.TemporaryDirectory(prefix="saf-pin-check-") as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            scratch,
            *_platform_args(platforms, python_version),
            *requirements,
        ]
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise WheelhouseError(_explain_failure(result.stderr, python_version, key, node))
    _checked.add(identity)


def _platform_args(platforms: list[str], python_version: str) -> list[str]:
    return [
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        *(arg for tag in platforms for arg in ("--platform", tag)),
    ]


def _download(target: Path, requirements, platforms, python_version, key, node) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(staging),
        *_platform_args(platforms, python_version),
        *requirements,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise WheelhouseError(_explain_failure(result.stderr, python_version, key, node))
        (staging / COMPLETE).write_text("\n".join(requirements) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def nearest_versions(requirement: str, available: list[str], count: int = 4) -> list[str]:
    """The ``count`` available versions closest to the pinned one, in version order."""
    wanted = Version(requirement.split("==")[-1]) if "==" in requirement else None
    versions = sorted({Version(v) for v in available if v and not v.startswith("(")})
    if wanted is None:
        return [str(v) for v in versions[-count:]]
    closest = sorted(versions, key=lambda v: (abs(_ordinal(v) - _ordinal(wanted)), v))[:count]
    return [str(v) for v in sorted(closest)]


def _ordinal(version: Version) -> float:
    parts = (list(version.release) + [0, 0, 0])[:3]
    return parts[0] * 1e6 + parts[1] * 1e3 + parts[2]


def _explain_failure(stderr: str, python_version: str, key: str, node: str) -> str:
    missing = re.search(r"No matching distribution found for (\S+)", stderr)
    available = re.search(r"\(from versions: ([^)]*)\)", stderr)
    platform = key.split("-", 1)[1]
    if missing:
        requirement = missing.group(1)
        listed = available.group(1).strip() if available else "none"
        nearest = ", ".join(nearest_versions(requirement, listed.split(", "))) if listed != "none" else ""
        return (
            f"{requirement} has no wheel for Python {python_version} on {platform} (node {node}). "
            + (f"Nearest versions that do: {nearest}. " if nearest else "No version of it does. ")
            + "Change the pin in the cluster file's settings, or python_version if the package "
            "needs another Python."
        )
    last_lines = " ".join(line.strip() for line in stderr.strip().splitlines()[-3:])
    return f"pip could not download the wheels for node {node} ({platform}): {last_lines}"
