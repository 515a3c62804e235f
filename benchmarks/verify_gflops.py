"""Is the verification's GFLOPS figure right? Compare it with a best-effort MLX matmul benchmark.

On one node of a cluster file (default: the lab's alpha), in the same session, with the venv's
Python: the verification's own measurement (saf/verify/job.py: 1024x1024, warm-up, mx.eval,
7 runs, median) beside a standalone benchmark that tries harder (sizes 1024-4096, 5 warm-ups,
25 timed runs each, best median; a size whose single product takes over a second, as on a CPU,
ends the climb). Prints both for float32 and float16 and their ratio (goal:
the verification within 10% of the best effort).

    .venv/bin/python benchmarks/verify_gflops.py [--cluster .saf/lab/cluster.yaml] [--node alpha]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from saf.paths import on_node  # noqa: E402
from saf.spec import load_cluster  # noqa: E402
from saf.verify import job  # noqa: E402

# The driver's source, loaded on the node as a module (not __main__, so its main() does not run)
LOAD_JOB = """
import sys, types
job = types.ModuleType("saf_verify_job")
sys.modules[job.__name__] = job
exec(compile({source!r}, "saf/verify/job.py", "exec"), job.__dict__)
"""

BEST_EFFORT = """
import json, statistics, time
import mlx.core as mx
def best(dtype):
    results = {}
    for n in (1024, 2048, 4096):
        a = mx.random.normal((n, n)).astype(dtype); b = mx.random.normal((n, n)).astype(dtype); mx.eval(a, b)
        t = time.perf_counter(); mx.eval(a @ b)
        if n > 1024 and time.perf_counter() - t > 1.0:
            break  # a CPU (or f16 on it): larger sizes would take minutes and tell no more
        for _ in range(5):
            mx.eval(a @ b)
        times = []
        for _ in range(25):
            t = time.perf_counter(); mx.eval(a @ b); times.append(time.perf_counter() - t)
        results[n] = 2 * n ** 3 / statistics.median(times) / 1e9
    return max(results.values()), results
verification = {"f32": job._timed_matmul(mx, mx.float32), "f16": job._timed_matmul(mx, mx.float16)}
f32, f32_sizes = best(mx.float32)
f16, f16_sizes = best(mx.float16)
print("BENCH " + json.dumps({"verification": verification, "best": {"f32": f32, "f16": f16},
                             "sizes": {"f32": f32_sizes, "f16": f16_sizes}, "device": str(mx.default_device())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", default=str(PROJECT / ".saf/lab/cluster.yaml"))
    parser.add_argument("--node", default="alpha")
    args = parser.parse_args()
    cluster = load_cluster(PROJECT, args.cluster)
    node = cluster.node(args.node)
    script = LOAD_JOB.format(source=Path(job.__file__).read_text()) + BEST_EFFORT
    ssh = ["ssh", "-o", "BatchMode=yes"]
    if node.ssh_key:
        ssh += ["-i", node.ssh_key]
    if node.ssh_known_hosts_file:
        ssh += ["-o", f"UserKnownHostsFile={node.ssh_known_hosts_file}"]
    target = f"{node.ssh_user}@{node.address}" if node.ssh_user else node.address
    python = f"{on_node(cluster.settings.venv_root, '$HOME')}/current/bin/python"
    out = subprocess.run([*ssh, target, f"{python} -"], input=script, capture_output=True, text=True, check=True).stdout
    result = json.loads(next(line for line in out.splitlines() if line.startswith("BENCH "))[6:])
    print(f"node {node.name} ({result['device']})")
    for dtype in ("f32", "f16"):
        verification, best = result["verification"][dtype], result["best"][dtype]
        sizes = ", ".join(f"{n}: {g:.1f}" for n, g in result["sizes"][dtype].items())
        print(f"{dtype}: verification {verification:8.1f} GFLOPS | best effort {best:8.1f} GFLOPS ({sizes}) "
              f"| ratio {verification / best:.2f}")


if __name__ == "__main__":
    main()
