"""One way to ask what a node runs: macOS (launchd, networksetup, Homebrew) or Linux (systemd, ip).

pyinfra's ``Kernel`` fact says ``Darwin`` on macOS; every macOS/Linux branch of SAF asks here.
"""

from __future__ import annotations

from pyinfra.api.host import Host
from pyinfra.facts.server import Kernel

MACOS_KERNEL = "Darwin"


def is_macos_kernel(kernel: str | None) -> bool:
    """Whether ``uname -s`` output (pyinfra's ``Kernel`` fact) names macOS."""
    return kernel == MACOS_KERNEL


def is_macos(host: Host) -> bool:
    """Whether ``host`` is a Mac (while the deploy is prepared, asking twice reads the kernel once)."""
    return is_macos_kernel(host.get_fact(Kernel))
