"""Facts about a node as a whole, read by preflight: developer tools, free disk, sudo."""

from __future__ import annotations

from pyinfra.api import FactBase


class XcodeCommandLineTools(FactBase[str | None]):
    """The active developer directory (``xcode-select -p``), or None when the tools are missing.

    A selected directory whose tools were deleted is still printed by ``xcode-select -p``
    (Homebrew/install#36): like Homebrew's installer, the directory must hold ``usr/bin``.
    """

    pure_read = True  # reads a path setting and a folder only: may be kept and asked ahead (saf/fact_cache.py)

    def requires_command(self) -> str:
        return "xcode-select"

    def command(self) -> str:
        # exit status 2 with a message on stderr when missing: keep the fact itself from failing
        return 'p="$(xcode-select -p 2>/dev/null)" && [ -d "$p/usr/bin" ] && echo "$p" || true'

    def process(self, output: list[str]) -> str | None:
        lines = [line.strip() for line in output if line.strip()]
        return lines[0] if lines and lines[0].startswith("/") else None


class FreeDiskKiB(FactBase[int | None]):
    """Free space, in KiB, on the file system holding the SSH user's home."""

    def command(self) -> str:
        return 'df -Pk "$HOME"'

    def process(self, output: list[str]) -> int | None:
        # POSIX format: "Filesystem 1024-blocks Used Available Capacity Mounted on", then one row
        for line in output[1:]:
            fields = line.split()
            if len(fields) >= 4 and fields[3].isdigit():
                return int(fields[3])
        return None


class PasswordlessSudo(FactBase[bool]):
    """Whether ``sudo`` works without a password prompt for the SSH user."""

    def command(self) -> str:
        return "sudo -n true >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return any(line.strip() == "yes" for line in output)
