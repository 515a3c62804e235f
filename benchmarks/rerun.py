"""A re-run on a converged cluster: SAF beside `ray up`, on the lab, for 3 and 8 nodes, in one run.

    .venv/bin/python benchmarks/rerun.py [--nodes 3 8] [--repeats 3] [--json FILE]

For each node count N (the lab grows to N; nodes beyond N, if any, have their Ray stopped):
  1. the cluster is converged by one untimed SAF deploy;
  2. SAF, timed `--repeats` times each: `pyinfra inventory.py deploy.py -y` with the verification
     left out (`verify_after_deploy: false`: the converge alone), then with it. Each run must report
     zero changes;
  3. `ray up` with a cluster launcher config for the same nodes (provider `local`, the venv SAF
     made, the same GCS port; setup commands that only check the installed pins). SAF's Ray
     services are stopped first; one untimed `ray up` brings the cluster up; then `ray up -y`
     (which restarts Ray) and `ray up -y --no-restart`, timed `--repeats` times each;
  4. `ray down`, what `ray up` left on the nodes and here removed, and SAF's services started again by
     an untimed deploy.

For every run, "back" is the time from its start until every node is in the cluster again, seen by
a poller on the head that asks the GCS five times a second: the start of the stretch in which every
node is alive that lasts until 10 s after the run returned (0 when no node ever left). It prints a
table and the JSON. Needs root (the lab) and Ray for this machine's Python in .saf/bench-ray
(made on first use from the package index: `ray up` runs here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from getpass import getuser
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from saf.lab.api import Lab  # noqa: E402
from saf.lab.layout import NODE_USER  # noqa: E402
from saf.service import service_unit  # noqa: E402
from saf.spec import load_cluster  # noqa: E402
from saf.venv_spec import current_venv_path  # noqa: E402

BENCH_VENV = PROJECT / ".saf/bench-ray"
CLUSTER_NAME = "saf-bench"
POLL_S = 0.2
SETTLE_S = 10.0  # every node in the cluster this long, and this long after the run returned: it is back
BACK_WITHIN_S = 180.0

# Runs on the head with the venv's Python: the addresses of the nodes alive in the GCS, one JSON line per poll.
POLLER = """
import json, sys, time
from ray._raylet import GcsClient
from ray.core.generated import gcs_pb2
client = None
while True:
    try:
        client = client or GcsClient(address=sys.argv[1])
        nodes = client.get_all_node_info(timeout=1)
        alive = sorted(n.node_manager_address for n in nodes.values() if n.state == gcs_pb2.GcsNodeInfo.ALIVE)
    except Exception:
        client, alive = None, None
    print(json.dumps(alive), flush=True)
    time.sleep(%s)
""" % POLL_S


# --- the cluster launcher config ------------------------------------------------------------------


def launcher_config(cluster, key: Path, venv: str) -> dict:
    """`ray up`'s config for the cluster's nodes: the local provider, the venv SAF made, SAF's GCS port."""
    settings = cluster.settings
    head = next(node for node in cluster.nodes if node.role == "head")
    workers = [node for node in cluster.nodes if node.role != "head"]
    ray = f"{venv}/bin/ray"
    pins = (f"{venv}/bin/python -c \"import ray, mlx.core as mx; "
            f"assert ray.__version__ == '{settings.ray_version}', ray.__version__; "
            f"assert mx.__version__ == '{settings.mlx_version}', mx.__version__\"")
    own_ip = "$(hostname -I | cut -d' ' -f1)"
    return {
        "cluster_name": CLUSTER_NAME,
        "provider": {"type": "local", "head_ip": head.address, "worker_ips": [w.address for w in workers]},
        "auth": {"ssh_user": head.ssh_user, "ssh_private_key": str(key)},
        "min_workers": len(workers),
        "max_workers": len(workers),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 60,
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [pins],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [
            f"{ray} stop",
            f"{ray} start --head --port={settings.ray_port} --node-ip-address={head.address} "
            f"--dashboard-host=127.0.0.1 --autoscaling-config=~/ray_bootstrap_config.yaml --disable-usage-stats",
        ],
        "worker_start_ray_commands": [
            f"{ray} stop",
            f"{ray} start --address=$RAY_HEAD_IP:{settings.ray_port} --node-ip-address={own_ip} --disable-usage-stats",
        ],
    }


# --- measuring ------------------------------------------------------------------------------------


