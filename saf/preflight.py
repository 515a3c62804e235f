"""Preflight: can this node be provisioned at all? Read from facts, before anything changes.

Each problem is one sentence that names the node and the fix. ``tasks/preflight.py`` stops a node
with problems; ``deploy.py`` includes the other tasks only for nodes without any.
"""

from __future__ import annotations

from pyinfra.api.host import Host
from pyinfra.facts.server import Arch, Kernel, MacosVersion

from saf.facts.system import FreeDiskKiB, PasswordlessSudo, XcodeCommandLineTools
from saf.node_os import is_macos_kernel

SUPPORTED_LINUX_ARCHS = ("x86_64", "aarch64")


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.strip().split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _macos_problems(host: Host) -> list[str]:
    problems = []
    arch = host.get_fact(Arch)
    if arch != "arm64":
        problems.append(
            f"{host.name} is a Mac with a {arch} processor: MLX needs Apple Silicon (arm64). "
            "Remove the node from the cluster file or use an Apple Silicon Mac."
        )
    version = host.get_fact(MacosVersion) or "unknown"
    minimum = host.data.min_macos_version
    if version == "unknown" or _version_tuple(version) < _version_tuple(minimum):
        problems.append(
            f"{host.name} runs macOS {version}, older than {minimum} which MLX {host.data.mlx_version} "
            "needs: update macOS (System Settings > General > Software Update), then re-run."
        )
    if not host.get_fact(XcodeCommandLineTools):
        problems.append(
            f"{host.name} has no Xcode Command Line Tools (needed to build Python). Their installer is "
            f"interactive: on {host.name} run `xcode-select --install` and accept the dialog (or install "
            "'Command Line Tools for Xcode' from developer.apple.com), then re-run."
        )
    return problems


def _linux_problems(host: Host) -> list[str]:
    arch = host.get_fact(Arch)
    if arch not in SUPPORTED_LINUX_ARCHS:
        return [
            f"{host.name} is a Linux {arch} machine: Ray and MLX publish wheels for "
            f"{' and '.join(SUPPORTED_LINUX_ARCHS)} only. Remove the node from the cluster file."
        ]
    return []


def _common_problems(host: Host) -> list[str]:
    problems = []
    free_kib = host.get_fact(FreeDiskKiB)
    needed_gb = host.data.min_free_disk_gb
    if free_kib is not None and free_kib < needed_gb * 1024 * 1024:
        problems.append(
            f"{host.name} has {free_kib / 1024 / 1024:.1f} GB free in the home directory, less than the "
            f"{needed_gb} GB a Python build and two venvs need: free some space (or lower "
            "min_free_disk_gb in the cluster file's settings), then re-run."
        )
    if host.data.use_sudo and not host.get_fact(PasswordlessSudo):
        problems.append(
            f"sudo asks {host.name}'s SSH user for a password, and the deploy needs sudo for system "
            "services, the MTU and build dependencies: allow it without a password for that user "
            "(a file in /etc/sudoers.d), or set use_sudo: false in the cluster file's settings."
        )
    return problems


def preflight_problems(host: Host) -> list[str]:
    """Everything that stops ``host`` from being provisioned; empty when it may go ahead."""
    kernel = host.get_fact(Kernel)
    if is_macos_kernel(kernel):
        problems = _macos_problems(host)
    elif kernel == "Linux":
        problems = _linux_problems(host)
    else:
        return [f"{host.name} runs {kernel}: SAF provisions macOS (Apple Silicon) and Linux nodes only."]
    return problems + _common_problems(host)
