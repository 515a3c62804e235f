"""The Ray processes running on a node, whoever started them.

``ps -A -o user= -o pid= -o ppid= -o args=`` reads the same on macOS and Linux. A Ray process is
one of Ray's own programs (raylet, gcs_server), a ``ray start`` or a Python process running one
of Ray's components (dashboard, agents, the autoscaler's monitor, workers named ``ray::``).
"""

from __future__ import annotations

import re

from pyinfra.api import FactBase

from saf.facts.unexpected import UnexpectedOutput

PS_COMMAND = "ps -A -o user= -o pid= -o ppid= -o args="
_RAY_PROGRAM = re.compile(
    r"(/raylet(\s|$)|/gcs_server(\s|$)|\bray start\b|/bin/ray\s+start\b|ray/dashboard/|ray/_private/"
    r"|ray/autoscaler/_private/monitor\.py|^ray::|default_worker\.py)")
_LINE = re.compile(r"^\s*(\S+)\s+(\d+)\s+(\d+)\s+(.*)$")


class RayProcesses(FactBase[list]):
    """``[{"user", "pid", "ppid", "command"}]`` for every Ray process on the node."""

    default = list

    def command(self) -> str:
        return PS_COMMAND

    def process(self, output: list[str]) -> list:
        processes = []
        for line in output:
            if not line.strip():
                continue
            found = _LINE.match(line)
            if not found:
                raise UnexpectedOutput(PS_COMMAND, [line])
            user, pid, ppid, command = found.groups()
            if _RAY_PROGRAM.search(command):
                processes.append({"user": user, "pid": int(pid), "ppid": int(ppid), "command": command})
        return processes
