"""Adopting a hand-run Ray (issue 15) on the lab: on a converged cluster, Ray started by hand on a
worker as a head with the dashboard on 0.0.0.0 (as the node's user, with the venv's ray, as the
seeds did); the next deploy stops it (foreign_ray: stop, the default), nothing listens on
0.0.0.0:8265 any more, SAF's own worker was never touched, the verification is OK, and a re-run
changes nothing. Then `foreign_ray: refuse` on a node running Ray by hand: that node stops with the
list and the fix, its hand-started Ray untouched, until a deploy with `stop` adopts it.

Named to run after test_flow.py (file order), whose last test tears Ray down: the first test here
deploys again. The tests share one lab and build on each other, in order.
"""

from __future__ import annotations

import json
import time

import pytest

from saf.facts.ray import PS_UNITS_COMMAND, RayProcessUnits
from saf.lab.layout import NODE_USER
from tests.conftest import PROJECT_DIR
from tests.lab.conftest import deploy

# Not passing on the lab yet (first lab run, 2026-11-30): right after the deploy that starts this
# module, beta showed no process in saf-ray-worker.service, and the hand-started head's processes were
# not found as expected. Issue 15 stays open until this module passes; the plan and unit tests of
# foreign_ray run meanwhile.
pytestmark = pytest.mark.skip(reason="issue 15: the adoption flow has not passed on the lab yet")

NODES = ("alpha", "beta", "gamma")
VENV_RAY = f"/home/{NODE_USER}/saf/venv/current/bin/ray"
SAF_UNIT = {"alpha": "saf-ray-head.service", "beta": "saf-ray-worker.service", "gamma": "saf-ray-worker.service"}


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    return lab.write_cluster_file(list(NODES), path=tmp_path_factory.mktemp("adopt") / "three.yaml")


@pytest.fixture(scope="module")
def refusing(lab, tmp_path_factory):
    return lab.write_cluster_file(list(NODES), {"foreign_ray": "refuse"},
                                  path=tmp_path_factory.mktemp("refuse") / "three.yaml")


@pytest.fixture(scope="module")
def hand_started() -> dict[str, set[int]]:
    """The pids of the Ray started by hand, per node, as the tests find them."""
    return {}


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


def main_pid(lab, name: str) -> str:
    """The pid of SAF's `ray start --block` (its unit's main process): the same pid, the same service."""
    return lab.exec(name, ["systemctl", "show", "-p", "MainPID", "--value", SAF_UNIT[name]]).stdout.strip()


def listens(lab, name: str, address: str, port: int) -> bool:
    out = lab.exec(name, ["ss", "-Hltn"]).stdout
    return any(line.split()[3] == f"{address}:{port}" for line in out.splitlines() if line.strip())


def test_a_converged_cluster_to_start_from(lab, cluster):
    result = deploy(cluster)
    assert result.returncode == 0, result.log[-3000:]
    for name in NODES:
        assert outside_saf(lab, name) == set(), name
        assert in_saf(lab, name), f"{name}: no process in {SAF_UNIT[name]}"


def start_a_head_by_hand(lab, name: str) -> None:
    """As the seeds did it (seeds/004): `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 ray start --head --port=6380
    --dashboard-host=0.0.0.0`, here with the venv's ray, as the node's user, beside SAF's worker."""
    lab.exec(name, ["env", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1", VENV_RAY, "start", "--head", "--port=6380",
                    "--dashboard-host=0.0.0.0", "--disable-usage-stats"], user=NODE_USER, timeout=180)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not listens(lab, name, "0.0.0.0", 8265):
        time.sleep(1)
    assert listens(lab, name, "0.0.0.0", 8265), f"the dashboard started by hand on {name} never listened on 0.0.0.0:8265"


def test_ray_started_by_hand_on_a_worker_as_a_head_with_an_open_dashboard(lab, hand_started):
    start_a_head_by_hand(lab, "gamma")
    hand_started["gamma"] = outside_saf(lab, "gamma")
    commands = {p["pid"]: p["command"] for p in ray_processes(lab, "gamma")}
    assert any("/gcs_server " in commands[pid] for pid in hand_started["gamma"])  # a second GCS, a second raylet
    assert any("/raylet " in commands[pid] for pid in hand_started["gamma"])
    hand_started["saf_main_pid"] = main_pid(lab, "gamma")


def test_the_deploy_stops_it_and_leaves_saf_s_worker_alone(lab, cluster, hand_started):
    assert hand_started.get("gamma"), "the previous test started nothing by hand"
    result = deploy(cluster)
    assert result.returncode == 0, result.log[-3000:]
    assert "[gamma] Ray not started by SAF: pid" in result.log
    assert "dashboard.py --host=0.0.0.0 --port=8265" in result.log  # each process named: pid, user, command
    changed = {op["name"] for op in result.results["operations"] if op["success"]}
    assert changed and all(name.startswith("tasks/foreign_ray.py | ") for name in changed), changed
    assert result.changed_hosts() == {"gamma"}
    assert outside_saf(lab, "gamma") == set()
    assert not hand_started["gamma"] & {p["pid"] for p in ray_processes(lab, "gamma")}
    assert not listens(lab, "gamma", "0.0.0.0", 8265)
    assert main_pid(lab, "gamma") == hand_started["saf_main_pid"] != "0"  # SAF's worker was never restarted
    assert in_saf(lab, "gamma")
    report = latest_report()
    assert report["ok"] and [node["name"] for node in report["nodes"]] == list(NODES)


def test_a_re_run_on_the_adopted_cluster_changes_nothing(lab, cluster):
    again = deploy(cluster)
    assert again.returncode == 0, again.log[-3000:]
    assert again.changes == 0, [op["name"] for op in again.results["operations"] if op["success"]]
    assert "Ray not started by SAF" not in again.log
    for name in NODES:
        assert outside_saf(lab, name) == set(), name


def test_refuse_stops_the_node_with_the_list_and_leaves_its_ray_as_it_was(lab, cluster, refusing, hand_started):
    start_a_head_by_hand(lab, "beta")
    before = outside_saf(lab, "beta")
    assert before
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
