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

TRANSFER_MB = 64
DTYPES = ("f32", "f16")
TCP_SECONDS = 1.0  # a second of TCP: slow start is milliseconds of it on a LAN

# Throughput: square products grown from FIRST_SIZE by doubling until a timed step is long enough
# to time well on this device and the rate stops rising, within the budgets and the memory bound.
FIRST_SIZE = 256
LONG_ENOUGH_S = 0.05  # a step this long dwarfs mx.eval's own cost (tens of microseconds on a GPU)
RISING = 1.05  # a size whose rate beats the last by 5% is worth doubling again
GROWTH_BUDGET_S = 1.5  # per dtype, for finding the size
MEASURE_BUDGET_S = 1.5  # per dtype, for the timed steps at that size
WARMUP = 2  # untimed steps first: kernel compilation, caches, clocks
REPEATS = 7  # timed steps at most (3 at least), the median is the figure
MIN_REPEATS = 3
MAX_BATCH = 64  # products in one timed step at most
MAX_SIZE = 16384  # MLX's CUDA backend fails to launch kernels over arrays of 2**30 elements (32768**2)
MEMORY_SHARE = 8  # the operands and products take at most this fraction of the device's memory
DEFAULT_MEMORY = 8 << 30  # when MLX does not say how much the device has

# The path check: a don't-fragment UDP datagram of (mtu - headers) bytes to a peer's echo.
# Not ping: macOS caps raw IP datagrams, ICMP ones included, at net.inet.raw.maxdgram, 8192 bytes
# by default. Source: Apple's xnu (github.com/apple/darwin-xnu), bsd/netinet/raw_ip.c:
# `#define RIPSNDQ 8192`, `rip_sendspace = RIPSNDQ` published as the sysctl net.inet.raw.maxdgram
# ("Maximum outgoing raw IP datagram size") and reserved as every raw socket's send buffer in
# rip_attach (soreserve), so `ping -D -s 8972` fails there whatever the path. UDP's own cap,
# net.inet.udp.maxdgram, is 9216 (bsd/netinet/udp_usrreq.c, `udp_sendspace = 9216`), above the
# 8972 bytes of a 9000 MTU; the probe's socket also raises its send buffer (SO_SNDBUF).
HEADERS = {socket.AF_INET: 28, socket.AF_INET6: 48}  # IP + UDP headers: payload + headers = frame MTU
DONT_FRAGMENT = {  # setsockopt(level, option, value) that forbids fragmenting this socket's datagrams
    ("linux", socket.AF_INET): (socket.IPPROTO_IP, 10, 2),  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
    ("darwin", socket.AF_INET): (socket.IPPROTO_IP, 28, 1),  # IP_DONTFRAG (netinet/in.h)
    ("linux", socket.AF_INET6): (socket.IPPROTO_IPV6, 62, 1),  # IPV6_DONTFRAG (RFC 3542)
    ("darwin", socket.AF_INET6): (socket.IPPROTO_IPV6, 62, 1),
}
# The collective: one MLX rank per node, MLX's ring backend on the cluster ips, rank r on base + r.
# Every rank takes part in every operation, so the repeats are fixed, the same on every rank.
COLLECTIVE_REPEATS = {1: 5, 16: 3, 64: 2, 256: 1}  # all_sum size (MB): timed operations, the median is the figure
RING_REACH_S = 10.0  # a peer's ring port that accepts no connection within this is unreachable (a node's task may start late)
COLLECTIVE_S = 60.0  # every rank has joined and measured within this, or the ranks still out fail by name
TOKEN_BYTES = 8  # the smallest probe: its token, echoed back with the length received
PROBE_ATTEMPTS = 3  # a size fails only when none of its datagrams is echoed
PROBE_WAIT_S = 0.5


# --- what runs on each node -------------------------------------------------------------------


def _cpu_model() -> str:
    if sys.platform == "darwin":
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_kind(device) -> str:
    """``gpu`` or ``cpu`` (``Device(gpu, 0)`` in MLX's own words)."""
    kind = getattr(device, "type", None)
    return getattr(kind, "name", None) or str(device)


def _mlx_device_info(mx) -> dict:
    """MLX's description of its default device: ``mx.device_info()`` (MLX 0.30+, Metal and CUDA),
    else ``mx.metal.device_info()`` (older MLX on a Mac); {} where neither answers."""
    for owner in (mx, getattr(mx, "metal", None)):
        query = getattr(owner, "device_info", None)
        if query is None:
            continue
        try:
            info = query()
        except Exception:  # noqa: BLE001 - a CPU-only MLX has nothing to tell
            continue
        if info:
            return dict(info)
    return {}


