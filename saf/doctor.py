"""`saf doctor`: what SAF finds on a node, and what the deploy would do there, before it changes one.

Read-only: every check reads facts (the ones the deploy reads, and a few of its own) and gives a
:class:`~saf.preflight.Finding`: OK, would change (the deploy does it), attention (the deploy goes
on, but a person should look) or cannot (the deploy stops on that node; the fix says what to do).
A fact whose output SAF does not understand is a ``cannot`` that quotes the command and its first
lines: never a guess.
"""

from __future__ import annotations

from collections.abc import Callable

from pyinfra.api.host import Host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command, Home, Kernel

from saf.app_firewall import BLOCKS_ALL, app_firewall_state
from saf.auth import protection
from saf.build_deps import BREW
from saf.facts.gpu import NvidiaGPUs
from saf.facts.launchd import LaunchdJob
from saf.facts.network import RawMaxDatagram
from saf.facts.python import PythonInterpreter
from saf.facts.rdma import ABSENT, RdmaThunderbolt
from saf.facts.unexpected import UnexpectedOutput
from saf.foreign_ray import (
    autoscaler_fixes,
    found_lines,
    node_foreign_ray,
    refusal,
    sudo_refusal,
)
from saf.network import mtu_finding
from saf.node_os import is_macos, is_macos_kernel
from saf.operations.python import VenvWork, venv_work
from saf.paths import on_node
from saf.preflight import Finding, Verdict, preflight_findings
from saf.service import node_ray_service
from saf.venv_spec import node_venv

Check = Callable[[Host], Finding]


def _homebrew(host: Host) -> Finding:
    if host.get_fact(File, path=BREW):
        return Finding("Homebrew", BREW)
    return Finding("Homebrew", "missing", Verdict.WOULD_CHANGE, "installs Homebrew (non-interactively)")


def _python(host: Host) -> Finding:
    version = host.data.python_version
    python = f"{on_node(host.data.pyenv_root, host.get_fact(Home))}/versions/{version}/bin/python"
    found = host.get_fact(PythonInterpreter, python=python)
    if found is None:
        return Finding("Python", f"{version} not built", Verdict.WOULD_CHANGE, f"builds Python {version} with pyenv")
    if found.get("version") != version or found.get("missing"):
        missing = ", ".join(found.get("missing") or [])
        return Finding(
            "Python",
            f"{found.get('version')} without {missing}" if missing else str(found.get("version")),
            Verdict.WOULD_CHANGE,
            f"rebuilds Python {version} with pyenv",
        )
    return Finding("Python", f"{version} (pyenv)")


def _venv(host: Host) -> Finding:
    spec = node_venv(host, host.get_fact(Home))
    work = venv_work(spec)
    if work is VenvWork.NOTHING:
        return Finding("venv", f"{spec.name} is current")
    what = {
        VenvWork.BUILD: "builds",
        VenvWork.REPAIR: "repairs the pins of",
        VenvWork.SWITCH: "switches to",
        VenvWork.PRUNE: "removes leftover venvs beside",
    }[work]
    return Finding("venv", f"{spec.name}: {work.value}", Verdict.WOULD_CHANGE, f"{what} {spec.name}")


def _ray_service(host: Host) -> Finding:
    service = node_ray_service(host)
    if is_macos(host):
        job = host.get_fact(LaunchdJob, target=f"{service.launchd_domain}/{service.label}")
        state = (job or {}).get("state")
        name = f"{service.launchd_domain}/{service.label}"
    else:
        user = "" if service.system else "--user "
        state = host.get_fact(Command, command=f"systemctl {user}is-active {service.unit} 2>/dev/null || true")
        name = service.unit
    if state in ("running", "active"):
        return Finding("Ray service", f"{name} {state}")
    return Finding(
        "Ray service",
        f"{name} {state or 'not installed'}",
        Verdict.WOULD_CHANGE,
        f"installs and starts Ray's {service.role} service",
    )


