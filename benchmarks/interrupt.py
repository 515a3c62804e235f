"""An upgrade interrupted at many points on the lab: does the next run converge every time?

    flock /tmp/saf-lab.lock .venv/bin/python benchmarks/interrupt.py [--points N] [--signals INT KILL] [--json FILE]

The lab's 3 nodes move between two pin sets (MLX 0.29.1 and 0.29.3, Ray 2.49.1), one upgrade per
point. A point is a signal (SIGINT: pyinfra's Ctrl-C; SIGKILL: a killed run) and a moment: the start
of one operation of the upgrade (as pyinfra prints ``--> Starting operation: NAME``) plus a delay
(0.5 s: at the operation boundary; more for inside the long steps, the Python and venv builds).
The operations are those the first, uninterrupted upgrade printed, in order. For each point:

  1. every venv but ``current`` is removed from the nodes, so the upgrade builds its venv (the
     long step) rather than switching to an old one;
  2. the upgrade starts; at the moment, the signal;
  3. a re-run of the upgrade must exit 0, verified (the deploy's last step) on the new pins, with
     Ray on every node running from the venv ``current`` names;
  4. the run after it must change nothing.

It prints one line per point (what the interrupted run left stale, the re-run's result) and a
summary, and the JSON with --json. Needs root (the lab, up: `saf lab up`) and about 2.5 minutes a
point; --points N spreads N points over the operations (default: every operation boundary and
three moments inside the venv build, for each signal).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from saf.lab.api import Lab  # noqa: E402
from saf.lab.layout import NODE_USER  # noqa: E402

NODES = ("alpha", "beta", "gamma")
VENV_ROOT = f"/home/{NODE_USER}/saf/venv"
PINS = ({"mlx_version": "0.29.1"}, {"mlx_version": "0.29.3"})
SETTINGS = {"trusted_network": True}  # Ray 2.49.1 has no token; the lab's network is its own
STARTING = re.compile(r"^--> Starting operation: (.+?)\s*$")
INSIDE_VENV = (5.0, 20.0, 40.0)  # seconds into the venv build


@dataclass
class Point:
    signal: str  # INT or KILL
    operation: str  # the operation after whose start it is sent
    delay_s: float
    hit: bool = False  # the operation started and the signal was sent
    exit_status: int | None = None
    stopped_in_s: float | None = None  # from the signal to the run's end
    stale_after: list[str] = field(default_factory=list)  # nodes whose Ray ran another venv than current
    rerun_status: int | None = None
    verified: bool = False
    ray_from_current: bool = False
    changes_after: int | None = None
    note: str = ""

    @property
    def converged(self) -> bool:
        return self.rerun_status == 0 and self.verified and self.ray_from_current and self.changes_after == 0


def pyinfra(cluster: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pyinfra", "inventory.py", "deploy.py", "-y", *extra]


def deploy(cluster: Path) -> tuple[int, dict | None, str]:
    env = {**os.environ, "SAF_CLUSTER": str(cluster)}
    run = subprocess.run(pyinfra(cluster, "--json"), cwd=PROJECT, env=env, capture_output=True, text=True,
                         timeout=1800, stdin=subprocess.DEVNULL)
    start = run.stdout.find("{")
    results = json.loads(run.stdout[start:]).get("results") if start >= 0 else None
    return run.returncode, results, run.stderr


def node_ray(lab: Lab, name: str) -> tuple[str, set[str]]:
    out = lab.exec(name, ["sh", "-c", f"readlink -f {VENV_ROOT}/current; ps -eo args | grep '[r]aylet/raylet' || true"],
                   user=NODE_USER).stdout.splitlines()
    running = {line.split(f"{VENV_ROOT}/", 1)[1].split("/", 1)[0] for line in out[1:] if f"{VENV_ROOT}/" in line}
    return out[0].rsplit("/", 1)[-1], running


def stale(lab: Lab) -> list[str]:
    return [name for name in NODES if (lambda ray: ray[1] != {ray[0]})(node_ray(lab, name))]


def keep_only_current(lab: Lab) -> None:
    for name in NODES:
        lab.exec(name, ["sh", "-c", f"cd {VENV_ROOT} && c=$(readlink -f current) && rm -f previous && "
                                    "for d in py*; do [ \"$PWD/$d\" = \"$c\" ] || rm -rf \"$d\"; done"], user=NODE_USER)


def interrupted_run(cluster: Path, point: Point) -> str:
    """The upgrade, with ``point``'s signal sent ``delay_s`` after ``operation`` starts."""
    env = {**os.environ, "SAF_CLUSTER": str(cluster)}
    run = subprocess.Popen(pyinfra(cluster), cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, stdin=subprocess.DEVNULL)
    lines, sent = [], None
    for line in run.stdout:
        lines.append(line)
        found = STARTING.match(line.strip())
        if sent is None and found and found.group(1) == point.operation:
            time.sleep(point.delay_s)
            run.send_signal(signal.SIGINT if point.signal == "INT" else signal.SIGKILL)
            sent = time.monotonic()
            point.hit = True
    run.wait()
    point.exit_status = run.returncode
    point.stopped_in_s = round(time.monotonic() - sent, 1) if sent else None
    return "".join(lines)


