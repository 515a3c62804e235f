"""The verification's judgement: what the driver observed on every node, judged against what the
cluster file expects.

Plain Python (standard library only), run on the control machine by the operation; the driver
(``node/driver.py``) only observes. Every problem is worded here, with its likely cause and fix, and
:func:`problems` is the one place the report's problems are flattened into a list.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

NOT_ALIVE_FIX = "check its Ray service (systemctl status saf-ray-worker / launchctl print)"
DTYPES = ("f32", "f16")
CPU_ON_A_MAC = (
    "MLX computed on the CPU, not the Mac's GPU: Metal was not available to it (a virtual machine, a macOS "
    "older than the pinned MLX supports, or the default device set to cpu); check in the venv with "
    "`python -c 'import mlx.core as mx; print(mx.metal.is_available())'` and run SAF on the Mac itself"
)
CPU_ON_CUDA = (
    "MLX computed on the CPU although the node has an NVIDIA GPU (nvidia-smi) and MLX's CUDA build: MLX "
    "found no usable GPU (an NVIDIA driver older than the CUDA mlx-cuda is built for, or CUDA_VISIBLE_DEVICES "
    "hiding it); check `nvidia-smi` and `python -c 'import mlx.core as mx; print(mx.default_device())'` "
    "in the venv, update the driver, then re-run the deploy"
)
NOTHING_OBSERVED = (
    "the verification driver reported no node and no problem of its own: nothing was verified; run `saf verify` "
    "to see the driver's output, and check that Ray is running on the head"
)
UNNAMED_FAILURE = (
    "the verification report says it failed but names no problem: it cannot be trusted; run "
    "`saf verify` again and read its JSON report"
)


def judge(
    observed: dict[str, Any], expect: dict[str, Any], stray_check: Callable[[dict], list[str]] | None = None
) -> dict[str, Any]:
    """The report: the observed nodes, each with its ``problems`` and ``ok``, and the cluster's ``ok``.

    ``stray_check``: a node's problems from the Ray census the driver brought back (Ray that is not
    SAF's service's: saf/verify/strays.py); the census itself is left out of the report."""
    report: dict[str, Any] = {
        "ok": False,
        "address": observed.get("address"),
        "nodes": [{**node, "problems": []} for node in observed.get("nodes", [])],
        "problems": list(observed.get("problems", [])),
        "transfer": [],
    }
    if observed.get("step_seconds"):
        report["step_seconds"] = observed["step_seconds"]  # where the verification's time went
    if expect.get("protection"):
        report["protection"] = expect["protection"]  # what keeps strangers from Ray's job API (saf.auth.protection)
    nodes = {node["name"]: node for node in report["nodes"]}
    if not nodes:  # the driver never got as far as the nodes: its own problem says why, or this one does
        report["problems"] = report["problems"] or [NOTHING_OBSERVED]
        return report
    check_alive(nodes, report.get("address"))
    check_versions(nodes, expect)
    check_devices(nodes)
    check_figures(nodes)
    check_speed(nodes, expect["slow_ratio"])
    check_paths(nodes, expect["mtu"])
    check_transfers(nodes, report)
    if "collective" in observed:
        report["collective"] = check_collective(observed["collective"], nodes, expect, report)
    for node in nodes.values():
        if stray_check is not None:
            node["problems"].extend(stray_check(node))
        node.pop("census", None)
        node["ok"] = not node["problems"]
    report["ok"] = bool(report["nodes"]) and all(node["ok"] for node in nodes.values()) and not report["problems"]
    return report


def problems(report: dict[str, Any]) -> list[str]:
    """Every problem of the report: the cluster's own first, then each node's, in node order."""
    return [*report.get("problems", []), *(p for node in report.get("nodes", []) for p in node.get("problems", []))]


def passed(report: dict[str, Any]) -> bool:
    """True only for a report that says ok and holds no problem (a missing or empty one fails)."""
    return report.get("ok") is True and not problems(report)


def failure_reasons(report: dict[str, Any]) -> list[str]:
    """Why the report fails, never empty for one that does ([] for one that passes): its problems,
    or, for a report that does not pass yet names none, that it names none."""
    if passed(report):
        return []
    return problems(report) or [UNNAMED_FAILURE]


def check_alive(nodes: dict[str, dict], address: str | None) -> None:
    for node in nodes.values():
        if not node.get("alive"):
            node["problems"].append(
                f"{node['name']} ({node['ip']}) is not alive in the Ray cluster at {address}: " + NOT_ALIVE_FIX
            )
        elif node.get("ray_nodes", 1) > 1:
            node["problems"].append(
                f"{node['name']} ({node['ip']}) has {node['ray_nodes']} Ray nodes alive at its address: a second Ray "
                "runs there beside SAF's service (one started by hand?); find it with `ps -ef | grep -e raylet "
                "-e 'ray start'`, stop it, and re-run the deploy"
            )
        elif node.get("probe_error"):
            node["problems"].append(f"{node['name']}: {node['probe_error']}")


def check_versions(nodes: dict[str, dict], expect: dict[str, Any]) -> None:
    for node in nodes.values():
        if "python" not in node:
            continue
        for key in ("python", "ray", "mlx"):
            if node[key] != expect["pins"][key]:
                node["problems"].append(f"{node['name']} runs {key} {node[key]}, not the pinned {expect['pins'][key]}")
        if not node["mlx_correct"]:
            node["problems"].append(f"{node['name']}: MLX's matmul disagrees with NumPy's")


def expected_device(node: dict[str, Any]) -> str:
    """``gpu`` where MLX must compute on a GPU: a Mac, or a Linux node with nvidia-smi and MLX's CUDA build."""
    return "gpu" if node.get("os") == "darwin" or (node.get("nvidia_smi") and node.get("mlx_cuda")) else "cpu"


