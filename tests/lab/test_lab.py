"""The lab itself: nodes isolated like separate machines, reachable only with the lab's key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from saf.lab.layout import NODE_USER


def test_each_node_has_its_own_hostname_and_running_systemd(lab):
    for name in ("alpha", "beta", "gamma"):
        assert lab.exec(name, ["hostname"]).stdout.strip() == name
        state = lab.exec(name, ["systemctl", "is-system-running"], check=False).stdout.strip()
        assert state in ("running", "degraded"), (name, state)
        assert lab.exec(name, ["cat", "/proc/1/comm"]).stdout.strip() == "systemd"


def test_each_node_has_its_own_tmp(lab, tmp_path):
    marker = f"saf-lab-test-{tmp_path.name}"
    lab.exec("alpha", ["touch", f"/tmp/{marker}"])
    try:
        assert lab.exec("beta", ["ls", f"/tmp/{marker}"], check=False).returncode != 0
        assert not Path("/tmp", marker).exists()
    finally:
        lab.exec("alpha", ["rm", "-f", f"/tmp/{marker}"])


def test_ssh_takes_the_lab_key_and_refuses_passwords(lab):
    node = lab.node("beta")
    ok = subprocess.run(lab.ssh_argv("beta", ["id", "-un"]), capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout.strip() == NODE_USER
    transport = paramiko.Transport((node.address, 22))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password(NODE_USER, "saf")
        assert refused.value.allowed_types == ["publickey"]
    finally:
        transport.close()


def test_the_deploy_user_has_passwordless_sudo_and_its_own_home(lab):
    result = lab.exec("gamma", ["sh", "-c", "sudo -n true && echo ok; echo $HOME"], user=NODE_USER)
    assert result.stdout.split() == ["ok", f"/home/{NODE_USER}"]


def test_nodes_reach_each_other_and_jumbo_frames_stop_at_1500(lab):
    beta = lab.node("beta").address
    assert lab.exec("alpha", ["ping", "-c", "1", "-W", "2", beta], user=NODE_USER, check=False).returncode == 0
    original = lab.exec("alpha", ["cat", "/sys/class/net/eth0/mtu"]).stdout.strip()
    lab.exec("alpha", ["ip", "link", "set", "eth0", "mtu", "1500"])
    try:
        jumbo = lab.exec("alpha", ["ping", "-M", "do", "-s", "8972", "-c", "1", "-W", "2", beta], check=False)
        assert jumbo.returncode != 0
        fits = lab.exec("alpha", ["ping", "-M", "do", "-s", "1472", "-c", "1", "-W", "2", beta], check=False)
        assert fits.returncode == 0
    finally:
        lab.exec("alpha", ["ip", "link", "set", "eth0", "mtu", original])


def test_a_node_reads_its_own_interfaces_in_sys_class_net(lab):
    # nspawn shares this machine's /sys with a node in a network namespace of ours: the node mounts
    # its own /sys/class/net at boot, or it would read this machine's interfaces and MTUs there
    listed = lab.exec("beta", ["ls", "/sys/class/net"]).stdout.split()
    assert sorted(listed) == ["eth0", "lo"]
    original = lab.exec("beta", ["ip", "-o", "link", "show", "eth0"]).stdout.split(" mtu ")[1].split()[0]
    assert lab.exec("beta", ["cat", "/sys/class/net/eth0/mtu"]).stdout.strip() == original
    lab.exec("beta", ["ip", "link", "set", "eth0", "mtu", "1600"])
    try:
        assert lab.exec("beta", ["cat", "/sys/class/net/eth0/mtu"]).stdout.strip() == "1600"
    finally:
        lab.exec("beta", ["ip", "link", "set", "eth0", "mtu", original])


def test_the_outsider_is_on_the_bridge_but_not_a_node(lab):
    assert lab.outsider_exec(["ping", "-c", "1", "-W", "2", lab.node("alpha").address]).returncode == 0
    assert "outsider" not in [node.name for node in lab.nodes()]
