"""The verification's stray check: on every node, any Ray process or listener that is not SAF's
service's fails that node by name (issue 15: a hand-started head beside SAF's worker, a dashboard
open on the network).

The driver runs, on each node, the commands the deploy's own facts run (:func:`census_commands`)
and sends back what they printed; :func:`stray_check` reads that output with the facts' parsers and
:mod:`saf.foreign_ray`'s judgement, so the deploy and the verification never disagree on what is
SAF's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from saf.facts.ray import LSOF_COMMAND, PS_COMMAND, PS_UNITS_COMMAND, SS_COMMAND
from saf.facts.unexpected import UnexpectedOutput
from saf.foreign_ray import stray_problems_from_output
from saf.node_data import NodeData
from saf.service import Role, is_system_service, service_label, service_unit


def launchd_target(role: Role, data: NodeData) -> str:
    """SAF's launchd job on a Mac, as ``launchctl print`` names it: a LaunchDaemon in ``system``, or
    a LaunchAgent in the SSH user's GUI domain (the node's shell fills in the uid). The census runs
    as the SSH user, without sudo: launchctl(1) says anyone may read or query the system domain
    (only changing it needs root)."""
    domain = "system" if is_system_service(data, macos=True) else "gui/$(id -u)"
    return f"{domain}/{service_label(role)}"


def census_commands(role: Role, data: NodeData) -> dict[str, dict[str, str]]:
    """What the driver runs on a node of ``role`` (a shell line each), by the node's OS: the Ray
    processes, the listening sockets and, on a Mac, SAF's launchd job (whose process tree is SAF's)."""
    job = f"launchctl print {launchd_target(role, data)} 2>/dev/null || true"  # read by LaunchdJob's parser
    return {
        "linux": {"ps": PS_UNITS_COMMAND, "listeners": SS_COMMAND},
        "darwin": {"ps": PS_COMMAND, "listeners": LSOF_COMMAND, "job": job},
    }


def node_strays(node: dict, data: NodeData, ignore_pids: Iterable[int] = ()) -> list[str]:
    """The stray problems of one node from the census the driver brought back; [] without one."""
    census = node.get("census")
    if not census:
        return []
    if census.get("error"):
        return [f"{node['name']}: its Ray processes could not be read ({census['error']})"]
    try:
        found = stray_problems_from_output(
            census["os"] == "darwin",
            census["ps"],
            census["listeners"],
            census.get("job", ""),  # no job on Linux
            service_unit(node["role"]),
            not is_system_service(data, macos=False),
            data,
            ignore_pids,
        )
    except UnexpectedOutput as error:
        return [f"{node['name']}: its Ray processes could not be read ({error})"]
    return [f"{node['name']}: {problem}; stop it (the next deploy does, with foreign_ray: stop)" for problem in found]


def stray_check(data: NodeData, driver_node: str, driver_pids: Iterable[int]) -> Callable[[dict], list[str]]:
    """The check the judgement runs on each node: the driver's own processes (on ``driver_node``,
    its command line full of Ray's names) are not strays."""
    ignored = frozenset(driver_pids)

    def check(node: dict) -> list[str]:
        return node_strays(node, data, ignored if node["name"] == driver_node else ())

    return check
