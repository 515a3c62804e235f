"""SAF's overhead over the raw provisioning steps, on a lab node (or any node of a cluster file).

For one node, from scratch (its pyenv, Python and venvs removed first), it times:
  1. SAF: `pyinfra inventory.py benchmarks/deploy_python.py --limit NODE -y` (preflight, pyenv,
     Python build, wheelhouse push, venv, proof, switch);
  2. by hand, over SSH, the same steps: clone pyenv, push the CPython tarball, `pyenv install`,
     push the same wheels, `python -m venv`, `pip install --no-index` from them.
It runs ``--pairs`` pairs (3 by default), SAF first in the odd pairs and by hand first in the even
ones (a machine that warms up or slows down over the run must not favour one side), and prints each
pair's times and ratio, then the median ratio (goal: under 1.10) and the JSON. The wheelhouse is
filled before any run, so neither pays the download. Afterwards the node's Ray runs from a venv this
script rebuilt: run the deploy once to leave the cluster as SAF would.

    .venv/bin/python benchmarks/provision_overhead.py [--cluster .saf/lab/cluster.yaml] [--node beta] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from saf.launch import home_path  # noqa: E402
from saf.paths import on_control  # noqa: E402
from saf.venv_spec import requirements, venv_name  # noqa: E402
from saf.spec import load_cluster  # noqa: E402
from saf.ssh import scp_argv, ssh_argv  # noqa: E402
from saf.wheelhouse import ensure_wheels, platform_key, wheel_platforms  # noqa: E402


def ssh(node, script: str) -> str:
    return subprocess.run(ssh_argv(node, script), check=True, capture_output=True, text=True).stdout


def scp(node, sources: list[Path], dest: str) -> None:
    subprocess.run(scp_argv(node, [str(source) for source in sources], dest, options=("-q",)), check=True)


def wipe(node, settings) -> None:
    roots = " ".join(home_path(path) for path in (settings.pyenv_root, settings.venv_root, "~/.saf/wheels"))
    ssh(node, f"rm -rf -- {roots}")  # each path one shell word, ~ expanded by the node


def time_saf(cluster_path: Path, node_name: str) -> float:
    env = {**os.environ, "SAF_CLUSTER": str(cluster_path)}
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pyinfra", "inventory.py", "benchmarks/deploy_python.py",
                    "--limit", node_name, "-y"], cwd=PROJECT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.monotonic() - started


def time_by_hand(node, settings, tarball: Path | None, wheels: list[Path]) -> float:
    version = settings.python_version
    root = "$HOME/.pyenv-by-hand"
    started = time.monotonic()
    ssh(node, f"rm -rf {root} && git clone -q {shlex.quote(settings.pyenv_git_url)} {root} && mkdir -p {root}/cache ~/by-hand-wheels")
    if tarball:
        scp(node, [tarball], f".pyenv-by-hand/cache/Python-{version}.tar.gz")
    ssh(node, f"PYENV_ROOT={root} PYTHON_BUILD_CACHE_PATH={root}/cache _PYTHON_BUILD_FORCE_SKIP_XZ=1 "
              f"{root}/bin/pyenv install {version}")
    scp(node, wheels, "by-hand-wheels/")
    reqs = " ".join(shlex.quote(r) for r in requirements_of(node, settings))
    ssh(node, f"{root}/versions/{version}/bin/python -m venv ~/by-hand-venv && "
              f"PIP_CONFIG_FILE=/dev/null ~/by-hand-venv/bin/python -m pip install -q --disable-pip-version-check "
              f"--no-index --find-links ~/by-hand-wheels {reqs}")
    elapsed = time.monotonic() - started
    ssh(node, f"rm -rf {root} ~/by-hand-venv ~/by-hand-wheels")
    return elapsed


def requirements_of(node, settings) -> tuple[str, ...]:
    return requirements(settings.ray_version, settings.mlx_version, "cpu", list(settings.extra_packages))


def pair_order(index: int) -> tuple[str, str]:
    """Which side runs first in pair ``index`` (0-based): SAF, then by hand, alternately."""
    return ("saf", "by_hand") if index % 2 == 0 else ("by_hand", "saf")


def summary(pairs: list[dict]) -> dict:
    """Each pair's ratio SAF / by hand, and their median."""
    ratios = [pair["saf_s"] / pair["by_hand_s"] for pair in pairs]
    return {"pairs": pairs, "ratios": [round(r, 3) for r in ratios], "median_ratio": round(statistics.median(ratios), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", default=str(PROJECT / ".saf/lab/cluster.yaml"))
    parser.add_argument("--node", default="beta")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    cluster = load_cluster(PROJECT, args.cluster)
    node, settings = cluster.node(args.node), cluster.settings
    glibc = ssh(node, "getconf GNU_LIBC_VERSION").split()[1]
    arch = ssh(node, "uname -m").strip()
    reqs = requirements_of(node, settings)
    wheels = ensure_wheels(on_control(settings.wheelhouse, PROJECT), platform_key("Linux", arch, glibc, settings.python_version),
                           venv_name(settings.python_version, reqs), reqs, wheel_platforms("Linux", arch, glibc),
                           settings.python_version, node=node.name)
    tarball = None
    if settings.python_source_cache:
        tarball = on_control(settings.python_source_cache, PROJECT) / f"Python-{settings.python_version}.tar.gz"

    def saf() -> float:
        wipe(node, settings)
        return time_saf(Path(args.cluster).resolve(), node.name)

    def by_hand() -> float:
        return time_by_hand(node, settings, tarball, wheels)

    sides = {"saf": saf, "by_hand": by_hand}
    print(f"node {node.name}: Python {settings.python_version}, {len(wheels)} wheels, {args.pairs} pairs", flush=True)
    pairs = []
    for index in range(args.pairs):
        order = pair_order(index)
        pair = {"first": order[0]}
        for side in order:
            pair[f"{side}_s"] = round(sides[side](), 1)
        pairs.append(pair)
        print(f"pair {index + 1} ({order[0]} first): SAF {pair['saf_s']:7.1f} s, by hand {pair['by_hand_s']:7.1f} s, "
              f"ratio {pair['saf_s'] / pair['by_hand_s']:.3f}", flush=True)
    result = summary(pairs)
    print(f"median ratio SAF / by hand over {len(pairs)} pairs: {result['median_ratio']:.3f} (goal < 1.10)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