def gpu_cores_from_ioreg(ioreg: str) -> int | None:
    """macOS: the GPU's core count from ``ioreg -r -c AGXAccelerator -d 1`` (``"gpu-core-count" = 80``)."""
    found = re.search(r'"gpu-core-count"\s*=\s*(\d+)', ioreg)
    return int(found.group(1)) if found else None


def _command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def device_name(kind: str, info: dict, platform_name: str = sys.platform) -> str:
    """The device by name: the Apple GPU and its cores on a Mac, the NVIDIA name on CUDA, the CPU model."""
    if kind != "gpu":
        return _cpu_model()
    name = str(info.get("device_name") or "")
    if platform_name == "darwin":
        cores = gpu_cores_from_ioreg(_command_output(["ioreg", "-r", "-c", "AGXAccelerator", "-d", "1"]))
        return f"{name or 'Apple GPU'} ({cores}-core GPU)" if cores else (name or "Apple GPU")
    smi = _command_output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]).strip().splitlines()
    return name or (smi[0].strip() if smi else "GPU")


def _has_mlx_cuda() -> bool:
    import importlib.metadata as metadata

    return any((dist.metadata["Name"] or "").lower().replace("_", "-").startswith("mlx-cuda")
               for dist in metadata.distributions())


def device_memory(info: dict) -> int:
    """Bytes of memory the device has, as MLX reports it (Metal: memory_size; CUDA: total_memory)."""
    for key in ("memory_size", "total_memory"):
        if isinstance(info.get(key), int) and info[key] > 0:
            return info[key]
    return DEFAULT_MEMORY


def _operands(mx, n: int, dtype):
    a = mx.random.normal((n, n)).astype(dtype)
    b = mx.random.normal((n, n)).astype(dtype)
    mx.eval(a, b)
    return a, b


def _timed_step(mx, a, b, batch: int, clock) -> float:
    """Seconds for ``batch`` products, mx.eval inside the clock: MLX is lazy, eval makes it compute."""
    start = clock()
    mx.eval(*[a @ b for _ in range(batch)])
    return clock() - start


def _fits(n: int, batch: int, itemsize: int, memory_bound: int) -> bool:
    return (2 + batch) * n * n * itemsize <= memory_bound


