"""Preflight: can this node be provisioned at all? Read from facts, before anything changes.

Each check gives a :class:`Finding`: what it found and a verdict. A ``cannot`` carries one
sentence that names the node and the fix; ``tasks/preflight.py`` stops a node with any, and
``deploy.py`` includes the other tasks only for nodes without. ``saf doctor`` shows every finding.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pyinfra.api.host import Host
from pyinfra.facts.files import File
from pyinfra.facts.server import Arch, Home, Kernel, MacosVersion

from saf.build_deps import BREW
from saf.facts.gpu import AppleGPU
from saf.facts.launchd import LaunchdDomain
from saf.facts.roots import SafRoots
from saf.facts.system import FreeDiskKiB, PasswordlessSudo, XcodeCommandLineTools
from saf.node_os import is_macos_kernel
from saf.paths import on_node
from saf.service import node_ray_service
from saf.venv_spec import ROOT_MARKER

SUPPORTED_LINUX_ARCHS = ("x86_64", "aarch64")


class Verdict(str, Enum):
    OK = "OK"
    WOULD_CHANGE = "would change"  # the deploy changes it (the fix is what it does)
    ATTENTION = "attention"  # the deploy goes on, but something here needs a person
    CANNOT = "cannot"  # the deploy stops on this node (the fix says what to do)


@dataclass(frozen=True)
class Finding:
    """One checked assumption about a node: what was found, the verdict and the fix."""

    check: str
    found: str
    verdict: Verdict = Verdict.OK
    fix: str = ""


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.strip().split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _processor_on_a_mac(host: Host) -> Finding:
    arch = host.get_fact(Arch)
    if arch == "arm64":
        return Finding("processor", "arm64 (Apple Silicon)")
    return Finding(
        "processor",
        str(arch),
        Verdict.CANNOT,
        f"{host.name} is a Mac with a {arch} processor: MLX needs Apple Silicon (arm64). "
        "Remove the node from the cluster file or use an Apple Silicon Mac.",
    )


def _macos_version(host: Host) -> Finding:
    version = host.get_fact(MacosVersion) or "unknown"
    minimum = host.data.min_macos_version
    if version != "unknown" and version_tuple(version) >= version_tuple(minimum):
        return Finding("macOS", version)
    return Finding(
        "macOS",
        version,
        Verdict.CANNOT,
        f"{host.name} runs macOS {version}, older than {minimum} which MLX {host.data.mlx_version} "
        "needs: update macOS (System Settings > General > Software Update), then re-run.",
    )


def _command_line_tools(host: Host) -> Finding:
    path = host.get_fact(XcodeCommandLineTools)
    if path:
        return Finding("Command Line Tools", path)
    return Finding(
        "Command Line Tools",
        "missing",
        Verdict.CANNOT,
        f"{host.name} has no Xcode Command Line Tools (needed to build Python). Their installer is "
        f"interactive: on {host.name} run `xcode-select --install` and accept the dialog (or install "
        "'Command Line Tools for Xcode' from developer.apple.com), then re-run.",
    )


def _homebrew_without_sudo(host: Host) -> list[Finding]:
    """Homebrew's installer needs an administrator: without sudo, it must already be there."""
    if host.data.use_sudo or host.get_fact(File, path=BREW):
        return []
    return [
        Finding(
            "Homebrew",
            "missing",
            Verdict.CANNOT,
            f"{host.name} has no Homebrew ({BREW}) and its installer needs sudo, which use_sudo: false "
            "forbids: install Homebrew on it yourself (brew.sh), or set use_sudo: true.",
        )
    ]


def _launchd_domain(host: Host) -> Finding:
    """The domain Ray's job goes in must be reachable: a LaunchAgent's only while its user is logged in."""
    service = node_ray_service(host)
    domain = service.launchd_domain
    if host.get_fact(LaunchdDomain, domain=domain):
        return Finding("launchd domain", f"{domain} reachable")
    return Finding(
        "launchd domain",
        f"{domain} unreachable",
        Verdict.CANNOT,
        f"launchctl cannot reach the {domain} domain on {host.name}, where Ray's job would run: a "
        "LaunchAgent needs its user logged in to the Mac's desktop; log in there (and turn on "
        "automatic login), or let Ray run as a LaunchDaemon (macos_service: daemon, use_sudo: true).",
    )


def _apple_gpu(host: Host) -> Finding:
    gpu = host.get_fact(AppleGPU)
    if gpu and gpu.get("metal"):
        cores = f", {gpu['cores']} GPU cores" if gpu.get("cores") else ""
        return Finding("Apple GPU", f"{gpu['model']}{cores}, {gpu['metal']}")
    found = f"{gpu['model']} without Metal" if gpu else "none listed"
    return Finding(
        "Apple GPU",
        found,
        Verdict.CANNOT,
        f"{host.name} shows no GPU with Metal support (`system_profiler SPDisplaysDataType`), and MLX "
        "computes on Metal: check that this is an Apple Silicon Mac on a supported macOS.",
    )


def _processor_on_linux(host: Host) -> Finding:
    arch = host.get_fact(Arch)
    if arch in SUPPORTED_LINUX_ARCHS:
        return Finding("processor", str(arch))
    return Finding(
        "processor",
        str(arch),
        Verdict.CANNOT,
        f"{host.name} is a Linux {arch} machine: Ray and MLX publish wheels for "
        f"{' and '.join(SUPPORTED_LINUX_ARCHS)} only. Remove the node from the cluster file.",
    )


