"""What the node-side jobs ask of the OS itself: a command's output, and which OS family this is."""

from __future__ import annotations

import subprocess
import sys


def command_output(argv: list[str]) -> str:
    """The standard output of ``argv`` (5 s at most); "" when it cannot run."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def os_family(platform_name: str | None = None) -> str:
    """``darwin`` on a Mac, ``linux`` everywhere else (the two OSes SAF provisions)."""
    return "darwin" if (platform_name or sys.platform) == "darwin" else "linux"