def find_size(mx, dtype, itemsize: int, memory_bound: int, clock=time.perf_counter) -> int:
    """The product size that this device computes fastest, found by doubling: a size is tried
    (one untimed step, one timed) while the last was too short to time well or still rising in
    rate, its cost (8x the last step, twice) fits the budget and its operands fit the memory
    bound. Of the sizes within RISING of the best rate, the largest (the best timed) is chosen."""
    began, n, rates = clock(), FIRST_SIZE, {}
    while True:
        a, b = _operands(mx, n, dtype)
        mx.eval(a @ b)
        step = max(_timed_step(mx, a, b, 1, clock), 1e-9)
        rates[n] = 2 * n ** 3 / step
        del a, b
        rising = len(rates) == 1 or rates[n] > RISING * rates[n // 2]
        affordable = clock() - began + 2 * 8 * step <= GROWTH_BUDGET_S
        if (not (step < LONG_ENOUGH_S or rising) or not affordable or 2 * n > MAX_SIZE
                or not _fits(2 * n, 1, itemsize, memory_bound)):
            break
        n *= 2
    return max(size for size, rate in rates.items() if rate * RISING >= max(rates.values()))


def measure_throughput(mx, dtype, itemsize: int, memory_bound: int, clock=time.perf_counter,
                       size: int | None = None) -> dict:
    """Matmul throughput on MLX's default device: at ``size`` when given (the size found on a node of
    the same hardware), else the size found for it; WARMUP untimed steps, several products per
    mx.eval when one is too short to time well (memory allowing), then the median of up to REPEATS
    timed steps (MIN_REPEATS at least) within the budget."""
    n = size or find_size(mx, dtype, itemsize, memory_bound, clock)
    a, b = _operands(mx, n, dtype)
    for _ in range(WARMUP):
        mx.eval(a @ b)
    first = max(_timed_step(mx, a, b, 1, clock), 1e-9)
    batch = 1
    while batch * first < LONG_ENOUGH_S and batch < MAX_BATCH and _fits(n, batch * 2, itemsize, memory_bound):
        batch *= 2
    times, began = [], clock()
    while len(times) < REPEATS and (len(times) < MIN_REPEATS or clock() - began < MEASURE_BUDGET_S):
        times.append(_timed_step(mx, a, b, batch, clock))
    return {"gflops": 2 * n ** 3 * batch / statistics.median(times) / 1e9, "size": n, "batch": batch}


def hardware(mx) -> tuple[str, str, dict]:
    """The device MLX computes on: its kind (gpu, cpu), its name, and what MLX says of it."""
    kind = _device_kind(mx.default_device())
    info = _mlx_device_info(mx) if kind == "gpu" else {}
    return kind, device_name(kind, info), info


def node_probe(sizes: dict | None = None) -> dict:
    """Identity, versions, the device MLX computes on and the one expected, MLX's correctness
    against NumPy, and matmul throughput (float32 and float16) sized to the device, or at ``sizes``
    ({"f32": n, "f16": n}: the sizes found on a node of the same hardware)."""
    import importlib.metadata as metadata
    import shutil

    import mlx.core as mx
    import numpy as np
    import ray

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 64), dtype=np.float32), rng.standard_normal((64, 64), dtype=np.float32)
    product = np.array(mx.array(a) @ mx.array(b))
    correct = bool(np.allclose(product, a @ b, rtol=1e-4, atol=1e-3))
    kind, name, info = hardware(mx)
    bound = device_memory(info) // MEMORY_SHARE
    result = {
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "mlx": metadata.version("mlx"),
        "os": sys.platform,
        "nvidia_smi": shutil.which("nvidia-smi") is not None,
        "mlx_cuda": _has_mlx_cuda(),
        "device": kind,
        "device_name": name,
        "hardware": f"{name} / {kind}",
        "mlx_correct": correct,
    }
    for label, dtype, itemsize in (("f32", mx.float32, 4), ("f16", mx.float16, 2)):
        measured = measure_throughput(mx, dtype, itemsize, bound, size=(sizes or {}).get(label))
        result[f"gflops_{label}"] = round(measured["gflops"], 1)
        result[f"size_{label}"] = measured["size"]
        result[f"batch_{label}"] = measured["batch"]
    return result


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def dont_fragment(platform_name: str, family: int) -> tuple[int, int, int]:
    """The setsockopt arguments that forbid fragmenting a UDP socket's datagrams on this OS."""
    return DONT_FRAGMENT[("darwin" if platform_name == "darwin" else "linux", family)]


class UdpEcho:
    """A UDP responder on a node's cluster ip: answers each datagram with its token and its length."""

    def listen(self, ip: str) -> int:
        self.sock = socket.socket(_family(ip), socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(PROBE_WAIT_S)
        self.closed = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self.sock.getsockname()[1]

    def _serve(self) -> None:
        while not self.closed:
            try:
                data, sender = self.sock.recvfrom(1 << 16)
                self.sock.sendto(data[:TOKEN_BYTES] + len(data).to_bytes(4, "big"), sender)
            except OSError:
                continue

    def close(self) -> None:
        self.closed = True
        self.thread.join(timeout=2 * PROBE_WAIT_S)
        self.sock.close()


def largest_passing(passes, low: int, high: int) -> int | None:
    """The largest size in [low, high) that passes, ``high`` having failed (bisection); None when
    even ``low`` fails."""
    if not passes(low):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if passes(middle):
            low = middle
        else:
            high = middle
    return low


def _echoed(sock: socket.socket, peer: tuple, size: int) -> bool:
    """True when a don't-fragment datagram of ``size`` bytes reaches the peer's echo whole."""
    import os

    for _ in range(PROBE_ATTEMPTS):
        token = os.urandom(TOKEN_BYTES)
        try:
            sock.sendto(token + bytes(size - TOKEN_BYTES), peer)
        except OSError:  # EMSGSIZE: larger than the MTU this host knows for the path
            return False
        deadline = time.monotonic() + PROBE_WAIT_S
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                reply = sock.recv(64)
            except OSError:
                break
            if reply == token + size.to_bytes(4, "big"):
                return True
    return False


def path_probe(peers: list, mtu: int) -> dict:
    """For each peer (ip, echo port): does a don't-fragment datagram filling an ``mtu`` frame pass?
    On failure, the largest payload that does (bisection)."""
    results = {}
    for ip, port in peers:
        family = _family(ip)
        headers = HEADERS[family]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(*dont_fragment(sys.platform, family))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)

            def passes(size: int) -> bool:
                return _echoed(sock, (ip, port), size)

            payload = mtu - headers
            if passes(payload):
                results[ip] = {"ok": True, "largest": payload, "headers": headers}
            else:
                results[ip] = {"ok": False, "largest": largest_passing(passes, TOKEN_BYTES, payload),
                               "headers": headers}
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


