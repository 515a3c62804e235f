"""Where Ray runs the verification's work: the nodes Ray holds alive, and one node for each task or actor.

Shared with ``saf launch``'s driver (saf/node_scripts/launch_driver.py), which places its ranks
the same way.
"""

from __future__ import annotations

import time


def on_node(ray, node_id: str):
    """Run on that node and nowhere else: a hard affinity (soft=False), so a figure is the node's own.

    Needs ``ray.util.scheduling_strategies`` imported (the caller imports it with ray)."""
    return ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def alive_by_ip(ray_nodes: list[dict]) -> dict[str, list[str]]:
    """The ids of the nodes Ray holds alive, by their address."""
    alive: dict[str, list[str]] = {}
    for node in ray_nodes:
        if node.get("Alive"):
            alive.setdefault(node["NodeManagerAddress"], []).append(node["NodeID"])
    return alive


def wait_for_nodes(ray, ips: list[str], patience: float) -> dict[str, list[str]]:
    """Alive node ids by ip, waiting up to ``patience`` s until every ip has exactly one. Ray that
    was just (re)started by the deploy takes a few seconds to join, and a raylet that died stays
    alive in the GCS beside its restarted successor until its health checks run out (tens of
    seconds): a task placed on that id would be unschedulable."""
    deadline = time.monotonic() + patience
    while True:
        alive = alive_by_ip(ray.nodes())
        if all(len(alive.get(ip, [])) == 1 for ip in ips) or time.monotonic() > deadline:
            return alive
        time.sleep(1)


def actor_on_each_node(ray, cls, nodes: dict, **options) -> dict:
    """One ``cls`` actor placed on each of ``nodes`` (name -> {"node_id": ...}), started now (not
    waited for): the actor handles by name."""
    actor = ray.remote(num_cpus=0, **options)(cls)
    return {
        name: actor.options(scheduling_strategy=on_node(ray, node["node_id"])).remote() for name, node in nodes.items()
    }
