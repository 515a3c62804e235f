"""The verification driver: run on a cluster node with the venv's Python; prints what it observed.

    python job.py --address 10.0.0.1:6380 --expect '<json>' --timeout 120

Self-contained on purpose (standard library, ray, mlx, numpy; nothing of saf): it is sent to the
node as is. It only observes, as one JSON line; saf/verify/judgement.py judges it on the control
machine. Every wait is bounded; a node that does not answer is reported, never a hang.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback

MATMUL_SIZE = 1024
REPEATS = 7
TRANSFER_MB = 64
TCP_SECONDS = 2.0


# --- what runs on each node -------------------------------------------------------------------


def _cpu_model() -> str:
    if sys.platform == "darwin":
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        return out.stdout.strip()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(device) -> str:
    """``gpu`` or ``cpu`` (``Device(gpu, 0)`` in MLX's own words)."""
    kind = getattr(device, "type", None)
    return getattr(kind, "name", None) or str(device)


def _timed_matmul(mx, dtype) -> float:
    """Median GFLOPS of an n x n matmul: warmed up, synchronised with mx.eval, repeated."""
    a = mx.random.normal((MATMUL_SIZE, MATMUL_SIZE)).astype(dtype)
    b = mx.random.normal((MATMUL_SIZE, MATMUL_SIZE)).astype(dtype)
    mx.eval(a, b)
    for _ in range(2):  # warm-up: kernel compilation, caches, clocks
        mx.eval(a @ b)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        mx.eval(a @ b)  # forces the lazy computation to finish before the clock stops
        times.append(time.perf_counter() - start)
    return 2 * MATMUL_SIZE ** 3 / statistics.median(times) / 1e9


def node_probe() -> dict:
    """Identity, versions, MLX correctness against NumPy, and matmul throughput on this node."""
    import importlib.metadata as metadata

    import mlx.core as mx
    import numpy as np
    import ray

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 64), dtype=np.float32), rng.standard_normal((64, 64), dtype=np.float32)
    product = np.array(mx.array(a) @ mx.array(b))
    correct = bool(np.allclose(product, a @ b, rtol=1e-4, atol=1e-3))
    return {
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "mlx": metadata.version("mlx"),
        "device": _device_name(mx.default_device()),
        "hardware": f"{_cpu_model()} / {_device_name(mx.default_device())}",
        "mlx_correct": correct,
        "gflops_f32": round(_timed_matmul(mx, mx.float32), 1),
        "gflops_f16": round(_timed_matmul(mx, mx.float16), 1),
    }


def _ping_df(ip: str, payload: int) -> bool:
    if sys.platform == "darwin":
        argv = ["ping", "-D", "-s", str(payload), "-c", "1", "-t", "2", ip]
    else:
        argv = ["ping", "-M", "do", "-s", str(payload), "-c", "1", "-W", "2", ip]
    return subprocess.run(argv, capture_output=True).returncode == 0


def path_probe(peers: list[str], mtu: int) -> dict:
    """A don't-fragment ping of MTU-28 bytes to each peer; on failure, the largest that passes."""
    results = {}
    for ip in peers:
        payload = mtu - 28
        if _ping_df(ip, payload):
            results[ip] = {"ok": True, "largest": payload}
            continue
        low, high = 0, payload  # bisection: low passes (or 0), high fails
        if not _ping_df(ip, 0):
            results[ip] = {"ok": False, "largest": None}
            continue
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if _ping_df(ip, middle) else (low, middle)
        results[ip] = {"ok": False, "largest": low}
    return results


def interface_of(ip_addr_json: str, ip: str) -> str | None:
    """Linux: the interface carrying ``ip``, from ``ip -j addr``."""
    for link in json.loads(ip_addr_json or "[]"):
        if any(address.get("local") == ip for address in link.get("addr_info", [])):
            return link.get("ifname")
    return None


