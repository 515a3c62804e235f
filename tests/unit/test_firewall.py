"""The firewall's rule set: Ray's ports, the peers, the rendered nftables ruleset checked by nft itself,
the port settings' validation, and the facts that read the loaded rules back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra.api.util import get_template

from saf.facts.firewall import AppFirewall, NftRules, PfRules
from saf.firewall import NFT_TEMPLATE, PF_TEMPLATE, PortRange, firewall_rules, merge_ports, ray_ports
from saf.ports import PORT_SETTINGS
from saf.spec import ClusterFileError, load_cluster, load_defaults
from tests.conftest import PROJECT_DIR

DEFAULTS = load_defaults(PROJECT_DIR)
LAB_NODES = [{"name": "alpha", "role": "head", "ip": "10.77.0.11"},
             {"name": "beta", "role": "worker", "ip": "10.77.0.12"},
             {"name": "gamma", "role": "worker", "ip": "10.77.0.13"}]


def settings(**overrides) -> SimpleNamespace:
    return SimpleNamespace(**{**DEFAULTS, "cluster_nodes": LAB_NODES, **overrides})


def render(template: str, data: SimpleNamespace) -> str:
    rules = firewall_rules(data, PROJECT_DIR / template)
    return get_template(str(PROJECT_DIR / template)).render(rules=rules, anchor="com.apple/org.saf.ray")


def test_ports_are_merged_into_sorted_ranges():
    assert merge_ports([(8265, 8265), (6381, 6381), (6380, 6380), (10002, 19999), (10001, 10001), (6383, 6383)]) == (
        PortRange(6380, 6381), PortRange(6383, 6383), PortRange(8265, 8265), PortRange(10001, 19999))


def test_the_default_rules_cover_every_ray_port_setting_and_nothing_else_nearby():
    ports = ray_ports(settings())
    # Ray's, the MLX ring's (one per node: 3), then the head's metrics
    assert [p.nft for p in ports] == ["6380-6386", "6390-6392", "8265", "10001-19999", "44217", "44227"]
    rules = firewall_rules(settings(), PROJECT_DIR / NFT_TEMPLATE)
    assert all(rules.covers(DEFAULTS[key]) for key in PORT_SETTINGS)
    assert not any(rules.covers(port) for port in (22, 6379, 6387, 6389, 6393, 8264, 8266, 10000, 20000, 32768))


def test_the_ring_s_ports_grow_with_the_cluster_and_follow_their_setting():
    four = [*LAB_NODES, {"name": "delta", "role": "worker", "ip": "10.77.0.14"}]
    assert "6390-6393" in [p.nft for p in ray_ports(settings(cluster_nodes=four))]
    assert "7000-7002" in [p.nft for p in ray_ports(settings(mlx_ring_port=7000))]
    base = firewall_rules(settings(), PROJECT_DIR / NFT_TEMPLATE)
    assert firewall_rules(settings(mlx_ring_port=7000), PROJECT_DIR / NFT_TEMPLATE).digest != base.digest


def test_the_digest_follows_ports_peers_and_template():
    base = firewall_rules(settings(), PROJECT_DIR / NFT_TEMPLATE)
    assert firewall_rules(settings(), PROJECT_DIR / NFT_TEMPLATE) == base
    assert firewall_rules(settings(cluster_nodes=LAB_NODES[:2]), PROJECT_DIR / NFT_TEMPLATE).digest != base.digest
    assert firewall_rules(settings(metrics_export_port=7000), PROJECT_DIR / NFT_TEMPLATE).digest != base.digest
    assert firewall_rules(settings(), PROJECT_DIR / PF_TEMPLATE).digest != base.digest


def test_peers_are_split_by_family_and_land_in_both_rule_sets():
    nodes = [*LAB_NODES[:1], {"name": "v6", "role": "worker", "ip": "fd00::12"}]
    rules = firewall_rules(settings(cluster_nodes=nodes), PROJECT_DIR / NFT_TEMPLATE)
    assert (rules.peers4, rules.peers6) == (("10.77.0.11",), ("fd00::12",))
    assert "table <saf_ray_peers> const { 10.77.0.11 fd00::12 }" in render(PF_TEMPLATE, settings(cluster_nodes=nodes))


def nft_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "firewall.nft"
    path.write_text(text)
    return subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)


needs_nft = pytest.mark.skipif(shutil.which("nft") is None or os.geteuid() != 0,
                               reason="`nft -c` needs the nftables package and root")


@needs_nft
@pytest.mark.parametrize("nodes", [LAB_NODES, [*LAB_NODES, {"name": "v6", "role": "worker", "ip": "fd00::12"}]],
                         ids=["ipv4", "ipv4+ipv6"])
def test_the_rendered_nft_ruleset_passes_nft_check_mode(tmp_path, nodes):
    checked = nft_check(render(NFT_TEMPLATE, settings(cluster_nodes=nodes)), tmp_path)
    assert checked.returncode == 0, checked.stderr


@needs_nft
def test_nft_check_mode_does_reject_a_broken_ruleset(tmp_path):
    broken = render(NFT_TEMPLATE, settings()).replace("iifname", "iifnam")
    assert nft_check(broken, tmp_path).returncode != 0


# --- settings -------------------------------------------------------------------------------


NODE = {"name": "alpha", "role": "head", "address": "10.0.0.1"}
TRUSTED = {"trusted_network": True}  # Ray 2.49 has no token auth: without the firewall, the network must be trusted


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"object_manager_port": 6381}, "object_manager_port and node_manager_port are both 6381"),
    ({"metrics_export_port": 80}, "80 is not a usable port"),
    ({"node_manager_port": 15000}, "node_manager_port (15000) falls in the worker port range 10002-19999"),
    ({"min_worker_port": 20000}, "min_worker_port (20000) must be below max_worker_port (19999)"),
    ({"firewall": "yes"}, "settings.firewall: is 'yes'; it must be true or false"),
])
def test_port_and_firewall_settings_are_validated(write_cluster, overrides, expected):
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, write_cluster({"nodes": [NODE], "settings": overrides}))
    assert expected in str(caught.value)


THREE = [NODE, {"name": "beta", "role": "worker", "address": "10.0.0.2"},
         {"name": "gamma", "role": "worker", "address": "10.0.0.3"}]


@pytest.mark.parametrize(("overrides", "nodes", "expected"), [
    ({"mlx_ring_port": 6378}, THREE, "the MLX ring's ports 6378-6380 (one per node, 3 nodes) take ray_port (6380); "
                                     "move mlx_ring_port to a free run of 3 ports outside Ray's, like 6390"),
    ({"mlx_ring_port": 6379}, [NODE], None),  # one node: its one port, 6379, is free
    ({"mlx_ring_port": 6388, "dashboard_port": 6390}, THREE, "take dashboard_port (6390); move mlx_ring_port to a "
                                                            "free run of 3 ports outside Ray's, like 6391"),
    ({"mlx_ring_port": 10000}, THREE, "take ray_client_server_port (10001), the worker port range 10002-19999;"),
    ({"mlx_ring_port": 44215}, THREE, "take Ray's fixed metrics port 44217;"),
    ({"mlx_ring_port": 44217}, [NODE], "take Ray's fixed metrics port 44217;"),  # its first port, exactly
    ({"mlx_ring_port": 19999}, [NODE], "take the worker port range 10002-19999;"),  # the range's last port
    ({"mlx_ring_port": 20000}, [NODE], None),
    ({"mlx_ring_port": 65534}, THREE, "the MLX ring needs one port per node (3), 65534-65536, and ports end at 65535"),
    ({"mlx_ring_port": 65533}, THREE, None),
    ({"mlx_ring_port": 80}, [NODE], "80 is not a usable port"),
    ({"mlx_backend": "jaccl"}, [NODE], "'jaccl' is not an MLX backend SAF provisions (RDMA over Thunderbolt 5"),
    ({"mlx_backend": "mpi"}, [NODE], "'mpi' is not an MLX backend SAF provisions; use ring"),
])
def test_the_mlx_ring_s_ports_are_validated_against_ray_s(write_cluster, overrides, nodes, expected):
    if expected is None:
        assert load_cluster(PROJECT_DIR, write_cluster({"nodes": nodes, "settings": {**TRUSTED, **overrides}}))
        return
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, write_cluster({"nodes": nodes, "settings": {**TRUSTED, **overrides}}))
    assert expected in str(caught.value)


def test_the_firewall_is_off_by_default(write_cluster):
    assert load_cluster(PROJECT_DIR, write_cluster({"nodes": [NODE], "settings": TRUSTED})).settings.firewall is False


# --- facts ----------------------------------------------------------------------------------


NFT_LISTED = """table inet saf {
\tset ray_ports {
\t\ttype inet_service
\t\tflags interval
\t\telements = { 6380-6386, 8265, 10001-19999 }
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tmeta l4proto { tcp, udp } th dport @ray_ports jump ray comment "saf-ray-0123456789ab"
\t}
}
"""


def test_nft_fact_reads_the_digest_or_absence():
    assert NftRules().process(NFT_LISTED.splitlines()) == {"digest": "0123456789ab"}
    without_comment = NFT_LISTED.replace(' comment "saf-ray-0123456789ab"', "")
    assert NftRules().process(without_comment.splitlines()) == {"digest": None}
    assert NftRules().process([]) is None


def test_pf_fact_reads_status_and_the_anchors_label():
    output = ["Status: Enabled for 0 days 00:12:01           Debug: Urgent", "-- main",
              'scrub-anchor "com.apple/*" all fragment reassemble', 'anchor "com.apple/*" all', "-- anchor",
              "block return in quick on ! lo0 proto tcp from ! <saf_ray_peers> to any port 6380:6386 "
              'label "saf-ray-ab12"']
    assert PfRules().process(output) == {"enabled": True, "anchor_point": True, "loaded": True, "digest": "ab12"}
    edited = ["Status: Disabled              Debug: Urgent", "-- main", 'scrub-anchor "com.apple/*" all', "-- anchor"]
    assert PfRules().process(edited) == {"enabled": False, "anchor_point": False, "loaded": False, "digest": None}


def test_app_firewall_fact_reads_state_and_apps_tolerantly():
    output = ["Firewall is enabled. (State = 1)", "ALF: total number of apps = 2", "",
              "1 :  /Applications/Safari.app", " \t ( Allow incoming connections )", "",
              "2 :\t/opt/ray/bin/python3.9", "\t\t(Block incoming connections)"]
    assert AppFirewall().process(output) == {
        "state": 1, "apps": {"/Applications/Safari.app": True, "/opt/ray/bin/python3.9": False}}
    assert AppFirewall().process(["Firewall is disabled. (State = 0)"])["state"] == 0
    blocking_all = "Firewall is blocking all non-essential incoming connections. (State = 2)"
    assert AppFirewall().process([blocking_all])["state"] == 2
    assert AppFirewall().process(["Firewall is enabled."])["state"] == 1  # no state number: the words decide


def test_the_served_models_endpoint_is_covered_only_on_the_cluster_address():
    serving = {"serve": {"model_id": "tiny"}, "serve_port": 8000}
    assert not any(8000 in p for p in ray_ports(settings(**serving, serve_bind="loopback")))
    assert any(8000 in p for p in ray_ports(settings(**serving, serve_bind="cluster")))
    assert not any(8000 in p for p in ray_ports(settings(serve=None, serve_port=8000, serve_bind="cluster")))
