"""The host firewall on the lab: with `firewall: true`, Ray's ports refuse a non-node and admit the
nodes, every port Ray listens on is in the rules (so the port pinning is complete), the rules come
back after a reboot; `firewall: false` takes them all away and a re-run changes nothing.

Named to run after test_flow.py (file order), whose last test tears Ray down: the first test here
deploys again. The tests share one lab and build on each other, in order.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from saf.firewall import UNIT_FILE
from tests.conftest import PROJECT_DIR
from tests.lab.conftest import deploy

NODES = {"alpha": ("10.77.0.11", "head"), "beta": ("10.77.0.12", "worker"), "gamma": ("10.77.0.13", "worker")}
PINNED_SINGLE_PORTS = (6381, 6382, 6383, 6384, 6385, 6386)  # node manager ... metrics export (group_data/all.py)


@pytest.fixture(scope="module")
def clusters(lab, tmp_path_factory):
    where = tmp_path_factory.mktemp("firewall")
    return {"on": lab.write_cluster_file(list(NODES), {"firewall": True}, path=where / "on.yaml"),
            "off": lab.write_cluster_file(list(NODES), {"firewall": False}, path=where / "off.yaml")}


def latest_report() -> dict:
    return json.loads((PROJECT_DIR / ".saf/reports/latest.json").read_text())


def tcp_connect(ip: str, port: int) -> list[str]:
    return ["timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"]


def outsider_reaches(lab, ip: str, port: int) -> bool:
    return lab.outsider_exec(tcp_connect(ip, port)).returncode == 0


def node_reaches(lab, name: str, ip: str, port: int) -> bool:
    return lab.exec(name, tcp_connect(ip, port), check=False).returncode == 0


def ray_pids(lab, name: str) -> set[str]:
    """The processes of the node's Ray service: its cgroup's, in any hierarchy (v1, v2), sub-groups too."""
    _, role = NODES[name]
    cgroup = lab.exec(name, ["systemctl", "show", "-p", "ControlGroup", "--value", f"saf-ray-{role}.service"])
    path = cgroup.stdout.strip()
    procs = lab.exec(name, ["sh", "-c", f"find /sys/fs/cgroup -path '*{path}*' -name cgroup.procs -exec cat {{}} +"])
    return set(procs.stdout.split())


def ray_listening_ports(lab, name: str) -> dict[int, str]:
    """{port: program} of every TCP socket a process of the node's Ray service listens on at its
    cluster ip, or on every address (Ray's gRPC servers do, whatever --node-ip-address says)."""
    ip, _ = NODES[name]
    pids = ray_pids(lab, name)
    assert pids, f"no process in {name}'s Ray service"
    ports = {}
    for line in lab.exec(name, ["ss", "-ltnpH"]).stdout.splitlines():
        address, port = line.split()[3].rsplit(":", 1)
        address = address.strip("[]").removeprefix("::ffff:")
        owners = re.findall(r'\("([^"]+)",pid=(\d+)', line)
        if address in (ip, "0.0.0.0", "*", "::") and any(pid in pids for _, pid in owners):
            ports[int(port)] = owners[0][0]
    return ports


def loaded_ray_ports(lab, name: str) -> list[tuple[int, int]]:
    """The ranges of the set ray_ports as the node's kernel has it (nft's JSON)."""
    listed = json.loads(lab.exec(name, ["nft", "-j", "list", "set", "inet", "saf", "ray_ports"]).stdout)
    elements = next(item["set"] for item in listed["nftables"] if "set" in item)["elem"]
    return [tuple(e["range"]) if isinstance(e, dict) else (e, e) for e in elements]


def table_loaded(lab, name: str) -> bool:
    return lab.exec(name, ["nft", "list", "table", "inet", "saf"], check=False).returncode == 0


def test_a_cluster_with_the_firewall_forms_and_verifies(lab, clusters):
    result = deploy(clusters["on"])
    assert result.returncode == 0, result.log[-3000:]
    assert latest_report()["ok"], latest_report()["problems"]
    assert latest_report()["collective"]["ok"] and latest_report()["collective"]["ranks"] == 3  # the ring's ports admitted
    for name in NODES:
        assert table_loaded(lab, name)
        assert lab.exec(name, ["systemctl", "is-enabled", "saf-firewall.service"]).stdout.strip() == "enabled"


def test_a_non_node_reaches_no_ray_port_while_the_nodes_do(lab):
    assert not outsider_reaches(lab, "10.77.0.11", 6380)
    assert node_reaches(lab, "beta", "10.77.0.11", 6380)
    listening = ray_listening_ports(lab, "beta")
    stable = [port for port in PINNED_SINGLE_PORTS if port in listening]
    assert 6381 in stable and 6382 in stable, listening  # the raylet listens where it was told to
    for port in stable:
        assert node_reaches(lab, "alpha", "10.77.0.12", port), f"alpha cannot reach beta's {port}"
    for name in ("alpha", "beta"):
        ip, _ = NODES[name]
        for port, program in ray_listening_ports(lab, name).items():
            assert not outsider_reaches(lab, ip, port), f"the outsider reaches {name}'s {port} ({program})"
    assert node_reaches(lab, "alpha", "10.77.0.12", 22) and outsider_reaches(lab, "10.77.0.12", 22)  # SSH untouched


@pytest.mark.parametrize("name", ["alpha", "beta"])
def test_every_port_ray_listens_on_is_in_the_rules(lab, name):
    ranges = loaded_ray_ports(lab, name)
    listening = ray_listening_ports(lab, name)
    uncovered = {port: program for port, program in listening.items()
                 if not any(low <= port <= high for low, high in ranges)}
    assert listening and not uncovered, f"{name}: Ray listens on {uncovered} outside the rules {ranges}"


def test_the_rules_are_back_after_a_reboot(lab):
    lab.reboot("beta")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not table_loaded(lab, "beta"):
        time.sleep(1)
    assert table_loaded(lab, "beta")
    assert not outsider_reaches(lab, "10.77.0.12", 6381)


def test_a_node_blocked_from_a_peer_s_ring_port_fails_the_collective_by_name(lab, clusters):
    # beta drops gamma's connections to beta's ring port (rank 1: mlx_ring_port + 1) only
    lab.exec("beta", ["nft", "insert", "rule", "inet", "saf", "input", "ip", "saddr", "10.77.0.13", "tcp", "dport",
                      "6391", "drop"])
    try:
        result = deploy(clusters["on"], deploy_file="tasks/verify.py")
        assert result.returncode != 0
        assert "gamma cannot reach beta's MLX ring port (10.77.0.12:6391)" in result.log
        collective = latest_report()["collective"]
        assert collective["ok"] is False and len(collective["problems"]) == 1, collective
        assert [n["name"] for n in latest_report()["nodes"] if not n["ok"]] == ["gamma"]
    finally:
        lab.exec("beta", ["nft", "-f", "/etc/saf/firewall.nft"])  # the rules as SAF wrote them


def test_firewall_off_removes_the_rules_and_a_rerun_changes_nothing(lab, clusters):
    off = deploy(clusters["off"])
    assert off.returncode == 0, off.log[-3000:]
    assert latest_report()["ok"], latest_report()["problems"]
    for name in NODES:
        assert not table_loaded(lab, name)
        assert lab.exec(name, ["test", "-e", UNIT_FILE], check=False).returncode != 0
        assert lab.exec(name, ["test", "-e", "/etc/saf/firewall.nft"], check=False).returncode != 0
    assert outsider_reaches(lab, "10.77.0.11", 6380)  # it was the firewall that refused it
    again = deploy(clusters["off"])
    assert again.returncode == 0, again.log[-3000:]
    assert again.changes == 0, [op["name"] for op in again.results["operations"] if op["success"]]