def _existing_ray(host: Host) -> Finding:
    """The Ray on the node that is not SAF's service's (saf/foreign_ray.py: the deploy's own
    judgement), and what the deploy does about it under ``foreign_ray``."""
    found = node_foreign_ray(host)
    if not found.found:
        count = len(found.all_processes)
        return Finding("Ray processes", f"{count}, all SAF's service" if count else "none")
    shown = found_lines(found)
    named = "; ".join(shown[:4]) + (f" and {len(shown) - 4} more" if len(shown) > 4 else "")
    what = f"{len(found.processes)} not started by SAF" if found.processes else "a launcher of Ray not SAF's"
    if host.data.foreign_ray == "refuse":
        return Finding("Ray processes", what, Verdict.CANNOT, refusal(host.name, found))
    if found.needs_sudo and not host.data.use_sudo:
        return Finding("Ray processes", what, Verdict.CANNOT, sudo_refusal(host.name, found))
    autoscalers = " ".join(autoscaler_fixes(host.name, found))
    return Finding(
        "Ray processes",
        what,
        Verdict.WOULD_CHANGE,
        f"stops the Ray that runs on {host.name} outside SAF's service (foreign_ray: stop) and sets aside "
        f"what starts it again: {named}" + (f". {autoscalers}" if autoscalers else ""),
    )


PROTECTION_FIX = {
    "token auth and firewall": "Ray asks every caller for the cluster's token, and only the cluster's nodes reach "
    "its ports",
    "token auth": "Ray asks every caller for the cluster's token (firewall: false: anyone on the network reaches "
    "its ports)",
    "firewall": "only the cluster's nodes reach Ray's ports; whoever runs code on a node can use Ray's job API "
    "(Ray before 2.52 has no token auth)",
    "none: trusted network": "nothing keeps others from Ray's job API, which runs any code sent to it: "
    "trusted_network: true says no one else is on this network (if that changes, set "
    "firewall: true, or a ray_version of 2.52.0 or later for token auth)",
}


def _protection(host: Host) -> Finding:
    """Shown on every node: what keeps strangers from Ray's job API (the cluster file's choice, which
    its validation made sure is one of these)."""
    found = protection(host.data)
    if found in PROTECTION_FIX:
        return Finding("Ray protection", found, fix=PROTECTION_FIX[found])
    return Finding(
        "Ray protection",
        found,
        Verdict.ATTENTION,  # the cluster file's validation refuses it first
        "anyone on the network could run code through Ray's job API: set firewall: true, or a ray_version "
        "of 2.52.0 or later for token auth, or trusted_network: true if no one else is on this network",
    )


def _raw_datagram_cap(host: Host) -> Finding:
    """Shown, not judged: it caps ``ping -D -s`` below 9000-byte frames on a stock Mac, which is why
    the verification's path check sends UDP instead."""
    cap = host.get_fact(RawMaxDatagram)
    found = f"{cap} bytes (net.inet.raw.maxdgram)" if cap else "unknown"
    return Finding("raw datagram cap", found, fix="the path check uses UDP, so it does not depend on this")


def _app_firewall(host: Host) -> Finding:
    found = app_firewall_state(host)
    if found.state == BLOCKS_ALL:
        return Finding(
            "application firewall",
            "blocks all incoming connections",
            Verdict.ATTENTION,
            'Ray\'s peers cannot reach this node: turn off "Block all incoming connections" (System '
            "Settings, Network, Firewall, Options).",
        )
    if not found.state:
        return Finding("application firewall", "off")
    if not found.missing:
        return Finding("application firewall", "on, allows Ray")
    if not host.data.use_sudo:
        return Finding(
            "application firewall",
            "on, Ray not allowed",
            Verdict.ATTENTION,
            f"allow {', '.join(found.missing)} in System Settings, Network, Firewall (use_sudo: false)",
        )
    return Finding(
        "application firewall",
        "on, Ray not allowed",
        Verdict.WOULD_CHANGE,
        f"allows {len(found.missing)} of Ray's binaries (socketfilterfw)",
    )


