"""The verification driver: run on a cluster node with the venv's Python; prints what it observed.

    python -c "$(saf.verify.shipping.driver_program())" --address 10.0.0.1:6380 --expect '<json>' --timeout 120

It runs the node-side jobs of this package (transfer, netprobe, ring, measure, census) on every
node through Ray and only observes, as one JSON line; saf/verify/judgement.py judges it on the
control machine. Every wait is bounded; a node that does not answer is reported, never a hang.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback

from . import census, measure, netprobe, ring, transfer
from .agent import NodeAgent
from .scheduling import actor_on_each_node, wait_for_nodes


class Deadline(Exception):
    pass


def observe_cluster(address: str, expect: dict, timeout: float, ray=None) -> dict:
    """What the cluster shows, node by node (judged on the control machine: saf/verify/judgement.py).

    ``ray`` is the ray module (tests pass a stand-in)."""
    if ray is None:
        ray = _import_ray()

    steps: dict = {}  # seconds by step, for the report
    started = time.monotonic()
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    alive = wait_for_nodes(ray, [n["ip"] for n in expect["nodes"]], timeout / 2)
    steps["connect"] = round(time.monotonic() - started, 2)
    census_commands = {n["name"]: n["census"] for n in expect["nodes"] if n.get("census")}
    nodes = {
        n["name"]: {**{k: v for k, v in n.items() if k != "census"}, "ray_nodes": len(alive.get(n["ip"], []))}
        for n in expect["nodes"]
    }
    for node in nodes.values():
        node["alive"] = node["ray_nodes"] > 0
        # two raylets on one address: which one runs a placed task is anyone's guess, so none is probed
        node["node_id"] = alive[node["ip"]][0] if node["ray_nodes"] == 1 else None

    # One agent process per node starts now, MLX imported while the network is checked: a probe or a
    # rank then pays no process start. What needs no quiet machine runs first, side by side where
    # the figures allow; then the throughput probes, one node at a time; the census last.
    reachable = {name: node for name, node in nodes.items() if node["node_id"]}
    agents = actor_on_each_node(ray, NodeAgent, reachable, max_concurrency=2)
    try:
        _timed(steps, "objects", transfer.observe_objects, ray, nodes, timeout)
        _timed(steps, "paths", netprobe.observe_paths, ray, nodes, agents, expect["mtu"], timeout)
        _timed(steps, "tcp", transfer.observe_tcp, ray, nodes, agents, timeout)
        collective = (
            _timed(steps, "collective", ring.observe_collective, ray, nodes, expect["collective"], agents)
            if expect.get("collective")
            else None
        )
        _timed(steps, "probes", measure.probe_nodes, ray, nodes, agents, expect.get("slow_ratio", 0), timeout)
        # last, on every node at once: a Ray just restarted by the deploy has had the longest to settle
        # (a dashboard agent still starting holds its port before the OS names its process)
        _timed(
            steps,
            "census",
            census.collect_census,
            ray,
            nodes,
            census.start_census(ray, nodes, census_commands),
            timeout,
        )
    finally:
        for agent in agents.values():  # their processes end, MLX's ring sockets with them
            ray.kill(agent)  # killing a killed actor does nothing
    for node in nodes.values():
        node.pop("node_id", None)
    observed = {
        "address": address,
        "nodes": list(nodes.values()),
        "problems": [],
        "driver_pids": census.own_ancestry(),
        "step_seconds": steps,
    }
    if collective is not None:
        observed["collective"] = collective
    return observed


def _import_ray():
    """Ray, with this package pickled by value: on a node it is loaded from the shipped program
    (saf/verify/shipping.py), which no Ray worker can import by name."""
    import ray
    import ray.cloudpickle
    import ray.util.scheduling_strategies  # noqa: F401 - scheduling.on_node reaches it as an attribute

    ray.cloudpickle.register_pickle_by_value(sys.modules[__package__])
    return ray


def _timed(steps: dict, name: str, step, *args):
    """``step(*args)``, its seconds in ``steps[name]``."""
    started = time.monotonic()
    try:
        return step(*args)
    finally:
        steps[name] = round(time.monotonic() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--expect", required=True, help="JSON: nodes [{name, role, ip}], pins, mtu, slow_ratio")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    expect = json.loads(args.expect)

    def out_of_time(signum, frame):
        raise Deadline()

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(args.timeout * 3 + 60))  # the whole run, whatever hangs
    try:
        observed = observe_cluster(args.address, expect, args.timeout)
    except Deadline:
        observed = {"nodes": [], "problems": [f"the verification did not finish within {args.timeout * 3 + 60:.0f} s"]}
    except Exception as error:  # noqa: BLE001 - the observations must always be printed
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        observed = {"nodes": [], "problems": [f"the verification driver failed: {last[:500]}"]}
    finally:
        signal.alarm(0)
    print("SAF-VERIFY " + json.dumps(observed), flush=True)
