"""macOS power facts: ``pmset -g custom`` (per power source; a desktop shows AC Power only)."""

from __future__ import annotations

import re

from pyinfra.api import FactBase


class PmsetSettings(FactBase[dict]):
    """The AC Power settings: ``{"sleep": 1, "disksleep": 10, "womp": 1, "autorestart": 0, ...}``."""

    default = dict

    def requires_command(self) -> str:
        return "pmset"

    def command(self) -> str:
        return "pmset -g custom"

    def process(self, output: list[str]) -> dict:
        settings: dict = {}
        section = None
        for line in output:
            header = re.match(r"^(\S.*):\s*$", line)
            if header:
                section = header.group(1).strip()
                continue
            value = re.match(r"^\s+(\w+)\s+(-?\d+)", line)
            if value and section == "AC Power":
                settings[value.group(1)] = int(value.group(2))
        return settings
