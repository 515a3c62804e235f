"""The census job: what each node's Ray looks like, raw (its Ray processes, its listeners, SAF's
launchd job on a Mac), read on the control machine (saf/verify/strays.py); and the driver's own
processes, which carry Ray's names in their command lines and are not Ray processes to judge.
"""

from __future__ import annotations

import subprocess

from .scheduling import on_node
from .system import command_output, os_family


def ray_census(commands: dict) -> dict:
    """What this node's Ray looks like, raw: the output of the commands given for its OS (its Ray
    processes, its listeners, SAF's launchd job on a Mac), read on the control machine."""
    platform_name = os_family()
    census = {"os": platform_name}
    for key, line in commands[platform_name].items():
        try:
            census[key] = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=15).stdout
        except (OSError, subprocess.SubprocessError) as error:
            census["error"] = f"{line}: {error}"
    return census


def start_census(ray, nodes: dict, commands: dict) -> dict:
    """Every alive node's Ray census (``commands``: what to run, by node and OS), started on all nodes
    at once: the refs by name (collected by collect_census)."""
    census = ray.remote(num_cpus=0)(ray_census)
    return {
        name: census.options(scheduling_strategy=on_node(ray, node["node_id"])).remote(commands[name])
        for name, node in nodes.items()
        if node["node_id"] and name in commands
    }


def collect_census(ray, nodes: dict, pending: dict, timeout: float) -> None:
    for name, ref in pending.items():
        try:
            nodes[name]["census"] = ray.get(ref, timeout=timeout)
        except Exception as error:  # noqa: BLE001
            nodes[name]["census"] = {"error": type(error).__name__}


def ancestry(ps_output: str, pid: int) -> list[int]:
    """``pid`` and its ancestors, from ``ps -A -o pid= -o ppid=``."""
    parents = {}
    for line in ps_output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            parents[int(fields[0])] = int(fields[1])
    chain = [pid]
    while parents.get(chain[-1], 0) > 1 and parents[chain[-1]] not in chain:
        chain.append(parents[chain[-1]])
    return chain


def own_ancestry() -> list[int]:
    """This driver's process and its ancestors: the shell lines that started it carry Ray's names
    in their command lines, and are not Ray processes to judge."""
    import os

    return ancestry(command_output(["ps", "-A", "-o", "pid=", "-o", "ppid="]), os.getpid())
