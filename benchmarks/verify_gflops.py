"""Is the verification's GFLOPS figure right? Compare it with a best-effort MLX matmul benchmark.

The verification's own measurement (``saf.verify.node.measure.measure_throughput``: the size found for
the device, warm-up, mx.eval, median) beside a standalone benchmark that tries harder: every
square size from 256 up (while one product takes under a second and its operands fit in a
quarter of the device's memory), 3 warm-ups and 15 timed runs each, the best median. Float32 and
float16; the verification runs three times, interleaved with the best effort, so load on the
machine falls on both alike. Goal: the verification within 10% of the best effort (ratio >= 0.9).

    # on a node of a cluster file (default: the lab's alpha), over SSH, with the node's venv
    .venv/bin/python benchmarks/verify_gflops.py [--cluster .saf/lab/cluster.yaml] [--node alpha]
    # here, with this Python's MLX (e.g. on a CUDA machine: benchmarks/verify_gflops_h200.sh)
    python3 benchmarks/verify_gflops.py --here
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from saf.verify.shipping import SHIPPED_PACKAGE, program  # noqa: E402

BENCH = """
import json, statistics, time
import mlx.core as mx

def best_effort(dtype, itemsize, memory):
    rates, n = {}, 256
    while n <= measure.MAX_SIZE and 3 * n * n * itemsize <= memory // 4:
        a = mx.random.normal((n, n)).astype(dtype); b = mx.random.normal((n, n)).astype(dtype); mx.eval(a, b)
        t = time.perf_counter(); mx.eval(a @ b); first = time.perf_counter() - t
        for _ in range(3):
            mx.eval(a @ b)
        times = []
        for _ in range(15 if first < 0.2 else 5):
            t = time.perf_counter(); mx.eval(a @ b); times.append(time.perf_counter() - t)
        rates[n] = 2 * n ** 3 / statistics.median(times) / 1e9
        del a, b
        if first > 1.0:
            break  # larger sizes would take minutes and tell no more
        n *= 2
    return rates

kind = measure.device_kind(mx.default_device())
info = measure.mlx_device_info(mx) if kind == "gpu" else {}
memory = measure.device_memory(info)
result = {"device": kind, "device_name": measure.device_name(kind, info), "mlx": mx.__version__,
          "device_info": {k: v for k, v in info.items() if isinstance(v, (int, str))}, "runs": {}}
for label, dtype, itemsize in (("f32", mx.float32, 4), ("f16", mx.float16, 2)):
    runs = result["runs"][label] = {"verification": [], "seconds": [], "best": []}
    for _ in range(3):
        t = time.perf_counter()
        runs["verification"].append(measure.measure_throughput(mx, dtype, itemsize, memory // measure.MEMORY_DIVISOR))
        runs["seconds"].append(time.perf_counter() - t)
        runs["best"].append(best_effort(dtype, itemsize, memory))
print("BENCH " + json.dumps(result))
"""


def _over_ssh(cluster_file: str, node_name: str) -> str:
    from saf.paths import on_node
    from saf.spec import load_cluster

    cluster = load_cluster(PROJECT, cluster_file)
    node = cluster.node(node_name)
    ssh = ["ssh", "-o", "BatchMode=yes"]
    if node.ssh_key:
        ssh += ["-i", node.ssh_key]
    if node.ssh_known_hosts_file:
        ssh += ["-o", f"UserKnownHostsFile={node.ssh_known_hosts_file}"]
    target = f"{node.ssh_user}@{node.address}" if node.ssh_user else node.address
    python = f"{on_node(cluster.settings.venv_root, '$HOME')}/current/bin/python"
    script = program(f"from {SHIPPED_PACKAGE} import measure\n" + BENCH)  # the node has no SAF: shipped
    return subprocess.run([*ssh, target, f"{python} -"], input=script, capture_output=True, text=True,
                          check=True, timeout=1800).stdout


def _here() -> str:
    path = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", "from saf.verify.node import measure\n" + BENCH], stdout=subprocess.PIPE,
                          text=True, check=True, timeout=1800, cwd=PROJECT, env={**os.environ, "PYTHONPATH": path}).stdout


def report(result: dict) -> None:
    """Print, per dtype, each verification run beside the best effort of the same round, and the ratios."""
    print(f"{result['device']} {result['device_name']} (MLX {result['mlx']}) {result['device_info']}")
    for dtype, runs in result["runs"].items():
        ratios = []
        for verification, seconds, best in zip(runs["verification"], runs["seconds"], runs["best"]):
            top = max(best, key=best.get)
            ratio = verification["gflops"] / best[top]
            ratios.append(ratio)
            sizes = ", ".join(f"{n}: {g:.1f}" for n, g in best.items())
            print(f"{dtype}: verification {verification['gflops']:10.1f} GFLOPS at {verification['size']}"
                  f"x{verification['batch']} in {seconds:.1f} s | best effort {best[top]:10.1f} at {top} "
                  f"({sizes}) | ratio {ratio:.2f}")
        print(f"{dtype}: median ratio {sorted(ratios)[len(ratios) // 2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", default=str(PROJECT / ".saf/lab/cluster.yaml"))
    parser.add_argument("--node", default="alpha")
    parser.add_argument("--here", action="store_true", help="measure with this Python's MLX, no SSH")
    args = parser.parse_args()
    out = _here() if args.here else _over_ssh(args.cluster, args.node)
    result = json.loads(next(line for line in out.splitlines() if line.startswith("BENCH "))[6:])
    report(result)


if __name__ == "__main__":
    main()
