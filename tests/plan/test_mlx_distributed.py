"""MLX distributed, planned against fixture facts: every node gets ~/.saf/mlx/hostfile.json in
``mlx.launch --hostfile``'s format (cluster order, cluster ips, the SSH user), as the SSH user (no
sudo); a converged node gets nothing, and a new node in the cluster file rewrites the others'."""

from __future__ import annotations

import hashlib
import json

from tests.conftest import THREE_MACS
from tests.facts import converged_mac, fresh_debian, fresh_mac

HOSTFILE = "/Users/arthurdell/.saf/mlx/hostfile.json"
THREE_HOSTS = [{"ssh": "arthurdell@192.168.1.172", "ips": ["192.168.1.172"]},
               {"ssh": "arthurdell@192.168.1.42", "ips": ["192.168.1.42"]},
               {"ssh": "arthurdell@192.168.1.43", "ips": ["192.168.1.43"]}]


def test_a_fresh_mac_gets_mlx_launch_s_hostfile_with_every_node_in_rank_order(plan):
    alpha = plan({"alpha": fresh_mac()}, limit=["alpha"])["alpha"]
    directory = alpha.op("MLX hostfile directory")
    assert directory.commands == ["mkdir -p /Users/arthurdell/.saf/mlx"] and not directory.sudo
    hostfile = alpha.op("MLX hostfile for mlx.launch")
    assert json.loads(hostfile.uploads[HOSTFILE]) == THREE_HOSTS
    assert not hostfile.sudo and f"chmod 644 {HOSTFILE}" in hostfile.commands


def test_a_node_added_to_the_cluster_file_rewrites_the_others_hostfiles(plan):
    two = {"nodes": THREE_MACS["nodes"][:2]}
    old = json.dumps(THREE_HOSTS[:2], indent=2) + "\n"
    alpha = converged_mac(**{f"files.Sha1File:{HOSTFILE}": hashlib.sha1(old.encode()).hexdigest()})
    assert plan({"alpha": alpha}, cluster=two, limit=["alpha"])["alpha"].changing_ops == []  # converged on two nodes
    planned = plan({"alpha": alpha}, limit=["alpha"])["alpha"]  # gamma added
    assert [op.name.split(" | ")[-1] for op in planned.changing_ops] == [
        "MLX hostfile for mlx.launch (ring, cluster ips)"]
    assert json.loads(planned.op("MLX hostfile for mlx.launch").uploads[HOSTFILE]) == THREE_HOSTS


def test_a_debian_node_without_an_ssh_user_is_listed_by_its_ip(plan):
    debians = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"},
                         {"name": "beta", "role": "worker", "address": "beta.lan", "ip": "10.0.0.2"}]}
    alpha = plan({"alpha": fresh_debian()}, cluster=debians, limit=["alpha"])["alpha"]
    assert json.loads(alpha.op("MLX hostfile for mlx.launch").uploads["/home/saf/.saf/mlx/hostfile.json"]) == [
        {"ssh": "10.0.0.1", "ips": ["10.0.0.1"]}, {"ssh": "10.0.0.2", "ips": ["10.0.0.2"]}]