def speed_from_ifconfig(ifconfig: str, ip: str) -> float | None:
    """macOS: the negotiated speed (Gbit/s) of the interface carrying ``ip``, from ``ifconfig``'s
    ``media: autoselect (10Gbase-T <full-duplex>)``; None for a tunnel or Wi-Fi (no such line)."""
    blocks, current = [], []
    for line in ifconfig.splitlines():
        if line and not line[0].isspace() and current:
            blocks.append(current)
            current = []
        current.append(line)
    blocks.append(current)
    for block in blocks:
        text = "\n".join(block)
        if f"inet {ip} " in text or text.rstrip().endswith(f"inet {ip}"):
            found = re.search(r"media:.*?\((\d+(?:\.\d+)?)(G?)[bB]ase", text)  # 10Gbase-T, 1000baseT, 2500Base-T
            if found:
                return float(found.group(1)) / (1 if found.group(2) else 1000)
    return None


def link_speed_gbit(ip: str) -> float | None:
    """The speed of the link carrying ``ip`` on this node, in Gbit/s, where the OS reports one."""
    try:
        if sys.platform == "darwin":
            return speed_from_ifconfig(subprocess.run(["ifconfig"], capture_output=True, text=True,
                                                      timeout=5).stdout, ip)
        name = interface_of(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True,
                                           timeout=5).stdout, ip)
        if name is None:
            return None
        with open(f"/sys/class/net/{name}/speed") as speed:  # Mbit/s; -1 or an error when unknown
            megabits = int(speed.read().strip())
        return megabits / 1000 if megabits > 0 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def make_payload(megabytes: int):
    import numpy as np

    return np.random.default_rng(1).integers(0, 255, size=megabytes * 1024 * 1024, dtype=np.uint8)


def checksum(array) -> str:
    import hashlib

    return hashlib.sha256(array.tobytes()).hexdigest()


class TcpSink:
    """A TCP receiver on a node's cluster ip: counts what a sender pushes for a while."""

    def listen(self, ip: str) -> int:
        self.server = socket.socket()
        self.server.bind((ip, 0))
        self.server.listen(1)
        self.server.settimeout(15)
        self.received = 0
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()
        return self.server.getsockname()[1]

    def _receive(self) -> None:
        try:
            conn, _ = self.server.accept()
            conn.settimeout(10)
            with conn:
                while True:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        break
                    self.received += len(chunk)
        except OSError:
            pass

    def received_bytes(self) -> int:
        self.thread.join(timeout=15)
        return self.received


def tcp_send(ip: str, port: int, seconds: float) -> dict:
    block = b"\0" * (1 << 20)
    sent = 0
    with socket.create_connection((ip, port), timeout=10) as conn:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.sendall(block)
            sent += len(block)
        elapsed = time.perf_counter() - start
    return {"bytes": sent, "seconds": elapsed}


# --- the driver -------------------------------------------------------------------------------


class Deadline(Exception):
    pass


def pinned(ray, node_id: str):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def run(address: str, expect: dict, timeout: float) -> dict:
    """What the cluster shows, node by node (judged on the control machine: saf/verify/judgement.py)."""
    import ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    alive = _wait_for_nodes(ray, [n["ip"] for n in expect["nodes"]], timeout / 2)
    nodes = {n["name"]: {**n, "node_id": alive.get(n["ip"])} for n in expect["nodes"]}
    for node in nodes.values():
        node["alive"] = node["node_id"] is not None

    probe = ray.remote(num_cpus=0)(node_probe)
    for node in nodes.values():  # one node at a time: throughput figures must not share the machine
        if node["node_id"] is None:
            continue
        try:
            node.update(ray.get(probe.options(scheduling_strategy=pinned(ray, node["node_id"])).remote(),
                                timeout=timeout))
        except ray.exceptions.GetTimeoutError:
            node["probe_error"] = f"did not run its MLX job within {timeout:.0f} s"
        except Exception as error:  # noqa: BLE001 - any failure of the job is the node's problem
            node["probe_error"] = f"the MLX job failed: {str(error).splitlines()[0][:300]}"

    _observe_paths(ray, nodes, expect["mtu"], timeout)
    _observe_transfers(ray, nodes, timeout)
    for node in nodes.values():
        node.pop("node_id", None)
    return {"address": address, "nodes": list(nodes.values()), "problems": []}