def verified_on(report_path: Path, mlx: str) -> bool:
    report = json.loads(report_path.read_text())
    return bool(report["ok"]) and {n["mlx"] for n in report["nodes"]} == {mlx}


def try_point(lab: Lab, clusters: list[Path], point: Point, target: int) -> None:
    keep_only_current(lab)
    interrupted_run(clusters[target], point)
    point.stale_after = stale(lab)
    status, _, log = deploy(clusters[target])
    point.rerun_status = status
    point.verified = status == 0 and verified_on(PROJECT / ".saf/reports/latest.json", PINS[target]["mlx_version"])
    point.ray_from_current = not stale(lab)
    if status == 0:
        again, results, _ = deploy(clusters[target])
        point.changes_after = results["totals"]["success"] if results else None
    else:
        point.note = log[-600:].replace("\n", " | ")


def points_for(operations: list[str], signals: list[str], count: int | None) -> list[Point]:
    venv = next((op for op in operations if op.startswith("tasks/venv.py | Venv ")), None)
    points = [Point(sig, op, 0.5) for op in operations for sig in signals]
    points += [Point(sig, venv, delay) for delay in INSIDE_VENV for sig in signals] if venv else []
    if count and count < len(points):
        step = len(points) / count
        points = [points[int(i * step)] for i in range(count)]
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, help="only this many points, spread over the operations")
    parser.add_argument("--signals", nargs="+", default=["INT", "KILL"], choices=["INT", "KILL"])
    parser.add_argument("--json", type=Path, help="write the points and results here")
    args = parser.parse_args()
    lab = Lab(PROJECT)
    lab.up(3)
    where = Path(tempfile.mkdtemp(prefix="saf-interrupt-"))
    clusters = [lab.write_cluster_file(list(NODES), {**SETTINGS, **pins}, path=where / f"pins{i}.yaml")
                for i, pins in enumerate(PINS)]
    status, _, log = deploy(clusters[0])
    if status != 0:
        print(f"the lab does not converge on {PINS[0]}:\n{log[-3000:]}", file=sys.stderr)
        return 1
    keep_only_current(lab)
    env = {**os.environ, "SAF_CLUSTER": str(clusters[1])}
    first = subprocess.run(pyinfra(clusters[1]), cwd=PROJECT, env=env, capture_output=True, text=True, timeout=1800)
    operations = [m.group(1) for m in map(STARTING.match, first.stdout.splitlines() + first.stderr.splitlines()) if m]
    if first.returncode != 0 or not operations:
        print(f"the uninterrupted upgrade failed:\n{(first.stdout + first.stderr)[-3000:]}", file=sys.stderr)
        return 1
    points = points_for(operations, args.signals, args.points)
    print(f"{len(operations)} operations in the upgrade; {len(points)} points", flush=True)
    target = 0  # the cluster is on pins 1 now: the next upgrade goes to pins 0, and so on
    for number, point in enumerate(points, 1):
        started = time.monotonic()
        try_point(lab, clusters, point, target)
        verdict = "converged" if point.converged else "NOT CONVERGED"
        print(f"{number:3} SIG{point.signal:4} {point.delay_s:4.1f} s after {point.operation[:70]:70} "
              f"exit {point.exit_status} ({point.stopped_in_s} s); stale: {','.join(point.stale_after) or '-'}; "
              f"re-run {point.rerun_status}, then {point.changes_after} changes: {verdict} "
              f"[{time.monotonic() - started:.0f} s]{' ' + point.note if point.note else ''}", flush=True)
        target = 1 - target if point.rerun_status == 0 else target
    good = sum(point.converged for point in points)
    print(f"{good} of {len(points)} points converged; {sum(p.hit for p in points)} hit, "
          f"{sum(bool(p.stale_after) for p in points)} left Ray stale for the re-run to restart")
    if args.json:
        args.json.write_text(json.dumps([{**asdict(p), "converged": p.converged} for p in points], indent=1))
    return 0 if good == len(points) else 1


if __name__ == "__main__":
    sys.exit(main())