def _free_disk(host: Host) -> Finding:
    free_kib = host.get_fact(FreeDiskKiB)
    needed_gb = host.data.min_free_disk_gb
    if free_kib is None:
        return Finding("free disk", "unknown", Verdict.ATTENTION, "`df -Pk ~` printed no figure; check the space")
    found = f"{free_kib / 1024 / 1024:.1f} GB in the home directory"
    if free_kib >= needed_gb * 1024 * 1024:
        return Finding("free disk", found)
    return Finding(
        "free disk",
        found,
        Verdict.CANNOT,
        f"{host.name} has {free_kib / 1024 / 1024:.1f} GB free in the home directory, less than the "
        f"{needed_gb} GB a Python build and two venvs need: free some space (or lower "
        "min_free_disk_gb in the cluster file's settings), then re-run.",
    )


def _sudo(host: Host) -> Finding:
    if not host.data.use_sudo:
        return Finding("sudo", "not used (use_sudo: false)")
    if host.get_fact(PasswordlessSudo):
        return Finding("sudo", "passwordless")
    return Finding(
        "sudo",
        "asks for a password",
        Verdict.CANNOT,
        f"sudo asks {host.name}'s SSH user for a password, and the deploy needs sudo for system "
        "services, the MTU and build dependencies: allow it without a password for that user "
        "(a file in /etc/sudoers.d), or set use_sudo: false in the cluster file's settings.",
    )


def root_paths(host: Host) -> tuple[str, str]:
    """The node's venv_root and pyenv_root, absolute."""
    home = host.get_fact(Home)
    return on_node(host.data.venv_root, home).rstrip("/"), on_node(host.data.pyenv_root, home).rstrip("/")


def saf_roots(host: Host) -> tuple[str, str, dict]:
    """The node's venv_root and pyenv_root (absolute) and whose they are (:class:`SafRoots`)."""
    venv_root, pyenv_root = root_paths(host)
    return venv_root, pyenv_root, host.get_fact(SafRoots, venv_root=venv_root, pyenv_root=pyenv_root)


_FOUND = {
    "absent": "absent (SAF creates it)",
    "empty": "empty",
    "ours": "holds only SAF's venvs",
    "pyenv": "a pyenv checkout",
}


def _venv_root(host: Host, path: str, found: dict) -> Finding:
    """venv_root must be SAF's: SAF prunes venvs there and teardown removes them."""
    if found["state"] == "notdir":
        return Finding(
            "venv_root",
            f"{path}: a file",
            Verdict.CANNOT,
            f"venv_root {path} on {host.name} is a file, not a folder: set venv_root in the cluster "
            "file's settings to a folder of its own (the default is ~/saf/venv), then re-run.",
        )
    if found["marked"]:
        return Finding("venv_root", f"{path}: SAF's ({ROOT_MARKER})")
    if found["state"] != "foreign":
        return Finding("venv_root", f"{path}: {_FOUND.get(found['state'], found['state'])}")
    return Finding(
        "venv_root",
        f"{path}: holds {found['entry']}",
        Verdict.CANNOT,
        f"venv_root {path} on {host.name} already exists and holds {found['entry']!r}, which SAF did "
        "not make: SAF builds and prunes its venvs there and `saf teardown` removes them, so it does not "
        "take over a folder of yours. Set venv_root in the cluster file's settings to a folder of its "
        "own (the default is ~/saf/venv), or, if the folder is SAF's, create "
        f"{path}/{ROOT_MARKER} on {host.name}; then re-run.",
    )


def _pyenv_root(host: Host, path: str, found: dict) -> Finding:
    """pyenv_root must be pyenv's (a checkout, or only what pyenv keeps there) or new."""
    if found["state"] in ("foreign", "notdir"):
        what = "is a file" if found["state"] == "notdir" else f"holds {found['entry']!r}"
        return Finding(
            "pyenv_root",
            f"{path}: {what}",
            Verdict.CANNOT,
            f"pyenv_root {path} on {host.name} {what} and is not a pyenv checkout (no bin/pyenv): SAF "
            "installs pyenv and builds Python there, so it does not write into a folder of yours. Set "
            "pyenv_root in the cluster file's settings to a pyenv checkout or a new folder (the default "
            "is ~/.pyenv), then re-run.",
        )
    return Finding("pyenv_root", f"{path}: {_FOUND.get(found['state'], found['state'])}")


def _saf_folders(host: Host) -> list[Finding]:
    venv_root, pyenv_root, roots = saf_roots(host)
    return [_venv_root(host, venv_root, roots["venv_root"]), _pyenv_root(host, pyenv_root, roots["pyenv_root"])]


def preflight_findings(host: Host) -> list[Finding]:
    """Every assumption the deploy makes about ``host`` before it changes anything."""
    kernel = host.get_fact(Kernel)
    if is_macos_kernel(kernel):
        findings = [_processor_on_a_mac(host), _macos_version(host), _command_line_tools(host)]
        if findings[0].verdict is Verdict.OK:  # an Intel Mac's GPU and launchd are beside the point
            findings += [_apple_gpu(host), _launchd_domain(host), *_homebrew_without_sudo(host)]
    elif kernel == "Linux":
        findings = [_processor_on_linux(host)]
    else:
        return [
            Finding(
                "operating system",
                str(kernel),
                Verdict.CANNOT,
                f"{host.name} runs {kernel}: SAF provisions macOS (Apple Silicon) and Linux nodes only.",
            )
        ]
    return findings + [_free_disk(host), _sudo(host), *_saf_folders(host)]


def preflight_problems(host: Host) -> list[str]:
    """Everything that stops ``host`` from being provisioned; empty when it may go ahead."""
    return [finding.fix for finding in preflight_findings(host) if finding.verdict is Verdict.CANNOT]