class Membership:
    """The poller on the head, read here: (monotonic time, alive addresses or None) per poll."""

    def __init__(self, lab: Lab, head: str, venv: str, address: str):
        script = f"exec {venv}/bin/python -u -c {shell_quote(POLLER)} {address}"
        self.process = subprocess.Popen(lab.ssh_argv(head, ["bash", "-c", shell_quote(script)]),
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.polls: list[tuple[float, list | None]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.polls.append((time.monotonic(), json.loads(line)))
            except ValueError:
                continue

    def wait_until_all(self, addresses: set[str], since: float, within: float = BACK_WITHIN_S) -> float | None:
        """Seconds from ``since`` (a run that has just returned) until every address was back (see
        back_after); None if not within ``within``."""
        returned = time.monotonic()
        deadline = since + within
        while time.monotonic() < deadline:
            back = back_after(self.polls, addresses, since, returned, SETTLE_S)
            if back is not None:
                return back
            time.sleep(POLL_S)
        return None

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def back_after(polls: list[tuple[float, list | None]], addresses: set[str], since: float, returned: float,
               settle: float) -> float | None:
    """Seconds from ``since`` (a run's start) until every address was back in the cluster: the start
    of the stretch of polls in which every address is alive that lasts until at least ``settle`` s
    after the run returned (``returned``) and ``settle`` s in all; 0 when it began before the run
    (no node ever left). None while there is none yet. `ray up` restarts the head inside the command
    and its workers after it returns, so a stretch seen only before the return proves nothing."""
    stretch_start = None
    for at, alive in polls:
        everyone = alive is not None and addresses <= set(alive)
        if at < since:
            stretch_start = since if everyone else None  # the state the run started from
            continue
        if not everyone:
            stretch_start = None
            continue
        stretch_start = at if stretch_start is None else stretch_start
        if at >= max(returned + settle, stretch_start + settle):
            return round(stretch_start - since, 2)
    return None


def timed(argv: list[str], env: dict | None = None, cwd: Path = PROJECT) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.monotonic() - started, done


def saf_deploy(cluster_file: Path, attempts: int = 1) -> tuple[float, int]:
    """One `pyinfra inventory.py deploy.py -y`: its seconds and the changes it reported. An untimed
    run that brings Ray back gets ``attempts`` > 1: a node whose Ray it just started may fail the
    verification once while it settles."""
    env = {**os.environ, "SAF_CLUSTER": str(cluster_file)}
    seconds, done = timed([sys.executable, "-m", "pyinfra", "inventory.py", "deploy.py", "-y", "--json"], env)
    if done.returncode != 0 and attempts > 1:
        print(f"    (untimed deploy failed, exit {done.returncode}; once more)", flush=True)
        return saf_deploy(cluster_file, attempts - 1)
    if done.returncode != 0:
        raise SystemExit(f"the SAF deploy failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    results = json.loads(done.stdout[done.stdout.find("{"):])["results"]
    return seconds, results["totals"]["success"]


def ray_up(config: Path, *flags: str) -> float:
    env = {**os.environ, "RAY_TMPDIR": str(config.parent), "TMPDIR": str(config.parent)}
    seconds, done = timed([str(BENCH_VENV / "bin/ray"), "up", "-y", "--disable-usage-stats", "--log-style", "record",
                           *flags, str(config)], env)
    if done.returncode != 0:
        raise SystemExit(f"`ray up {' '.join(flags)}` failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return seconds


# --- one node count ---------------------------------------------------------------------------------


def measure(lab: Lab, count: int, repeats: int, workdir: Path) -> dict:
    print(f"--> {count} nodes: lab up, converging ...", flush=True)
    lab.up(count)
    names = [node.name for node in lab.nodes()[:count]]
    for extra in lab.nodes()[count:]:  # made for a larger run earlier: out of this cluster
        lab.exec(extra.name, ["systemctl", "stop", service_unit("worker")], check=False)
    with_verify = lab.write_cluster_file(names, path=workdir / f"cluster-{count}.yaml")
    converge_only = lab.write_cluster_file(names, {"verify_after_deploy": False},
                                           path=workdir / f"cluster-{count}-converge.yaml")
    saf_deploy(with_verify, attempts=2)  # untimed: converged, the questions of a converged run written down
    cluster = load_cluster(PROJECT, converge_only)
    head = names[0]
    venv = current_venv_path(cluster.settings.venv_root, "~")
    addresses = {node.address for node in cluster.nodes}
    address = f"{lab.node(head).address}:{cluster.settings.ray_port}"
    figures: dict = {"nodes": count}
    membership = Membership(lab, head, venv, address)
    try:
        if membership.wait_until_all(addresses, time.monotonic(), within=60) is None:
            raise SystemExit(f"the SAF cluster of {count} nodes never had every node alive")
        figures["saf_converge"] = saf_runs(membership, converge_only, addresses, repeats)
        figures["saf_with_verify"] = saf_runs(membership, with_verify, addresses, repeats)
    finally:
        membership.stop()
    figures.update(ray_up_runs(lab, cluster, names, venv, address, addresses, repeats, workdir))
    print(f"--> {count} nodes: back to SAF's services ...", flush=True)
    saf_deploy(with_verify, attempts=2)
    return figures


def saf_runs(membership: Membership, cluster_file: Path, addresses: set[str], repeats: int) -> list[dict]:
    runs = []
    for _ in range(repeats):
        started = time.monotonic()
        seconds, changes = saf_deploy(cluster_file)
        back = membership.wait_until_all(addresses, started)
        runs.append({"seconds": round(seconds, 2), "changes": changes, "back_s": back})
        print(f"    SAF {cluster_file.name}: {seconds:.2f} s, {changes} changes, back {back} s", flush=True)
    return runs


def ray_up_runs(lab: Lab, cluster, names: list[str], venv: str, address: str, addresses: set[str],
                repeats: int, workdir: Path) -> dict:
    config = workdir / f"ray-up-{len(names)}.yaml"
    config.write_text(yaml.safe_dump(launcher_config(cluster, lab.layout.ssh_key, venv), sort_keys=False))
    for name in names:  # `ray up` runs Ray itself: SAF's services must not hold the ports
        lab.exec(name, ["systemctl", "stop", service_unit("head" if name == names[0] else "worker")], check=False)
    figures: dict = {"ray_up_restart": [], "ray_up_no_restart": []}
    membership = None
    try:
        print("    ray up (untimed bring-up) ...", flush=True)
        ray_up(config)
        membership = Membership(lab, names[0], venv, address)
        if membership.wait_until_all(addresses, time.monotonic()) is None:
            raise SystemExit("`ray up` never had every node alive")
        for key, flags in (("ray_up_restart", ()), ("ray_up_no_restart", ("--no-restart",))):
            for _ in range(repeats):
                started = time.monotonic()
                seconds = ray_up(config, *flags)
                back = membership.wait_until_all(addresses, started)
                figures[key].append({"seconds": round(seconds, 2), "back_s": back})
                print(f"    ray up {' '.join(flags)}: {seconds:.2f} s, back {back} s", flush=True)
    finally:
        if membership is not None:
            membership.stop()
        ray_down(lab, config, names, venv)
    return figures


def ray_down(lab: Lab, config: Path, names: list[str], venv: str) -> None:
    """`ray down`, then what it leaves with the local provider: Ray itself on every node (it stops
    none), the bootstrap config and SSH key on the head, the SSH control sockets here."""
    env = {**os.environ, "RAY_TMPDIR": str(config.parent), "TMPDIR": str(config.parent)}
    subprocess.run([str(BENCH_VENV / "bin/ray"), "down", "-y", "--log-style", "record", str(config)], env=env,
                   capture_output=True, stdin=subprocess.DEVNULL)
    for name in names:
        lab.exec(name, ["bash", "-c", f"{venv}/bin/ray stop --force"], user=NODE_USER, check=False)
    lab.exec(names[0], ["rm", "-f", "ray_bootstrap_config.yaml", "ray_bootstrap_key.pem"], user=NODE_USER, check=False)
    control = Path("/tmp") / f"ray_ssh_{hashlib.sha1(getuser().encode()).hexdigest()[:10]}"
    shutil.rmtree(control / hashlib.sha1(CLUSTER_NAME.encode()).hexdigest()[:10], ignore_errors=True)
    if control.exists() and not any(control.iterdir()):
        control.rmdir()


# --- output -------------------------------------------------------------------------------------


def median(runs: list[dict], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def table(results: list[dict]) -> str:
    rows = [("nodes", "what", "runs", "seconds (median)", "back in cluster (median s)", "changes")]
    labels = {"saf_converge": "SAF re-run, converge only", "saf_with_verify": "SAF re-run, with the verification",
              "ray_up_restart": "ray up (restarts Ray)", "ray_up_no_restart": "ray up --no-restart"}
    for figures in results:
        for key, label in labels.items():
            runs = figures.get(key, [])
            changes = ", ".join(str(run["changes"]) for run in runs) if key.startswith("saf") else "-"
            rows.append((str(figures["nodes"]), label, str(len(runs)), str(median(runs, "seconds")),
                         str(median(runs, "back_s")), changes))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows)


def ensure_bench_venv() -> None:
    if (BENCH_VENV / "bin/ray").exists():
        return
    ray_version = load_cluster(PROJECT, None).settings.ray_version
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run([str(BENCH_VENV / "bin/pip"), "install", "-q", f"ray=={ray_version}"], check=True)


def shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/rerun.py runs the lab: run it as root")
    ensure_bench_venv()
    lab = Lab(PROJECT)
    results = []
    with tempfile.TemporaryDirectory(prefix="saf-rerun-", dir=PROJECT / ".saf") as workdir:
        for count in sorted(args.nodes):
            results.append(measure(lab, count, args.repeats, Path(workdir)))
    print(table(results))
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
