"""The whole flow on the lab, in order, as a user lives it: onboarding from nothing, a converged
re-run, identical Python everywhere, a pin upgrade, and an unreachable node.

The tests share one lab and run in file order; each builds on the state the previous one left.
"""

from __future__ import annotations

import json

import pytest

from saf.lab.layout import NODE_USER
from tests.lab.conftest import deploy

NODES = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def clusters(lab, tmp_path_factory):
    """Cluster files over the lab's nodes: two nodes, all three, and all three with MLX 0.29.3."""
    where = tmp_path_factory.mktemp("clusters")
    return {
        "two": lab.write_cluster_file(["alpha", "beta"], path=where / "two.yaml"),
        "three": lab.write_cluster_file(list(NODES), path=where / "three.yaml"),
        "upgraded": lab.write_cluster_file(list(NODES), {"mlx_version": "0.29.3"}, path=where / "upgraded.yaml"),
    }


def venv_report(lab, name: str) -> dict:
    script = ("import json, platform, sys, os, importlib.metadata as m; print(json.dumps({"
              "'python': sys.version, 'prefix': os.path.realpath(sys.prefix), "
              "'pins': {d: m.version(d) for d in ('ray', 'mlx', 'numpy')}}))")
    out = lab.exec(name, [f"/home/{NODE_USER}/saf/venv/current/bin/python", "-c", script], user=NODE_USER).stdout
    return json.loads(out)


def test_two_nodes_from_nothing_then_gamma_onboarded_alone(lab, clusters):
    first = deploy(clusters["two"])
    assert first.returncode == 0, first.log[-3000:]
    assert first.changed_hosts() == {"alpha", "beta"}
    onboard = deploy(clusters["three"], "--limit", "gamma")
    assert onboard.returncode == 0, onboard.log[-3000:]
    assert onboard.changed_hosts() == {"gamma"}


def test_rerun_on_a_converged_cluster_changes_nothing(lab, clusters):
    again = deploy(clusters["three"])
    assert again.returncode == 0, again.log[-3000:]
    assert again.changes == 0, [op["name"] for op in again.results["operations"] if op["success"]]


def test_every_node_has_the_same_python_venv_path_and_pins(lab):
    reports = {name: venv_report(lab, name) for name in NODES}
    assert len({r["python"] for r in reports.values()}) == 1
    assert reports["alpha"]["python"].startswith("3.11.2 ")
    assert len({r["prefix"] for r in reports.values()}) == 1
    for report in reports.values():
        assert report["pins"] == {"ray": "2.49.1", "mlx": "0.29.1", "numpy": "2.0.2"}


def test_a_pin_upgrade_changes_only_the_venv_and_every_node_reports_it(lab, clusters):
    upgrade = deploy(clusters["upgraded"])
    assert upgrade.returncode == 0, upgrade.log[-3000:]
    changed_ops = {op["name"] for op in upgrade.results["operations"] if op["success"]}
    assert changed_ops and all("tasks/venv.py" in name for name in changed_ops), changed_ops
    for name in NODES:
        assert venv_report(lab, name)["pins"]["mlx"] == "0.29.3"
    assert deploy(clusters["upgraded"]).changes == 0


def test_an_unreachable_node_fails_the_run_by_name_and_the_next_run_converges(lab, clusters):
    lab.stop_sshd("beta")
    try:
        back = deploy(clusters["three"])  # back to MLX 0.29.1: its venv is `previous` everywhere
        assert back.returncode != 0
        assert "beta" in back.results["failed_hosts"] or "[beta]" in back.log
        assert {"alpha", "gamma"} <= back.changed_hosts()
        for name in ("alpha", "gamma"):
            assert venv_report(lab, name)["pins"]["mlx"] == "0.29.1"
    finally:
        lab.start_sshd("beta")
    again = deploy(clusters["three"])
    assert again.returncode == 0, again.log[-3000:]
    assert again.changed_hosts() == {"beta"}
    assert venv_report(lab, "beta")["pins"]["mlx"] == "0.29.1"