def ring_reach(ip: str, port: int, peers: list, patience: float = RING_REACH_S) -> dict:
    """One node's part of the ring check, run on every node at once: hold this rank's ring port
    open while connecting to every peer's (retrying while a peer may not listen yet), until every
    peer is reached and has reached us, or ``patience`` runs out. A blocked port is then named by
    node and peer, instead of hanging MLX's connect. ``peers``: (name, ip, port)."""
    server = socket.socket(_family(ip), socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind((ip, port))
    except OSError as error:
        server.close()
        return {"taken": f"its ring port {ip}:{port} is taken ({error.strerror or error})", "unreachable": []}
    server.listen(16)
    server.settimeout(0.05)
    waiting, accepted = {name: (peer_ip, peer_port) for name, peer_ip, peer_port in peers}, []
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


# --- the driver -------------------------------------------------------------------------------


class Deadline(Exception):
    pass


def pinned(ray, node_id: str):
    """Run on that node and nowhere else: a hard affinity (soft=False), so a figure is the node's own."""
    return ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def run(address: str, expect: dict, timeout: float, ray=None) -> dict:
    """What the cluster shows, node by node (judged on the control machine: saf/verify/judgement.py).

    ``ray`` is the ray module (tests pass a stand-in)."""
    if ray is None:
        import ray
        import ray.util.scheduling_strategies  # noqa: F401 - pinned() reaches it as an attribute

    steps: dict = {}  # seconds by step, for the report
    started = time.monotonic()
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    alive = _wait_for_nodes(ray, [n["ip"] for n in expect["nodes"]], timeout / 2)
    steps["connect"] = round(time.monotonic() - started, 2)
    census_commands = {n["name"]: n["census"] for n in expect["nodes"] if n.get("census")}
    nodes = {n["name"]: {**{k: v for k, v in n.items() if k != "census"}, "ray_nodes": len(alive.get(n["ip"], []))}
             for n in expect["nodes"]}
    for node in nodes.values():
        node["alive"] = node["ray_nodes"] > 0
        # two raylets on one address: which one runs a pinned task is anyone's guess, so none is probed
        node["node_id"] = alive[node["ip"]][0] if node["ray_nodes"] == 1 else None

    # One agent process per node starts now, MLX imported while the network is checked: a probe or a
    # rank then pays no process start. What needs no quiet machine runs first, side by side where
    # the figures allow; then the throughput probes, one node at a time; the census last.
    live = {name: node for name, node in nodes.items() if node["node_id"]}
    agents = _start(ray, NodeAgent, live, max_concurrency=2)
    try:
        _timed(steps, "objects", _observe_objects, ray, nodes, timeout)
        _timed(steps, "paths", _observe_paths, ray, nodes, agents, expect["mtu"], timeout)
        _timed(steps, "tcp", _observe_tcp, ray, nodes, agents, timeout)
        collective = _timed(steps, "collective", _observe_collective, ray, nodes, expect["collective"], agents) \
            if expect.get("collective") else None
        _timed(steps, "probes", _probe_nodes, ray, nodes, agents, expect.get("slow_ratio", 0), timeout)
        # last, on every node at once: a Ray just restarted by the deploy has had the longest to settle
        # (a dashboard agent still starting holds its port before the OS names its process)
        _timed(steps, "census", _collect_census, ray, nodes, _start_census(ray, nodes, census_commands), timeout)
    finally:
        for agent in agents.values():  # their processes end, MLX's ring sockets with them
            ray.kill(agent)  # killing a killed actor does nothing
    for node in nodes.values():
        node.pop("node_id", None)
    observed = {"address": address, "nodes": list(nodes.values()), "problems": [], "driver_pids": own_ancestry(),
                "step_seconds": steps}
    if collective is not None:
        observed["collective"] = collective
    return observed


def _timed(steps: dict, name: str, step, *args):
    """``step(*args)``, its seconds in ``steps[name]``."""
    started = time.monotonic()
    try:
        return step(*args)
    finally:
        steps[name] = round(time.monotonic() - started, 2)


def _import_mlx() -> None:
    import mlx.core  # noqa: F401


class NodeAgent:
    """What the driver keeps on a node: its UDP echo, its TCP sink and its MLX probe, in one process
    (a Ray worker process costs about a CPU-second to start). MLX is imported in the background from
    the start, so the probe pays neither the process nor the import."""

    def __init__(self) -> None:
        self.echo, self.sink = UdpEcho(), TcpSink()
        self.mlx = threading.Thread(target=_import_mlx, daemon=True)
        self.mlx.start()

    def udp_listen(self, ip: str) -> int:
        return self.echo.listen(ip)

    def tcp_listen(self, ip: str) -> int:
        return self.sink.listen(ip)

    def received_bytes(self) -> int:
        return self.sink.received_bytes()

    def hardware(self) -> str:
        """What the probe will report as ``hardware``: nodes of the same are measured at the same sizes."""
        self.mlx.join()
        import mlx.core as mx

        kind, name, _ = hardware(mx)
        return f"{name} / {kind}"

    def node_probe(self, sizes: dict | None = None) -> dict:
        self.mlx.join()
        return node_probe(sizes)

    def collective_rank(self, rank: int, hosts: list, repeats: dict, backend: str) -> dict:
        """This node's rank of the collective; its ring sockets close when the driver kills the agent."""
        self.mlx.join()
        return collective_rank(rank, hosts, repeats, backend)


def _start(ray, cls, live: dict, **options) -> dict:
    """One ``cls`` actor pinned to each live node, started now (not waited for): by name."""
    actor = ray.remote(num_cpus=0, **options)(cls)
    return {name: actor.options(scheduling_strategy=pinned(ray, node["node_id"])).remote()
            for name, node in live.items()}


def _probe_nodes(ray, nodes: dict, agents: dict, slow_ratio: float, timeout: float) -> None:
    """Each node's probe, one node at a time (throughput figures must not share the machine). The
    first node of each hardware finds its sizes; the others of that hardware are measured at them:
    the same work on the same device, and no second search."""
    kinds = _hardware_of(ray, agents, timeout)
    found: dict = {}  # hardware -> (sizes, the node that found them)
    for name, node in nodes.items():
        if name not in agents:
            continue
        sizes, finder = found.get(kinds.get(name), (None, None))
        _probe(ray, agents[name], node, timeout, sizes)
        if finder:
            node["sized_by"] = finder
        elif kinds.get(name) and all(isinstance(node.get(f"size_{dtype}"), int) for dtype in DTYPES):
            found[kinds[name]] = ({dtype: node[f"size_{dtype}"] for dtype in DTYPES}, name)
    for node in outliers(nodes, slow_ratio):  # measured again before it can be called slow
        first = {key: node[key] for key in node if key.startswith(("gflops_", "size_", "batch_"))}
        _probe(ray, agents[node["name"]], node, timeout, {dtype: node.get(f"size_{dtype}") for dtype in DTYPES})
        node["reprobed"] = True
        for dtype in DTYPES:  # the better of the two measurements, each with its own size
            if (first.get(f"gflops_{dtype}") or 0) > (node.get(f"gflops_{dtype}") or 0):
                node.update({key: first[key] for key in first if key.endswith(dtype)})


def _hardware_of(ray, agents: dict, timeout: float) -> dict:
    """Each agent's hardware, asked of all at once; a node that does not say has none."""
    pending = {name: agent.hardware.remote() for name, agent in agents.items()}
    kinds = {}
    for name, ref in pending.items():
        try:
            kind = ray.get(ref, timeout=timeout)
        except Exception:  # noqa: BLE001 - its probe will say what is wrong
            continue
        if isinstance(kind, str):
            kinds[name] = kind
    return kinds


def _probe(ray, agent, node: dict, timeout: float, sizes: dict | None = None) -> None:
    """The node's MLX job, on its agent (at ``sizes`` if given): its answer into ``node``, or why there is none."""
    started = time.monotonic()
    try:
        node.update(ray.get(agent.node_probe.remote(sizes), timeout=timeout))
        node["probe_seconds"] = round(time.monotonic() - started, 1)
    except ray.exceptions.GetTimeoutError:
        node["probe_error"] = f"did not run its MLX job within {timeout:.0f} s"
    except Exception as error:  # noqa: BLE001 - any failure of the job is the node's problem
        node["probe_error"] = f"the MLX job failed: {str(error).splitlines()[0][:300]}"


def outliers(nodes: dict, slow_ratio: float) -> list[dict]:
    """Nodes below ``slow_ratio`` of the median of their same-hardware peers, in any dtype: a
    moment's background load (a neighbour's restart, an indexer) must not make a node slow, so
    these are measured once more; the judgement (judgement.check_speed) has the last word."""
    slow = []
    for node in nodes.values():
        for dtype in DTYPES:
            key = f"gflops_{dtype}"
            peers = [p[key] for p in nodes.values() if p is not node and p.get("hardware") == node.get("hardware")
                     and isinstance(p.get(key), (int, float)) and p[key] > 0]
            if isinstance(node.get(key), (int, float)) and peers and node[key] < slow_ratio * statistics.median(peers):
                slow.append(node)
                break
    return slow


def alive_by_ip(ray_nodes: list[dict]) -> dict[str, list[str]]:
    """The ids of the nodes Ray holds alive, by their address."""
    alive: dict[str, list[str]] = {}
    for node in ray_nodes:
        if node.get("Alive"):
            alive.setdefault(node["NodeManagerAddress"], []).append(node["NodeID"])
    return alive


def _wait_for_nodes(ray, ips: list[str], patience: float) -> dict[str, list[str]]:
    """Alive node ids by ip, waiting up to ``patience`` s until every ip has exactly one. Ray that
    was just (re)started by the deploy takes a few seconds to join, and a raylet that died stays
    alive in the GCS beside its restarted successor until its health checks run out (tens of
    seconds): a task pinned to that id would be unschedulable."""
    deadline = time.monotonic() + patience
    while True:
        alive = alive_by_ip(ray.nodes())
        if all(len(alive.get(ip, [])) == 1 for ip in ips) or time.monotonic() > deadline:
            return alive
        time.sleep(1)


def _observe_paths(ray, nodes: dict, agents: dict, mtu: int, timeout: float) -> None:
    """Every alive node probes every other alive node's UDP echo, all nodes at once."""
    live = {name: node for name, node in nodes.items() if name in agents}
    try:
        ports = {name: ray.get(agents[name].udp_listen.remote(node["ip"]), timeout=timeout)
                 for name, node in live.items()}
        probe = ray.remote(num_cpus=0)(path_probe)
        pending = {
            name: probe.options(scheduling_strategy=pinned(ray, node["node_id"])).remote(
                [(peer["ip"], ports[other]) for other, peer in live.items() if other != name], mtu)
            for name, node in live.items()
        }
        for name, ref in pending.items():
            try:
                nodes[name]["paths"] = ray.get(ref, timeout=timeout)
            except Exception as error:  # noqa: BLE001
                nodes[name]["path_error"] = type(error).__name__
    except Exception as error:  # noqa: BLE001 - an echo that never listened: no node's path is known
        for name in live:
            nodes[name].setdefault("path_error", f"no UDP echo ({type(error).__name__})")


def _observe_objects(ray, nodes: dict, timeout: float) -> None:
    """The head's 64 MB object, sent to every live node at once: it must arrive intact. Tasks, not the
    agents: this runs while the agents' processes start."""
    head = next((n for n in nodes.values() if n["role"] == "head" and n["node_id"]), None)
    targets = [node for node in nodes.values() if node["node_id"] and node is not head]
    if head is None or not targets:
        return
    make = ray.remote(num_cpus=0)(make_payload)
    digest = ray.remote(num_cpus=0)(checksum)
    payload = make.options(scheduling_strategy=pinned(ray, head["node_id"])).remote(TRANSFER_MB)
    expected = digest.options(scheduling_strategy=pinned(ray, head["node_id"])).remote(payload)
    start = time.perf_counter()
    received = {node["name"]: digest.options(scheduling_strategy=pinned(ray, node["node_id"])).remote(payload)
                for node in targets}
    for node in targets:
        try:
            node["transfer"] = {"mb": TRANSFER_MB, "received": ray.get(received[node["name"]], timeout=timeout),
                                "sent": ray.get(expected, timeout=timeout),
                                "seconds": round(time.perf_counter() - start, 3)}
        except Exception as error:  # noqa: BLE001
            node["transfer_error"] = str(error).splitlines()[0][:200]


def _observe_tcp(ray, nodes: dict, agents: dict, timeout: float) -> None:
    """TCP from the head to each node's agent in turn (a throughput figure: one stream at a time), and
    the slower end's link speed; not for a node whose object did not arrive."""
    head = next((n for n in nodes.values() if n["role"] == "head" and n["node_id"]), None)
    if head is None:
        return
    sender = ray.remote(num_cpus=0)(tcp_send)
    link = ray.remote(num_cpus=0)(link_speed_gbit)
    for node in nodes.values():
        if node is head or node["name"] not in agents or "transfer_error" in node:
            continue
        try:
            sink = agents[node["name"]]
            port = ray.get(sink.tcp_listen.remote(node["ip"]), timeout=timeout)
            sent = ray.get(sender.options(scheduling_strategy=pinned(ray, head["node_id"])).remote(
                node["ip"], port, TCP_SECONDS), timeout=timeout)
            got = ray.get(sink.received_bytes.remote(), timeout=timeout)
            node["gbit_s"] = round(got * 8 / sent["seconds"] / 1e9, 2)
            speeds = [ray.get(link.options(scheduling_strategy=pinned(ray, end["node_id"])).remote(end["ip"]),
                              timeout=timeout) for end in (head, node)]
            node["link_gbit_s"] = min(speeds) if None not in speeds else None  # the slower end bounds it
        except Exception as error:  # noqa: BLE001
            node["transfer_error"] = str(error).splitlines()[0][:200]


def _observe_collective(ray, nodes: dict, ring: dict, ranks: dict) -> dict:
    """One MLX rank per live node (cluster-file order): their ring ports proven reachable from every
    peer first, then the ranks run together within COLLECTIVE_S. Raw results; judged on the control side."""
    live = [name for name, node in nodes.items() if node["node_id"]]
    hosts = ring_hosts([nodes[name]["ip"] for name in live], ring["port"])
    observed = {"backend": ring["backend"], "ranks": live, "results": {},
                "taken": {}, "unreachable": {}}
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
        observed["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}" if str(error) \
            else type(error).__name__
    observed["seconds"] = round(time.monotonic() - started, 2)
    return observed


def _run_ranks(ray, ranks: dict, live: list, hosts: list, backend: str, observed: dict) -> None:
    pending = {ranks[name].collective_rank.remote(index, hosts, COLLECTIVE_REPEATS, backend): name
               for index, name in enumerate(live)}
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
    pending = {name: check.options(scheduling_strategy=pinned(ray, nodes[name]["node_id"])).remote(
        nodes[name]["ip"], ports[name], [(peer, nodes[peer]["ip"], ports[peer]) for peer in live if peer != name])
        for name in live}
    for name, ref in pending.items():
        answer = ray.get(ref, timeout=30 + RING_REACH_S)
        if answer["taken"]:
            observed["taken"][name] = answer["taken"]
        if answer["unreachable"]:
            observed["unreachable"][name] = answer["unreachable"]
    return not observed["taken"] and not observed["unreachable"]


def ray_census(commands: dict) -> dict:
    """What this node's Ray looks like, raw: the output of the commands given for its OS (its Ray
    processes, its listeners, SAF's launchd job on a Mac), read on the control machine."""
    platform_name = "darwin" if sys.platform == "darwin" else "linux"
    census = {"os": platform_name}
    for key, line in commands[platform_name].items():
        try:
            census[key] = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=15).stdout
        except (OSError, subprocess.SubprocessError) as error:
            census["error"] = f"{line}: {error}"
    return census


def _start_census(ray, nodes: dict, commands: dict) -> dict:
    """Every alive node's Ray census (``commands``: what to run, by node and OS), started on all nodes
    at once: the refs by name (collected by _collect_census)."""
    census = ray.remote(num_cpus=0)(ray_census)
    return {name: census.options(scheduling_strategy=pinned(ray, node["node_id"])).remote(commands[name])
            for name, node in nodes.items() if node["node_id"] and name in commands}


def _collect_census(ray, nodes: dict, pending: dict, timeout: float) -> None:
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

    return ancestry(_command_output(["ps", "-A", "-o", "pid=", "-o", "ppid="]), os.getpid())


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
    finally:
        signal.alarm(0)
    print("SAF-VERIFY " + json.dumps(observed), flush=True)


if __name__ == "__main__":
    main()