def check_devices(nodes: dict[str, dict]) -> None:
    for node in nodes.values():
        if "device" not in node:
            continue
        node["expected_device"] = expected_device(node)
        if node["expected_device"] == "gpu" and node["device"] != "gpu":
            cause = CPU_ON_A_MAC if node.get("os") == "darwin" else CPU_ON_CUDA
            node["problems"].append(f"{node['name']}: {cause}")


def check_figures(nodes: dict[str, dict]) -> None:
    """A figure that is missing or rounds to zero is a failure: the product did not really run."""
    for node in nodes.values():
        if "device" not in node:
            continue
        for dtype in DTYPES:
            figure = node.get(f"gflops_{dtype}")
            if not isinstance(figure, (int, float)) or round(figure, 1) <= 0:
                node["problems"].append(
                    f"{node['name']} measured {figure} GFLOPS in {dtype}: MLX's matmul gave no "
                    "throughput (see the node's MLX installation)"
                )


def check_speed(nodes: dict[str, dict], slow_ratio: float) -> None:
    """A node below ``slow_ratio`` of the median of its peers on the same hardware, f32 and f16 each."""
    for dtype in DTYPES:
        key = f"gflops_{dtype}"
        measured = [n for n in nodes.values() if isinstance(n.get(key), (int, float)) and n[key] > 0]
        for node in measured:
            peers = [p[key] for p in measured if p is not node and p["hardware"] == node["hardware"]]
            if peers and node[key] < slow_ratio * statistics.median(peers):
                node["problems"].append(
                    f"{node['name']} is slow: {node[key]} GFLOPS ({dtype}) against a median of "
                    f"{statistics.median(peers):.1f} on its peers of the same hardware (thermals, background "
                    "load, power settings?)"
                )


def check_paths(nodes: dict[str, dict], mtu: int) -> None:
    by_ip = {node["ip"]: node["name"] for node in nodes.values()}
    for node in nodes.values():
        if node.get("path_error"):
            node["mtu_path_ok"] = False
            node["problems"].append(f"{node['name']}: the path check did not finish ({node['path_error']})")
            continue
        if "paths" not in node:
            continue
        node["mtu_path_ok"] = all(path["ok"] for path in node["paths"].values())
        for ip, path in node["paths"].items():
            if not path["ok"]:
                node["problems"].append(
                    f"{mtu}-byte frames do not pass from {node['name']} to {by_ip.get(ip, ip)} "
                    f"({ip}): {_largest_passing(path)}; check the MTU of both nodes' interfaces "
                    "and of the switch ports between them"
                )


def _largest_passing(path: dict[str, Any]) -> str:
    largest = path["largest"]
    if largest is None:
        return "no UDP datagram passes at all (a firewall between them?)"
    return (
        f"the largest don't-fragment payload that passes is {largest} bytes "
        f"(an MTU of {largest + path['headers']} on the way)"
    )


