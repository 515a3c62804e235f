"""Interrupted and concurrent runs converge, on the lab (issue 26).

A pin change interrupted with SIGINT while the nodes build the new venv, and one killed with SIGKILL
after the switch of ``current`` and before Ray's restart (the run the issue found stuck): each time
the next run restarts what the nodes show is stale, saying why, the cluster verifies on the new
pins with Ray running from ``current`` on every node, and the run after that changes nothing. Two
deploys at once: the second refuses at once, naming the first, and changes nothing.

Runs after test_upgrade.py, on the lab as it left it (any converged state: the first test deploys
this module's base cluster). benchmarks/interrupt.py tries many more points.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saf.lab.layout import NODE_USER
from saf.lock import LOCK_DIR, LOCK_HELD_STATUS
from tests.conftest import PROJECT_DIR
from tests.lab.conftest import deploy

NODES = ("alpha", "beta", "gamma")
VENV_ROOT = f"/home/{NODE_USER}/saf/venv"
SETTINGS = {"trusted_network": True}  # Ray 2.49.1 has no token; the lab's network is its own


@pytest.fixture(scope="module")
def clusters(lab, tmp_path_factory):
    where = tmp_path_factory.mktemp("interrupted")
    return {"base": lab.write_cluster_file(list(NODES), SETTINGS, path=where / "base.yaml"),
            "next": lab.write_cluster_file(list(NODES), {**SETTINGS, "mlx_version": "0.29.3"},
                                           path=where / "next.yaml")}


def node_ray(lab, name: str) -> dict:
    """The venv ``current`` names and the venvs the node's raylets run from."""
    out = lab.exec(name, ["sh", "-c", f"readlink -f {VENV_ROOT}/current; ps -eo args | grep '[r]aylet/raylet' || true"],
                   user=NODE_USER).stdout.splitlines()
    current = out[0].rsplit("/", 1)[-1]
    running = {line.split(f"{VENV_ROOT}/", 1)[1].split("/", 1)[0] for line in out[1:] if f"{VENV_ROOT}/" in line}
    return {"current": current, "running": running}


def stale_nodes(lab) -> set[str]:
    rays = {name: node_ray(lab, name) for name in NODES}
    return {name for name, ray in rays.items() if ray["running"] != {ray["current"]}}


def mlx_of_current(lab, name: str) -> str:
    return node_ray(lab, name)["current"].split("-mlx", 1)[1].split("-", 1)[0]


def latest_report() -> dict:
    return json.loads((PROJECT_DIR / ".saf/reports/latest.json").read_text())


def start_deploy(cluster: Path) -> subprocess.Popen:
    env = {**os.environ, "SAF_CLUSTER": str(cluster)}
    return subprocess.Popen([sys.executable, "-m", "pyinfra", "inventory.py", "deploy.py", "-y"], cwd=PROJECT_DIR,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


def wait_for(condition, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def converges_after(lab, cluster: Path, mlx: str) -> str:
    """The re-run after an interruption: verified on ``mlx`` with Ray from ``current`` everywhere,
    and the run after it changes nothing. Returns the re-run's log."""
    again = deploy(cluster)
    assert again.returncode == 0, again.log[-4000:]
    report = latest_report()
    assert report["ok"] and {n["mlx"] for n in report["nodes"]} == {mlx}, report
    for name in NODES:
        ray = node_ray(lab, name)
        assert ray["running"] == {ray["current"]} and mlx_of_current(lab, name) == mlx, (name, ray)
    assert deploy(cluster).changes == 0
    return again.log


def test_the_base_cluster_converges(lab, clusters):
    base = deploy(clusters["base"])
    assert base.returncode == 0, base.log[-4000:]
    assert stale_nodes(lab) == set()


def test_sigint_while_the_venv_builds_then_a_rerun_converges(lab, clusters):
    for name in NODES:  # only `current` stays: the next pins' venv must be built, not switched to
        lab.exec(name, ["sh", "-c", f"cd {VENV_ROOT} && c=$(readlink -f current) && rm -f previous && "
                                    "for d in py*; do [ \"$PWD/$d\" = \"$c\" ] || rm -rf \"$d\"; done"], user=NODE_USER)
    run = start_deploy(clusters["next"])
    building = wait_for(lambda: "mlx0.29.3" in lab.exec("beta", ["ls", VENV_ROOT], user=NODE_USER).stdout, 300, 1)
    assert building, "the venv step never started"
    time.sleep(3)  # inside pip
    run.send_signal(signal.SIGINT)
    sent = time.monotonic()
    output, _ = run.communicate(timeout=300)
    waited = time.monotonic() - sent
    print(f"SIGINT in the venv step: pyinfra exited {run.returncode} after {waited:.1f} s; "
          f"stale after it: {sorted(stale_nodes(lab))}")
    assert run.returncode == 130, output[-4000:]  # the step in flight finished, no other started
    assert "saf: stopped after Ctrl-C, before the next operation. Per node:" in output, output[-4000:]
    for name in NODES:
        assert f"  {name}: stopped after tasks/venv.py | Venv py3.11.2-ray2.49.1-mlx0.29.3-" in output, output[-4000:]
    assert output.count("operations left), and Ray restarts there (the venv Ray runs (current) changes)") == 3
    for name in NODES:
        assert lab.exec(name, ["pgrep", "-f", "pip install"], check=False).stdout == ""  # nothing left running
    assert "Starting operation: tasks/network.py" not in output.split("saf: interrupted")[1]
    assert lab.exec("alpha", ["test", "-e", f"/home/{NODE_USER}/{LOCK_DIR}"], check=False).returncode != 0
    log = converges_after(lab, clusters["next"], "0.29.3")
    assert "Traceback" not in log and "Traceback" not in output


def test_sigkill_after_the_switch_before_the_restart_then_a_rerun_restarts_ray(lab, clusters):
    old = node_ray(lab, "alpha")["current"]
    run = start_deploy(clusters["base"])  # back to MLX 0.29.1: its venv is `previous`, a switch alone
    switched = wait_for(lambda: all(mlx_of_current(lab, name) == "0.29.1" for name in NODES), 300, 0.1)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    assert switched, "the switch never happened"
    stuck = stale_nodes(lab)
    print(f"SIGKILL after the switch: Ray still runs the old venv {old} on {sorted(stuck)}")
    assert stuck, "the kill came after every restart: the point was not hit"
    log = converges_after(lab, clusters["base"], "0.29.1")
    for name in stuck:  # the re-run said why it restarts them (the killed run's lock was taken over)
        assert f"Ray restarts on {name}: it runs from venv {old}, current is " in log, log[-4000:]


def test_a_second_deploy_refuses_at_once_naming_the_first(lab, clusters):
    first = start_deploy(clusters["base"])
    holder = f"/home/{NODE_USER}/{LOCK_DIR}/holder"
    assert wait_for(lambda: lab.exec("alpha", ["test", "-f", holder], check=False).returncode == 0, 60), \
        "the first run never took the lock"
    started = time.monotonic()
    second = deploy(clusters["base"])
    refused_in = time.monotonic() - started
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-4000:]
    assert second.returncode == LOCK_HELD_STATUS, second.log[-3000:]
    assert f"pid {first.pid}, running `pyinfra inventory.py deploy.py -y`" in second.log
    assert "Nothing was changed" in second.log and "Connecting" not in second.log
    assert refused_in < 15
    assert lab.exec("alpha", ["test", "-e", holder], check=False).returncode != 0  # released by the first
