"""launchd facts with the modern launchctl: ``launchctl print <domain>/<label>``."""

from __future__ import annotations

import re

from pyinfra.api import FactBase, StringCommand
from pyinfra.api.command import QuoteString


class LaunchdJob(FactBase[dict | None]):
    """A loaded launchd job: ``{"state": "running", "pid": 4127, "path": plist}``, None if not loaded.

    ``launchctl print`` exits 113 for a job that is not loaded; that reads as None.
    """

    def requires_command(self, target: str) -> str:
        return "launchctl"

    def command(self, target: str) -> StringCommand:
        return StringCommand("launchctl print", QuoteString(target), "2>/dev/null || true")

    def process(self, output: list[str]) -> dict | None:
        if not output or "=" not in " ".join(output):
            return None
        job: dict = {"state": None, "pid": None, "path": None}
        for line in output:
            found = re.match(r"^\s*(state|pid|path)\s*=\s*(.+?)\s*$", line)
            if found and job[found.group(1)] is None:  # the first (top-level) value wins
                key, value = found.groups()
                job[key] = int(value) if key == "pid" and value.isdigit() else value
        return job


class LaunchdDomain(FactBase[bool]):
    """Whether launchctl can reach a domain: ``system`` (LaunchDaemons) or ``gui/<uid>``
    (LaunchAgents: only while that user has a GUI session)."""

    def requires_command(self, domain: str) -> str:
        return "launchctl"

    def command(self, domain: str) -> StringCommand:
        return StringCommand(
            "launchctl print", QuoteString(domain), ">/dev/null 2>&1 && echo reachable || echo unreachable"
        )

    def process(self, output: list[str]) -> bool:
        return any(line.strip() == "reachable" for line in output)