def _wait_for_nodes(ray, ips: list[str], patience: float) -> dict:
    """Alive nodes by ip, waiting up to ``patience`` s for all: Ray that was just (re)started by
    the deploy takes a few seconds to join."""
    deadline = time.monotonic() + patience
    while True:
        alive = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        if all(ip in alive for ip in ips) or time.monotonic() > deadline:
            return alive
        time.sleep(1)


def _observe_paths(ray, nodes: dict, mtu: int, timeout: float) -> None:
    ips = [n["ip"] for n in nodes.values()]
    probe = ray.remote(num_cpus=0)(path_probe)
    pending = {
        name: probe.options(scheduling_strategy=pinned(ray, node["node_id"])).remote(
            [ip for ip in ips if ip != node["ip"]], mtu)
        for name, node in nodes.items() if node["node_id"]
    }
    for name, ref in pending.items():
        try:
            nodes[name]["paths"] = ray.get(ref, timeout=timeout)
        except Exception as error:  # noqa: BLE001
            nodes[name]["path_error"] = type(error).__name__


def _observe_transfers(ray, nodes: dict, timeout: float) -> None:
    head = next((n for n in nodes.values() if n["role"] == "head" and n["node_id"]), None)
    if head is None:
        return
    make = ray.remote(num_cpus=0)(make_payload)
    digest = ray.remote(num_cpus=0)(checksum)
    sink_class = ray.remote(num_cpus=0, max_concurrency=2)(TcpSink)
    sender = ray.remote(num_cpus=0)(tcp_send)
    link = ray.remote(num_cpus=0)(link_speed_gbit)
    for node in nodes.values():
        if node is head or not node["node_id"]:
            continue
        try:
            payload = make.options(scheduling_strategy=pinned(ray, head["node_id"])).remote(TRANSFER_MB)
            expected = digest.options(scheduling_strategy=pinned(ray, head["node_id"])).remote(payload)
            start = time.perf_counter()
            received = digest.options(scheduling_strategy=pinned(ray, node["node_id"])).remote(payload)
            node["transfer"] = {"mb": TRANSFER_MB, "received": ray.get(received, timeout=timeout),
                                "sent": ray.get(expected, timeout=timeout),
                                "seconds": round(time.perf_counter() - start, 3)}
            sink = sink_class.options(scheduling_strategy=pinned(ray, node["node_id"])).remote()
            port = ray.get(sink.listen.remote(node["ip"]), timeout=timeout)
            sent = ray.get(sender.options(scheduling_strategy=pinned(ray, head["node_id"])).remote(
                node["ip"], port, TCP_SECONDS), timeout=timeout)
            got = ray.get(sink.received_bytes.remote(), timeout=timeout)
            node["gbit_s"] = round(got * 8 / sent["seconds"] / 1e9, 2)
            speeds = [ray.get(link.options(scheduling_strategy=pinned(ray, end["node_id"])).remote(end["ip"]),
                              timeout=timeout) for end in (head, node)]
            node["link_gbit_s"] = min(speeds) if None not in speeds else None  # the slower end bounds it
            ray.kill(sink)
        except Exception as error:  # noqa: BLE001
            node["transfer_error"] = str(error).splitlines()[0][:200]


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
        observed = run(args.address, expect, args.timeout)
    except Deadline:
        observed = {"nodes": [], "problems": [f"the verification did not finish within "
                                                         f"{args.timeout * 3 + 60:.0f} s"]}
    except Exception as error:  # noqa: BLE001 - the observations must always be printed
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        observed = {"nodes": [], "problems": [f"the verification driver failed: {last[:500]}"]}
    print("SAF-VERIFY " + json.dumps(observed), flush=True)


if __name__ == "__main__":
    main()
