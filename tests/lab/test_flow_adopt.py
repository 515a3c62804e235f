"""Adopting a hand-run Ray (issue 15) on the lab, as the seeds' cluster was run.

After test_flow.py's teardown (file order), no SAF service runs Ray: the nodes are as a hand-run
site before its first deploy. Ray is started by hand as the seeds did (seeds/004): a head on alpha
with the dashboard on 0.0.0.0, from a venv of its own; a worker on beta from another interpreter
(Debian's python3, a venv with a pip-installed Ray) joined to it. The deploy (foreign_ray: stop,
the default) stops both, SAF's services take over, nothing listens on 0.0.0.0:8265, the
verification is OK and a re-run changes nothing. beta also holds a systemd unit of its own that
runs `ray start` (enabled, not started): the deploy disables it and keeps its file under the run's
backup folder at its whole path, with a manifest. Then a Ray process started outside SAF on a
converged cluster fails `saf verify` for that node by name, and `foreign_ray: refuse` stops a node
with the list and the fix, changing nothing on it. Last, `saf restore-launchers --limit beta` puts
the unit back at its path, enabled and not started.

The tests share one lab and build on each other, in order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saf.facts.ray import PS_UNITS_COMMAND, RayProcessUnits
from saf.lab.layout import NODE_USER
from tests.conftest import PROJECT_DIR
from tests.lab.conftest import deploy

NODES = ("alpha", "beta", "gamma")
HAND_VENV = f"/home/{NODE_USER}/ray-by-hand"
HAND_WHEELS = f"/home/{NODE_USER}/ray-by-hand-wheels"
PYENV_PYTHON = f"/home/{NODE_USER}/.pyenv/versions/3.11.2/bin/python"  # the lab's pin, built by the first deploy
DEBIAN_PYTHON = "/usr/bin/python3"
SAF_UNIT = {"alpha": "saf-ray-head.service", "beta": "saf-ray-worker.service", "gamma": "saf-ray-worker.service"}
HEAD = "10.77.0.11"
HAND_UNIT = "/etc/systemd/system/ray-by-hand.service"  # beta's own launcher, as a site may have written it
BACKUPS = f"/home/{NODE_USER}/.saf/foreign-ray-backup"
SAF = str(Path(sys.executable).parent / "saf")  # the venv's saf command


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    return lab.write_cluster_file(list(NODES), path=tmp_path_factory.mktemp("adopt") / "three.yaml")


@pytest.fixture(scope="module")
def refusing(lab, tmp_path_factory):
    return lab.write_cluster_file(list(NODES), {"foreign_ray": "refuse"},
                                  path=tmp_path_factory.mktemp("refuse") / "three.yaml")


def latest_report() -> dict:
    return json.loads((PROJECT_DIR / ".saf/reports/latest.json").read_text())


def ray_processes(lab, name: str) -> list[dict]:
    """Every Ray process on the node with its systemd unit, read as the deploy reads it."""
    out = lab.exec(name, ["sh", "-c", PS_UNITS_COMMAND]).stdout
    return RayProcessUnits().process(out.splitlines())


def outside_saf(lab, name: str) -> set[int]:
    """The pids of the node's Ray processes that are not in SAF's unit."""
    return {p["pid"] for p in ray_processes(lab, name) if p["unit"] != SAF_UNIT[name]}


def in_saf(lab, name: str) -> set[int]:
    return {p["pid"] for p in ray_processes(lab, name) if p["unit"] == SAF_UNIT[name]}


def listens(lab, name: str, address: str, port: int) -> bool:
    out = lab.exec(name, ["ss", "-Hltn"]).stdout
    return any(line.split()[3] == f"{address}:{port}" for line in out.splitlines() if line.strip())


def wait_until(check, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1)
    return check()


def venv_by_hand(lab, name: str, interpreter: str) -> str:
    """A venv of the node's own, outside SAF's (``interpreter -m venv``), with Ray installed by pip
    from the wheels SAF downloaded (the lab has no internet); its ``ray``."""
    wheels = next((PROJECT_DIR / ".saf/wheelhouse").glob("*/py3.11.2-ray2.49.1-mlx0.29.1-*"))
    on_node = lab.layout.node_dir(name) / "root" / HAND_WHEELS.lstrip("/")
    shutil.rmtree(on_node, ignore_errors=True)
    shutil.copytree(wheels, on_node)
    shutil.chown(on_node, 1000, 1000)
    lab.exec(name, [interpreter, "-m", "venv", "--without-pip", HAND_VENV], user=NODE_USER)
    lab.exec(name, [PYENV_PYTHON, "-m", "pip", "--python", f"{HAND_VENV}/bin/python", "install", "--quiet",
                    "--no-index", "--find-links", HAND_WHEELS, "ray[default]==2.49.1"], user=NODE_USER, timeout=600)
    return f"{HAND_VENV}/bin/ray"


def ray_by_hand(lab, name: str, ray: str, arguments: str) -> None:
    """`ray start` as the node's user typed it over SSH (seeds/004), its output to a log file."""
    command = (f"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 {ray} start {arguments} --disable-usage-stats "
               f"> ~/ray-by-hand.log 2>&1 < /dev/null")
    lab.exec(name, ["sh", "-c", command], user=NODE_USER, timeout=180)