def _rdma(host: Host) -> Finding:
    """Shown, never a stop: whether this Mac has RDMA over Thunderbolt (what MLX's jaccl backend
    needs), for users planning a Thunderbolt 5 cluster; SAF provisions the ring backend."""
    found = host.get_fact(RdmaThunderbolt)
    status, devices = found["rdma_ctl"], found["devices"]
    check = "RDMA over Thunderbolt"
    if status == ABSENT:
        return Finding(
            check, "not on this Mac (it needs macOS 26.2+ and Thunderbolt 5)", fix="MLX's ring backend over TCP is used"
        )
    if status == "disabled":
        return Finding(
            check,
            "available, disabled",
            fix="not needed for the ring backend; to have it, run "
            "`rdma_ctl enable` in macOS Recovery's Terminal, then restart",
        )
    if status == "enabled":
        return Finding(
            check,
            f"enabled: {', '.join(devices)}" if devices else "enabled, no RDMA device listed",
            fix=f"ready for jaccl, which SAF does not offer yet (mlx_backend: {host.data.mlx_backend})",
        )
    return Finding(
        check,
        f"rdma_ctl status says {status[:80]!r}",
        Verdict.ATTENTION,
        "SAF does not know this answer; the ring backend does not depend on it",
    )


def _gpu_on_linux(host: Host) -> Finding:
    gpus = host.get_fact(NvidiaGPUs)
    if gpus:
        return Finding("GPU", f"{', '.join(gpus)} (MLX's CUDA backend)")
    return Finding("GPU", "no NVIDIA GPU (MLX on the CPU)")


MAC_CHECKS: tuple[Check, ...] = (
    _homebrew,
    _python,
    _venv,
    mtu_finding,
    _raw_datagram_cap,
    _rdma,
    _app_firewall,
    _existing_ray,
    _ray_service,
    _protection,
)
LINUX_CHECKS: tuple[Check, ...] = (_gpu_on_linux, _python, _venv, mtu_finding, _existing_ray, _ray_service, _protection)


def _checked(host: Host, check: Callable[[Host], Finding | list[Finding]]) -> list[Finding]:
    """The check's findings; output SAF does not understand becomes a ``cannot`` naming the command.

    In a run, pyinfra reports a fact's UnexpectedOutput itself (the command and its first lines)
    and fails the host; a plan meets the exception here.
    """
    failed_before = host in host.state.failed_hosts
    try:
        found = check(host)
    except UnexpectedOutput as error:
        return [Finding(error.command, "output not understood", Verdict.CANNOT, str(error))]
    findings = found if isinstance(found, list) else [found]
    if not failed_before and host in host.state.failed_hosts:
        return [
            Finding(
                finding.check,
                "output not understood",
                Verdict.CANNOT,
                "SAF did not understand a command's output here: the error above names it",
            )
            for finding in findings
        ]
    return findings


def doctor_findings(host: Host) -> list[Finding]:
    """Every finding about ``host``: preflight's, then what the deploy would do on it."""
    findings = _checked(host, preflight_findings)
    if any(
        finding.verdict is Verdict.CANNOT and finding.check in ("processor", "operating system", "sudo")
        for finding in findings
    ):
        return findings  # the wrong kind of machine, or sudo that asks for a password: fix that first
    checks = MAC_CHECKS if is_macos_kernel(host.get_fact(Kernel)) else LINUX_CHECKS
    return findings + [finding for check in checks for finding in _checked(host, check)]


def findings_table(node: str, findings: list[Finding]) -> str:
    """A node's findings as an aligned table: check, found, verdict, fix."""
    rows = [("check", "found", "verdict", "fix / what the deploy does")]
    rows += [(f.check, f.found, f.verdict.value, f.fix) for f in findings]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=False)), row[3]]).rstrip()
        for row in rows
    ]
    return "\n".join([f"{node}:", *(f"  {line}" for line in lines)])