def check_transfers(nodes: dict[str, dict], report: dict[str, Any]) -> None:
    head = next((n for n in nodes.values() if n["role"] == "head" and n.get("alive")), None)
    if head is None:
        report["problems"].append("the head is not alive: no transfer or throughput check")
        return
    for node in nodes.values():
        transfer = node.get("transfer")
        if transfer:
            intact = transfer["sent"] == transfer["received"]
            report["transfer"].append(
                {
                    "from": head["name"],
                    "to": node["name"],
                    "mb": transfer["mb"],
                    "seconds": transfer["seconds"],
                    "intact": intact,
                }
            )
            if not intact:
                node["problems"].append(f"an object sent from {head['name']} to {node['name']} arrived altered")
        if node.get("transfer_error"):
            node["problems"].append(f"transfer {head['name']} -> {node['name']} failed: {node['transfer_error']}")


RING_FIX = (
    "a firewall between them, or the port taken? with `firewall: true`, run the deploy without --limit "
    "so that every node admits every peer"
)


def check_collective(
    observed: dict[str, Any], nodes: dict[str, dict], expect: dict[str, Any], report: dict[str, Any]
) -> dict[str, Any]:
    """The MLX collective: every rank joined, all_sum right, and bus bandwidth per size (algorithm
    bandwidth x 2(n-1)/n, from the slowest rank's time). Each problem goes to the node it names
    (or to the cluster's), and is listed in the collective's own ``problems`` too."""
    ranks = list(observed.get("ranks", []))
    collective = {
        "backend": observed.get("backend"),
        "ranks": len(ranks),
        "ok": False,
        "busbw_gbyte_s": {},
        "problems": [],
        "seconds": observed.get("seconds"),
        "reach_seconds": observed.get("reach_seconds"),
    }

    def fail(name: str | None, problem: str) -> None:
        collective["problems"].append(problem)
        (nodes[name]["problems"] if name in nodes else report["problems"]).append(problem)

    if observed.get("error"):
        fail(None, f"the MLX collective did not run: {observed['error']}")
    ports = {name: expect["collective"]["port"] + index for index, name in enumerate(ranks)}
    for name, why in observed.get("taken", {}).items():
        fail(name, f"{name}: the MLX collective could not start: {why}; free it, or move mlx_ring_port")
    for name, peers in observed.get("unreachable", {}).items():
        for peer in (p for p in peers if p not in observed.get("taken", {})):  # a taken port is named once, above
            fail(name, f"{name} cannot reach {peer}'s MLX ring port ({nodes[peer]['ip']}:{ports[peer]}): {RING_FIX}")
    results = observed.get("results", {})
    for name in ranks:
        if name in results:
            for problem in _rank_problems(name, results[name], len(ranks)):
                fail(name, problem)
    complete = len(ranks) >= 2 and all(name in results for name in ranks)
    if complete and not collective["problems"]:
        collective["busbw_gbyte_s"] = bus_bandwidth(results, len(ranks))
    collective["ok"] = not collective["problems"] and (complete or len(ranks) < 2)
    return collective


def _rank_problems(name: str, result: dict[str, Any], size: int) -> list[str]:
    if "error" in result:
        return [f"{name}: its MLX rank failed in the collective: {result['error']}"]
    if result.get("size") != size:
        return [f"{name}: its MLX rank joined a group of {result.get('size')}, not the {size} ranks of the cluster"]
    expected = size * (size + 1) / 2  # rank r adds r + 1
    wrong = (
        [f"all_sum gave {result['sums']}, not {expected:g} everywhere"]
        if any(value != expected for value in result.get("sums") or [None])
        else []
    )
    wrong += [
        f"all_sum of {megabytes} MB of ones gave {ends}, not {size}"
        for megabytes, ends in result.get("ends", {}).items()
        if any(value != size for value in ends)
    ]
    return [f"{name}: the MLX collective is wrong: {'; '.join(wrong)}"] if wrong else []


def bus_bandwidth(results: dict[str, dict], size: int) -> dict[str, float]:
    """GB/s per all_sum size (MB): bytes / the slowest rank's time x 2(n-1)/n, as NCCL's tests define it."""
    figures: dict[str, float] = {}
    measured = [result.get("seconds", {}) for result in results.values()]
    for megabytes in set.intersection(*map(set, measured)) if measured else ():  # sizes every rank timed
        slowest = max(seconds[megabytes] for seconds in measured)
        algorithm = int(megabytes) * (1 << 20) / max(slowest, 1e-9)
        figures[megabytes] = round(algorithm * 2 * (size - 1) / size / 1e9, 3)
    return figures