def test_a_hand_run_cluster_before_the_first_deploy(lab):
    for name in NODES:
        assert in_saf(lab, name) == set(), f"{name}: SAF's Ray runs; test_flow.py's teardown should have stopped it"
    head_ray = venv_by_hand(lab, "alpha", PYENV_PYTHON)
    ray_by_hand(lab, "alpha", head_ray, f"--head --port=6380 --node-ip-address={HEAD} --dashboard-host=0.0.0.0")
    assert wait_until(lambda: listens(lab, "alpha", "0.0.0.0", 8265)), "the hand-started dashboard never listened"
    worker_ray = venv_by_hand(lab, "beta", DEBIAN_PYTHON)  # BETA on the system Python, as in the seeds
    ray_by_hand(lab, "beta", worker_ray, f"--address={HEAD}:6380 --node-ip-address=10.77.0.12")

    def beta_raylet_by_hand() -> bool:
        return any("/raylet " in p["command"] and HAND_VENV in p["command"] for p in ray_processes(lab, "beta"))
    assert wait_until(beta_raylet_by_hand), lab.exec("beta", ["tail", "-5", f"/home/{NODE_USER}/ray-by-hand.log"]).stdout
    assert outside_saf(lab, "alpha") and outside_saf(lab, "beta")
    write_hand_unit(lab)


def write_hand_unit(lab) -> None:
    """beta's own unit that would start its worker at boot: enabled, not started (Ray runs by hand now)."""
    unit = (f"[Unit]\nDescription=Ray worker (by hand)\n[Service]\nUser={NODE_USER}\n"
            f"ExecStart={HAND_VENV}/bin/ray start --address={HEAD}:6380 --block\n[Install]\nWantedBy=multi-user.target\n")
    (lab.layout.node_dir("beta") / "root" / HAND_UNIT.lstrip("/")).write_text(unit)
    lab.exec("beta", ["systemctl", "daemon-reload"])
    lab.exec("beta", ["systemctl", "enable", "ray-by-hand.service"])
    assert lab.exec("beta", ["systemctl", "is-enabled", "ray-by-hand.service"]).stdout.strip() == "enabled"


