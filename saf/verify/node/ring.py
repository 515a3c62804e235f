"""The collective job: one MLX rank per node on MLX's ring backend (rank r on the base port + r), its
ring ports proven reachable from every peer first. Shared with ``saf launch``'s driver
(saf/node_scripts/launch_driver.py), whose ranks use the same hostfile.
"""

from __future__ import annotations

import json
import socket
import statistics
import time

from .netprobe import address_family
from .scheduling import on_node

# Every rank takes part in every operation, so the repeats are fixed, the same on every rank.
COLLECTIVE_REPEATS = {1: 5, 16: 3, 64: 2, 256: 1}  # all_sum size (MB): timed operations, the median is the figure
RING_REACH_S = (
    10.0  # a peer's ring port that accepts no connection within this is unreachable (a node's task may start late)
)
COLLECTIVE_S = 60.0  # every rank has joined and measured within this, or the ranks still out fail by name


def ring_reach(ip: str, port: int, peers: list, patience: float = RING_REACH_S) -> dict:
    """One node's part of the ring check, run on every node at once: hold this rank's ring port
    open while connecting to every peer's (retrying while a peer may not listen yet), until every
    peer is reached and has reached us, or ``patience`` runs out. A blocked port is then named by
    node and peer, instead of hanging MLX's connect. ``peers``: (name, ip, port)."""
    server = socket.socket(address_family(ip), socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind((ip, port))
    except OSError as error:
        server.close()
        return {"taken": f"its ring port {ip}:{port} is taken ({error.strerror or error})", "unreachable": []}
    server.listen(16)
    server.settimeout(0.05)
    waiting = {name: (peer_ip, peer_port) for name, peer_ip, peer_port in peers}
    accepted: list[socket.socket] = []
    deadline = time.monotonic() + patience
    try:
        while (waiting or len(accepted) < len(peers)) and time.monotonic() < deadline:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass
            for name, address in list(waiting.items()):
                try:
                    socket.create_connection(address, timeout=0.2).close()
                    del waiting[name]
                except OSError:
                    continue
    finally:
        for conn in accepted:  # the peer closed first: no TIME_WAIT left on this port to stop MLX binding it
            conn.settimeout(0.5)
            try:
                conn.recv(1)
            except OSError:
                pass
            conn.close()
        server.close()
    return {"taken": "", "unreachable": sorted(waiting)}


def ring_hosts(ips: list, base: int) -> list:
    """MLX_HOSTFILE for the ring backend: rank r's addresses, ``[["ip:base+r"], ...]``."""
    return [[f"{ip}:{base + rank}"] for rank, ip in enumerate(ips)]


def collective_rank(rank: int, hosts: list, repeats: dict, backend: str = "ring") -> dict:
    """One rank of the collective: join the ring, check all_sum (rank r adds r + 1 everywhere),
    then time all_sum at each size (a tiny all_sum first each time, so all ranks start together)."""
    import os
    import tempfile

    import mlx.core as mx

    handle, hostfile = tempfile.mkstemp(prefix="saf-ring-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        json.dump(hosts, out)
    os.environ.update(MLX_RANK=str(rank), MLX_HOSTFILE=hostfile)
    try:
        group = mx.distributed.init(strict=True, backend=backend)

        def all_sum(x):
            total = mx.distributed.all_sum(x, group=group, stream=mx.cpu)
            mx.eval(total)
            return total

        sums = all_sum(mx.full((4,), float(rank + 1))).tolist()
        seconds, last = {}, {}
        for megabytes, count in sorted((int(mb), n) for mb, n in repeats.items()):
            x = mx.ones((megabytes << 18,), dtype=mx.float32)  # 4-byte elements
            mx.eval(x)
            times = []
            for _ in range(count):
                all_sum(mx.zeros((1,)))
                start = time.perf_counter()
                total = all_sum(x)
                times.append(time.perf_counter() - start)
            seconds[str(megabytes)] = statistics.median(times)
            last[str(megabytes)] = [total[0].item(), total[-1].item()]
            del x, total
        return {"rank": rank, "size": group.size(), "sums": sums, "seconds": seconds, "ends": last}
    finally:
        os.unlink(hostfile)


# --- the driver's side ------------------------------------------------------------------------------


def observe_collective(ray, nodes: dict, ring: dict, ranks: dict) -> dict:
    """One MLX rank per live node (cluster-file order): their ring ports proven reachable from every
    peer first, then the ranks run together within COLLECTIVE_S. Raw results; judged on the control side."""
    live = [name for name, node in nodes.items() if node["node_id"]]
    hosts = ring_hosts([nodes[name]["ip"] for name in live], ring["port"])
    observed = {"backend": ring["backend"], "ranks": live, "results": {}, "taken": {}, "unreachable": {}}
    if len(live) < 2:
        return observed
    started = time.monotonic()
    try:
        reachable = _ring_ports_reachable(ray, nodes, live, ring["port"], observed)
        observed["reach_seconds"] = round(time.monotonic() - started, 2)
        if reachable:
            _run_ranks(ray, ranks, live, hosts, ring["backend"], observed)
            for name in live:
                if name not in ranks:
                    nodes[name]["probe_error"] = "not probed: its agent was stopped, stuck in the collective"
    except Exception as error:  # noqa: BLE001 - a node lost on the way: no collective, said why
        observed["error"] = (
            f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
            if str(error)
            else type(error).__name__
        )
    observed["seconds"] = round(time.monotonic() - started, 2)
    return observed


def _run_ranks(ray, ranks: dict, live: list, hosts: list, backend: str, observed: dict) -> None:
    pending = {
        ranks[name].collective_rank.remote(index, hosts, COLLECTIVE_REPEATS, backend): name
        for index, name in enumerate(live)
    }
    done, late = ray.wait(list(pending), num_returns=len(pending), timeout=COLLECTIVE_S)
    for ref in done:
        try:
            observed["results"][pending[ref]] = ray.get(ref)
        except Exception as error:  # noqa: BLE001 - a rank's failure is its node's problem
            lines = str(error).strip().splitlines() or [type(error).__name__]
            observed["results"][pending[ref]] = {"error": lines[-1][:300]}
    for ref in late:  # its agent is stuck in MLX: killed, so its node is not probed in that state
        observed["results"][pending[ref]] = {"error": f"did not finish within {COLLECTIVE_S:.0f} s"}
        ray.kill(ranks.pop(pending[ref]))


def _ring_ports_reachable(ray, nodes: dict, live: list, base: int, observed: dict) -> bool:
    """Every rank's node holds its port and connects to every other's, all at once (ring_reach)."""
    check = ray.remote(num_cpus=0)(ring_reach)
    ports = {name: base + index for index, name in enumerate(live)}
    pending = {
        name: check.options(scheduling_strategy=on_node(ray, nodes[name]["node_id"])).remote(
            nodes[name]["ip"], ports[name], [(peer, nodes[peer]["ip"], ports[peer]) for peer in live if peer != name]
        )
        for name in live
    }
    for name, ref in pending.items():
        answer = ray.get(ref, timeout=30 + RING_REACH_S)
        if answer["taken"]:
            observed["taken"][name] = answer["taken"]
        if answer["unreachable"]:
            observed["unreachable"][name] = answer["unreachable"]
    return not observed["taken"] and not observed["unreachable"]
