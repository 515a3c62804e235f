"""Running host commands for the lab, and the lab's one error type."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


class LabError(Exception):
    """Something the lab cannot do; the message says what and how to fix it."""


def run(
    argv: Sequence[str],
    check: bool = True,
    capture: bool = True,
    timeout: float | None = 600,
    input: str | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess:
    """Run a host command; a failure becomes a LabError naming the command and its error output."""
    try:
        result = subprocess.run(
            list(argv),
            capture_output=capture,
            text=True,
            timeout=timeout,
            input=input,
            cwd=cwd,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise LabError(f"`{argv[0]}` is not installed on this machine; run `bash .ci/setup` (as root).") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s.") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-5:] if capture else []
        raise LabError(f"`{' '.join(argv)}` failed (exit {result.returncode}): {' '.join(detail)}")
    return result


REQUIRED_TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "git": "git",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "apt-get": "apt",
    "nsenter": "util-linux",
}


def check_prerequisites() -> None:
    """The lab needs root and a few Debian packages on this machine."""
    import os

    if os.geteuid() != 0:
        raise LabError("the lab makes network namespaces and containers: run it as root.")
    missing = sorted({package for tool, package in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise LabError(
            f"the lab needs these Debian packages: {' '.join(missing)}; run `bash .ci/setup` "
            f"(or apt-get install {' '.join(missing)})."
        )