def set_aside(lab) -> list[dict]:
    """beta's manifest entries of the deploy runs that set something aside, oldest run first."""
    out = lab.exec("beta", ["sh", "-c", f"cat {BACKUPS}/*/manifest.jsonl 2>/dev/null || true"]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_the_deploy_stops_the_hand_run_ray_and_saf_s_services_take_over(lab, cluster):
    result = deploy(cluster)
    assert result.returncode == 0, result.log[-3000:]
    assert "[alpha] Ray not started by SAF: pid" in result.log and "[beta] Ray not started by SAF: pid" in result.log
    assert "dashboard.py --host=0.0.0.0 --port=8265" in result.log  # each process named: pid, user, command
    for name in NODES:
        assert outside_saf(lab, name) == set(), name
        assert in_saf(lab, name), f"{name}: no process in {SAF_UNIT[name]}"
    assert not listens(lab, "alpha", "0.0.0.0", 8265) and listens(lab, "alpha", "127.0.0.1", 8265)
    report = latest_report()
    assert report["ok"] and [node["name"] for node in report["nodes"]] == list(NODES)
    # beta's own unit: disabled, its file kept at its whole path under the run's folder, and recorded
    [entry] = [entry for entry in set_aside(lab) if entry["name"] == "ray-by-hand.service"]
    assert entry["kind"] == "system unit" and entry["path"] == HAND_UNIT
    assert entry["saved"].startswith(f"{BACKUPS}/") and entry["saved"].endswith(f"/files{HAND_UNIT}")
    assert lab.exec("beta", ["test", "-f", entry["saved"]], check=False).returncode == 0
    assert lab.exec("beta", ["test", "-e", HAND_UNIT], check=False).returncode == 1


def test_a_re_run_on_the_adopted_cluster_changes_nothing(lab, cluster):
    again = deploy(cluster)
    assert again.returncode == 0, again.log[-3000:]
    assert again.changes == 0, [op["name"] for op in again.results["operations"] if op["success"]]
    assert "Ray not started by SAF" not in again.log


def test_ray_started_outside_saf_on_a_converged_cluster_fails_the_verification_by_name(lab, cluster):
    gamma_ray = venv_by_hand(lab, "gamma", DEBIAN_PYTHON)
    ray_by_hand(lab, "gamma", gamma_ray, "--head --port=6390 --node-ip-address=10.77.0.13 --dashboard-port=8266 "
                                         "--ray-client-server-port=9091")
    assert wait_until(lambda: bool(outside_saf(lab, "gamma")))
    verified = deploy(cluster, deploy_file="tasks/verify.py")
    assert verified.returncode != 0
    assert "gamma: Ray process not started by SAF's service: pid" in verified.log
    report = latest_report()
    assert [node["name"] for node in report["nodes"] if not node["ok"]] == ["gamma"]
    repaired = deploy(cluster)  # foreign_ray: stop
    assert repaired.returncode == 0, repaired.log[-3000:]
    assert outside_saf(lab, "gamma") == set() and latest_report()["ok"]


def test_refuse_stops_the_node_with_the_list_and_leaves_its_ray_as_it_was(lab, cluster, refusing):
    ray_by_hand(lab, "beta", f"{HAND_VENV}/bin/ray", "--head --port=6390 --node-ip-address=10.77.0.12 "
                                                     "--dashboard-host=0.0.0.0 --ray-client-server-port=9091")
    assert wait_until(lambda: listens(lab, "beta", "0.0.0.0", 8265))
    before = outside_saf(lab, "beta")
    refused = deploy(refusing)
    assert refused.returncode != 0
    assert "beta runs Ray outside SAF's service (foreign_ray: refuse)" in refused.log
    assert "`ray stop` as saf, or `kill " in refused.log and "or set foreign_ray: stop" in refused.log
    assert "beta" not in refused.changed_hosts()  # nothing changed on it
    assert outside_saf(lab, "beta") == before and listens(lab, "beta", "0.0.0.0", 8265)
    adopted = deploy(cluster)  # foreign_ray: stop (the default) adopts it
    assert adopted.returncode == 0, adopted.log[-3000:]
    assert outside_saf(lab, "beta") == set() and not listens(lab, "beta", "0.0.0.0", 8265)
    assert deploy(cluster).changes == 0


def restore_launchers(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SAF, "restore-launchers", *args], cwd=PROJECT_DIR, capture_output=True, text=True,
                          env={**os.environ, "SAF_CLUSTER": str(cluster)}, stdin=subprocess.DEVNULL, timeout=600)


def test_restore_puts_beta_s_unit_back_enabled_and_not_started(lab, cluster):
    [saved] = [entry["saved"] for entry in set_aside(lab) if entry["name"] == "ray-by-hand.service"]
    restored = restore_launchers(cluster, "--limit", "beta")
    try:
        assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
        assert "put back, not started: the system unit ray-by-hand.service" in restored.stdout + restored.stderr
        assert lab.exec("beta", ["test", "-f", HAND_UNIT], check=False).returncode == 0
        assert lab.exec("beta", ["test", "-e", saved], check=False).returncode == 1
        assert lab.exec("beta", ["systemctl", "is-enabled", "ray-by-hand.service"]).stdout.strip() == "enabled"
        assert lab.exec("beta", ["systemctl", "is-active", "ray-by-hand.service"], check=False).stdout.strip() \
            == "inactive"  # enabled for the next boot, not started
        assert set_aside(lab) == []  # every manifest read is marked restored: a second run has nothing to do
        again = restore_launchers(cluster, "--limit", "beta")
        assert again.returncode == 0 and "nothing set aside by SAF to put back" in again.stdout + again.stderr
    finally:  # leave beta as the other modules expect it: no launcher of its own
        lab.exec("beta", ["sh", "-c", f"systemctl disable ray-by-hand.service; rm -f {HAND_UNIT}; "
                                      "systemctl daemon-reload"], check=False)
