"""`saf doctor` on the lab: every row OK on a converged cluster, and a node the deploy would stop on
(lost passwordless sudo, lost cluster interface) named with the fix and a non-zero exit. Read-only:
the cluster is still converged afterwards."""

from __future__ import annotations

import re

import yaml

from saf.lab.layout import NODE_USER
from tests.lab.conftest import deploy

NODES = ("alpha", "beta", "gamma")
VERDICTS = ("OK", "would change", "attention", "cannot")


def doctor(cluster, *args):
    return deploy(cluster, *args, deploy_file="tasks/doctor.py")


def verdicts(log: str) -> dict[str, dict[str, str]]:
    """Each node's table in the doctor's output: {node: {check: verdict}}."""
    tables = {}
    for node, body in re.findall(r"saf doctor: (\w+):\n((?:  .*\n?)+)", log):
        rows = {}
        for line in body.splitlines()[1:]:
            cells = re.split(r"\s{2,}", line.strip())
            verdict = next((cell for cell in cells[1:] if cell in VERDICTS), None)
            if verdict:
                rows[cells[0]] = verdict
        tables[node] = rows
    return tables


def test_doctor_on_a_converged_lab_is_all_ok_and_changes_nothing(lab, tmp_path):
    cluster = lab.write_cluster_file(list(NODES), path=tmp_path / "three.yaml")
    assert deploy(cluster).returncode == 0
    result = doctor(cluster)
    assert result.returncode == 0, result.log[-3000:]
    tables = verdicts(result.log)
    assert set(tables) == set(NODES)
    for node, rows in tables.items():
        assert {"processor", "sudo", "Python", "venv", "MTU", "Ray processes", "Ray service"} <= set(rows), rows
        assert set(rows.values()) == {"OK"}, (node, rows)
    assert result.changes == 0
    assert deploy(cluster).changes == 0  # and the cluster is still converged


def test_doctor_names_a_node_that_lost_passwordless_sudo(lab, tmp_path):
    cluster = lab.write_cluster_file(list(NODES), path=tmp_path / "three.yaml")
    lab.exec("beta", ["mv", f"/etc/sudoers.d/{NODE_USER}", "/root/saf-sudoers.off"])
    try:
        result = doctor(cluster)
    finally:
        lab.exec("beta", ["mv", "/root/saf-sudoers.off", f"/etc/sudoers.d/{NODE_USER}"])
    assert result.returncode != 0
    assert verdicts(result.log)["beta"]["sudo"] == "cannot"
    assert "sudo asks beta's SSH user for a password" in result.log and "/etc/sudoers.d" in result.log
    assert verdicts(result.log)["alpha"]["sudo"] == "OK"


def test_doctor_names_a_node_that_lost_its_cluster_interface(lab, tmp_path):
    # gamma's cluster ip on a link that is gone (a Thunderbolt bridge unplugged, say); SSH still
    # reaches it on its LAN address
    content = yaml.safe_load(lab.write_cluster_file(list(NODES), path=tmp_path / "three.yaml").read_text())
    next(node for node in content["nodes"] if node["name"] == "gamma")["ip"] = "10.77.1.13"
    cluster = tmp_path / "lost.yaml"
    cluster.write_text(yaml.safe_dump(content))
    result = doctor(cluster, "--limit", "gamma")
    assert result.returncode != 0
    assert verdicts(result.log)["gamma"]["cluster interface"] == "cannot"
    assert "no interface on gamma has the cluster ip 10.77.1.13" in result.log
