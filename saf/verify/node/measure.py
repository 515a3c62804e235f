"""The device job: which device MLX computes on, whether MLX's matmul agrees with NumPy's, and its
matmul throughput (float32 and float16), measured on each node in turn by its agent.
"""

from __future__ import annotations

import platform
import re
import socket
import statistics
import subprocess
import sys
import time

from .system import command_output

DTYPES = ("f32", "f16")

# Throughput: square products grown from FIRST_SIZE by doubling until a timed step is long enough
# to time well on this device and the rate stops rising, within the budgets and the memory bound.
FIRST_SIZE = 256
LONG_ENOUGH_S = 0.05  # a step this long dwarfs mx.eval's own cost (tens of microseconds on a GPU)
SIGNIFICANT_GAIN = 1.05  # rates within this factor count as equal: a size is doubled again only past it
GROWTH_BUDGET_S = 1.5  # per dtype, for finding the size
MEASURE_BUDGET_S = 1.5  # per dtype, for the timed steps at that size
WARMUP = 2  # untimed steps first: kernel compilation, caches, clocks
REPEATS = 7  # timed steps at most (3 at least), the median is the figure
MIN_REPEATS = 3
MAX_BATCH = 64  # products in one timed step at most
MAX_SIZE = 16384  # MLX's CUDA backend fails to launch kernels over arrays of 2**30 elements (32768**2)
MEMORY_DIVISOR = 8  # the operands and products take at most the device's memory divided by this
DEFAULT_MEMORY = 8 << 30  # when MLX does not say how much the device has


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


def device_kind(device) -> str:
    """``gpu`` or ``cpu`` (``Device(gpu, 0)`` in MLX's own words)."""
    kind = getattr(device, "type", None)
    return getattr(kind, "name", None) or str(device)


def mlx_device_info(mx) -> dict:
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


def device_name(kind: str, info: dict, platform_name: str = sys.platform) -> str:
    """The device by name: the Apple GPU and its cores on a Mac, the NVIDIA name on CUDA, the CPU model."""
    if kind != "gpu":
        return _cpu_model()
    name = str(info.get("device_name") or "")
    if platform_name == "darwin":
        cores = gpu_cores_from_ioreg(command_output(["ioreg", "-r", "-c", "AGXAccelerator", "-d", "1"]))
        return f"{name or 'Apple GPU'} ({cores}-core GPU)" if cores else (name or "Apple GPU")
    smi = command_output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]).strip().splitlines()
    return name or (smi[0].strip() if smi else "GPU")


def _has_mlx_cuda() -> bool:
    import importlib.metadata as metadata

    return any(
        (dist.metadata["Name"] or "").lower().replace("_", "-").startswith("mlx-cuda")
        for dist in metadata.distributions()
    )


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
    bound. Of the sizes within SIGNIFICANT_GAIN of the best rate, the largest (the best timed) is chosen."""
    began, n, rates = clock(), FIRST_SIZE, {}
    while True:
        a, b = _operands(mx, n, dtype)
        mx.eval(a @ b)
        step = max(_timed_step(mx, a, b, 1, clock), 1e-9)
        rates[n] = 2 * n**3 / step
        del a, b
        rising = len(rates) == 1 or rates[n] > SIGNIFICANT_GAIN * rates[n // 2]
        affordable = clock() - began + 2 * 8 * step <= GROWTH_BUDGET_S
        if (
            not (step < LONG_ENOUGH_S or rising)
            or not affordable
            or 2 * n > MAX_SIZE
            or not _fits(2 * n, 1, itemsize, memory_bound)
        ):
            break
        n *= 2
    return max(size for size, rate in rates.items() if rate * SIGNIFICANT_GAIN >= max(rates.values()))


def measure_throughput(
    mx, dtype, itemsize: int, memory_bound: int, clock=time.perf_counter, size: int | None = None
) -> dict:
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
    times: list[float] = []
    began = clock()
    while len(times) < REPEATS and (len(times) < MIN_REPEATS or clock() - began < MEASURE_BUDGET_S):
        times.append(_timed_step(mx, a, b, batch, clock))
    return {"gflops": 2 * n**3 * batch / statistics.median(times) / 1e9, "size": n, "batch": batch}


def describe_device(mx) -> tuple[str, str, dict]:
    """The device MLX computes on: its kind (gpu, cpu), its name, and what MLX says of it."""
    kind = device_kind(mx.default_device())
    info = mlx_device_info(mx) if kind == "gpu" else {}
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
    kind, name, info = describe_device(mx)
    bound = device_memory(info) // MEMORY_DIVISOR
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


# --- the driver's side: every node's probe, one node at a time ------------------------------------


def probe_nodes(ray, nodes: dict, agents: dict, slow_ratio: float, timeout: float) -> None:
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
    pending = {name: agent.hardware_label.remote() for name, agent in agents.items()}
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
            peers = [
                p[key]
                for p in nodes.values()
                if p is not node
                and p.get("hardware") == node.get("hardware")
                and isinstance(p.get(key), (int, float))
                and p[key] > 0
            ]
            if isinstance(node.get(key), (int, float)) and peers and node[key] < slow_ratio * statistics.median(peers):
                slow.append(node)
                break
    return slow
