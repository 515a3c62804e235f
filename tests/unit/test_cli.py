"""The `saf` command on a cluster file it cannot use: status 2 and the spec's message, no traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from saf.cli import main
from tests.conftest import PROJECT_DIR


@pytest.mark.parametrize("command", [["rotate-token"], ["dashboard"]])
def test_a_broken_cluster_file_exits_2_with_the_message(command, write_cluster, monkeypatch):
    broken = write_cluster({"nodes": [{"name": "alpha", "role": "head", "address": "127.0.0.1"}]})
    monkeypatch.setenv("SAF_CLUSTER", str(broken))
    monkeypatch.chdir(PROJECT_DIR)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 2, result.output
    assert f"Cannot use the cluster file {broken}" in result.output and "loopback" in result.output
    assert "Traceback" not in result.output


def test_ssh_outside_pyinfra_uses_the_nodes_key_known_hosts_port_and_user(write_cluster, tmp_path):
    from saf.spec import load_cluster
    from saf.ssh import ssh_argv, ssh_options

    key, known = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("k"), known.write_text("h")
    cluster = load_cluster(PROJECT_DIR, write_cluster({"nodes": [
        {"name": "alpha", "role": "head", "address": "10.0.0.1", "ssh_user": "arthur", "ssh_port": 2222,
         "ssh_key": str(key), "ssh_known_hosts_file": str(known)},
        {"name": "beta", "role": "worker", "address": "10.0.0.2"}], "settings": {"firewall": True}}))
    alpha, beta = cluster.nodes
    assert ssh_argv(alpha, "uname", options=("-N",)) == [
        "ssh", "-N", "-o", "BatchMode=yes", "-i", str(key), "-o", f"UserKnownHostsFile={known}",
        "-o", "StrictHostKeyChecking=yes", "-p", "2222", "-l", "arthur", "--", "10.0.0.1", "uname"]
    assert ssh_options(alpha, port_flag="-P")[-2:] == ["-P", "2222"]
    assert ssh_argv(beta) == ["ssh", "-o", "BatchMode=yes", "--", "10.0.0.2"]
