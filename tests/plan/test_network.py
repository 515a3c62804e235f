"""The cluster interface's MTU, planned against macOS reference outputs and Debian facts."""

from __future__ import annotations

import hashlib
import logging

from tests.planning import Raw
from tests.facts import IP_ADDR, converged_mac, fresh_debian, fresh_mac, mac_network

ONE_MAC = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172"}]}
ONE_DEBIAN = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}]}


def network_ops(host_plan):
    return [op for op in host_plan.ops if op.name.startswith("tasks/network.py")]


def test_mac_at_1500_gets_set_mtu_9000(plan):
    alpha = plan({"alpha": fresh_mac()}, cluster=ONE_MAC)["alpha"]
    op = alpha.op("Set MTU 9000 on en0 (Ethernet)")
    assert op.commands == ["networksetup -setMTU en0 9000"]
    assert op.sudo


def test_mac_at_9000_gets_nothing(plan):
    alpha = plan({"alpha": converged_mac()}, cluster=ONE_MAC)["alpha"]
    assert [op for op in network_ops(alpha) if op.changes] == []


def test_mac_active_but_not_persistent_mtu_is_set(plan):
    facts = fresh_mac(**{**mac_network(mtu=9000), "network.MacMTU:en0": Raw("Active MTU: 9000 (Current Setting: 1500)")})
    alpha = plan({"alpha": facts}, cluster=ONE_MAC)["alpha"]
    assert alpha.op("Set MTU").commands == ["networksetup -setMTU en0 9000"]


def test_tailscale_address_is_skipped_with_a_warning(plan, caplog):
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "100.106.170.128"}]}
    with caplog.at_level(logging.WARNING):
        alpha = plan({"alpha": fresh_mac()}, cluster=cluster)["alpha"]
    assert network_ops(alpha) == []
    assert "utun4 is a tunnel (Tailscale/VPN): it cannot carry jumbo frames" in caplog.text


def test_wifi_is_skipped_with_a_warning(plan, caplog):
    wifi = fresh_mac(**{"network.MacInterfaces": Raw(
        "en1: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500\n\tinet 192.168.1.172 netmask 0xffffff00\n")})
    with caplog.at_level(logging.WARNING):
        alpha = plan({"alpha": wifi}, cluster=ONE_MAC)["alpha"]
    assert network_ops(alpha) == []
    assert "en1 is Wi-Fi" in caplog.text


def test_mtu_outside_the_device_range_fails_clearly(plan):
    facts = fresh_mac(**{"network.MacValidMTURange:en0": Raw("Valid MTU Range: 1280-1500\n")})
    alpha = plan({"alpha": facts}, cluster=ONE_MAC)["alpha"]
    reason = alpha.op("Cluster interface MTU").commands[0]
    assert "en0 (Ethernet) on alpha accepts an MTU of 1280-1500, not 9000" in reason


def test_unknown_cluster_ip_stops_the_node(plan):
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.99"}]}
    alpha = plan({"alpha": fresh_mac()}, cluster=cluster)["alpha"]
    assert "no interface on alpha has the cluster ip 192.168.1.99" in alpha.op("Cluster interface").commands[0]


def test_manage_mtu_off_leaves_interfaces_alone(plan):
    cluster = {**ONE_MAC, "settings": {"manage_mtu": False}}
    alpha = plan({"alpha": fresh_mac()}, cluster=cluster)["alpha"]
    assert network_ops(alpha) == []


def test_debian_sets_mtu_and_keeps_it_with_a_boot_unit(plan):
    alpha = plan({"alpha": fresh_debian()}, cluster=ONE_DEBIAN)["alpha"]
    assert alpha.op("Set MTU 9000 on eth0").commands == ["ip link set dev eth0 mtu 9000"]
    unit = alpha.op("saf-mtu.service)").uploads["/etc/systemd/system/saf-mtu.service"].decode()
    assert "ExecStart=/usr/sbin/ip link set dev eth0 mtu 9000" in unit
    assert "systemctl enable saf-mtu.service" in alpha.op("Enable saf-mtu").commands


def test_debian_at_9000_with_unit_in_place_changes_nothing(plan):
    fresh = plan({"alpha": fresh_debian()}, cluster=ONE_DEBIAN)["alpha"]
    unit = fresh.op("saf-mtu.service)").uploads["/etc/systemd/system/saf-mtu.service"]
    facts = fresh_debian(**{
        "network.LinuxInterfaces": Raw(IP_ADDR.replace("MTU", "9000")),
        "files.File:/etc/systemd/system/saf-mtu.service": {"mode": 644, "user": "root", "group": "root"},
        "files.Sha1File:/etc/systemd/system/saf-mtu.service": hashlib.sha1(unit).hexdigest(),
        "systemd.SystemdStatus:*": {"saf-mtu.service": True},
        "systemd.SystemdEnabled:*": {"saf-mtu.service": True},
    })
    alpha = plan({"alpha": facts}, cluster=ONE_DEBIAN)["alpha"]
    assert [op.name for op in network_ops(alpha) if op.changes] == []
