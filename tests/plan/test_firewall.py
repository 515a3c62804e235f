"""The host firewall, planned: pf anchor + LaunchDaemon on macOS, nftables + a oneshot unit on Debian,
removal when switched off, and nothing for a converged node."""

from __future__ import annotations

import hashlib
import logging
import plistlib
import re


from saf.operations.plist import STAGED_SUFFIX
from tests.planning import Raw
from tests.facts import IP_ADDR, converged_mac, fresh_debian, fresh_mac, mac_network

HOME = "/Users/arthurdell"
PF_FILE = "/etc/saf/firewall.pf"
PLIST = "/Library/LaunchDaemons/org.saf.firewall.plist"
STAGED_PLIST = PLIST + STAGED_SUFFIX  # linted there, then moved over PLIST
NFT_FILE = "/etc/saf/firewall.nft"
UNIT_FILE = "/etc/systemd/system/saf-firewall.service"
MACS = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"},
                  {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"}],
        "settings": {"firewall": True}}
DEBIANS = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"},
                     {"name": "beta", "role": "worker", "address": "10.0.0.2"}],
           "settings": {"firewall": True}}


def firewall_ops(host_plan):
    return [op for op in host_plan.ops if op.name.startswith("tasks/firewall.py")]


def changing_firewall_ops(host_plan):
    return [op.name for op in firewall_ops(host_plan) if op.changes]


def without(cluster: dict, **settings) -> dict:
    return {**cluster, "settings": {**cluster["settings"], **settings}}


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def label_of(rules: bytes) -> str:
    return re.search(rb'(?:label|comment) "(saf-ray-[0-9a-f]+)"', rules).group(1).decode()


# --- macOS: pf ---------------------------------------------------------------------------------


def beta_mac(**overrides):
    return fresh_mac(**{**mac_network(ip="192.168.1.42"), **overrides})


def pf_loaded(label: str, enabled: bool = True) -> Raw:
    """``pfctl -s info`` + the anchor's rules as pfctl lists them (one rule per protocol)."""
    rules = "".join(f'block return in quick on ! lo0 proto {proto} from ! <saf_ray_peers> to any port 6380:6386 '
                    f'label "{label}"\n' for proto in ("tcp", "udp"))
    status = "Enabled for 2 days 03:04:05" if enabled else "Disabled"
    return Raw(f'Status: {status}              Debug: Urgent\n-- main\nanchor "com.apple/*" all\n-- anchor\n{rules}')


def mac_with_firewall(fresh_plan, **overrides):
    """A Mac whose previous run put the rules, the anchor and the boot job in place."""
    pf_file = fresh_plan.op("firewall.pf").uploads[PF_FILE]
    plist = fresh_plan.op("LaunchDaemon org.saf.firewall").uploads[STAGED_PLIST]
    return converged_mac(**{
        "files.Directory:/etc/saf": {"mode": 755, "user": "root", "group": "wheel"},
        f"files.File:{PF_FILE}": {"mode": 644, "user": "root", "group": "wheel"},
        f"files.Sha1File:{PF_FILE}": sha1(pf_file),
        f"files.File:{PLIST}": {"mode": 644, "user": "root", "group": "wheel"},
        f"files.Sha1File:{PLIST}": sha1(plist),
        "firewall.PfRules": pf_loaded(label_of(pf_file)),
        "launchd.LaunchdJob:system/org.saf.firewall": {"state": "not running", "pid": None, "path": PLIST},
        **overrides,
    })


def test_fresh_mac_gets_the_rules_in_an_anchor_pf_enabled_and_a_boot_daemon(plan):
    plans = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=MACS)
    alpha = plans["alpha"]
    rules = alpha.op("firewall.pf").uploads[PF_FILE].decode()
    assert "table <saf_ray_peers> const { 192.168.1.42 192.168.1.172 }" in rules
    # Ray's ports and the MLX ring's (6390:6391, two nodes)
    assert re.search(r'^block return in quick on ! lo0 proto \{ tcp udp \} from ! <saf_ray_peers> to any '
                     r'port \{ 6380:6386 6390:6391 8265 10001:19999 44217 44227 \} label "saf-ray-[0-9a-f]{12}"$', rules, re.M)
    assert [line for line in rules.splitlines() if not line.startswith("#") and line.strip()][-1].startswith("block")
    load = alpha.op("Load Ray's firewall rules (pf anchor")
    assert load.sudo and load.commands == ["pfctl -a com.apple/org.saf.ray -f /etc/saf/firewall.pf", "pfctl -E"]
    job = plistlib.loads(alpha.op("LaunchDaemon org.saf.firewall").uploads[STAGED_PLIST])
    assert job == {"Label": "org.saf.firewall", "RunAtLoad": True, "StandardErrorPath": "/var/log/saf-firewall.log",
                   "ProgramArguments": ["/sbin/pfctl", "-E", "-a", "com.apple/org.saf.ray", "-f", PF_FILE]}
    assert alpha.op("LaunchDaemon org.saf.firewall").commands[1:] == [
        f"plutil -lint {STAGED_PLIST} || {{ rm -f {STAGED_PLIST}; exit 1; }}", f"chown root:wheel {STAGED_PLIST}",
        f"chmod 644 {STAGED_PLIST}", f"mv {STAGED_PLIST} {PLIST}"]  # linted before it replaces the installed one
    boot = alpha.op("Load the firewall job")
    assert boot.sudo and boot.commands == ["launchctl enable system/org.saf.firewall",
                                           f"launchctl bootstrap system {PLIST}"]
    assert not any("/etc/pf.conf" in command for command in alpha.commands)  # Apple's pf.conf is left alone
    assert load.position < alpha.op("Ray head (launchd)").position  # the rules are there before Ray starts
    assert plans["beta"].op("firewall.pf").uploads[PF_FILE].decode() == rules  # the same rules on every node


def test_converged_mac_gets_no_firewall_command(plan):
    fresh = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=MACS)["alpha"]
    alpha = plan({"alpha": mac_with_firewall(fresh), "beta": beta_mac()}, cluster=MACS)["alpha"]
    assert firewall_ops(alpha) and changing_firewall_ops(alpha) == []


def test_a_new_peer_reloads_only_the_anchor(plan):
    fresh = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=MACS)["alpha"]
    three = {**MACS, "nodes": [*MACS["nodes"], {"name": "gamma", "role": "worker", "address": "192.168.1.43",
                                                 "ssh_user": "arthurdell"}]}
    alpha = plan({"alpha": mac_with_firewall(fresh), "beta": beta_mac(), "gamma": beta_mac()}, cluster=three)["alpha"]
    assert "192.168.1.43" in alpha.op("firewall.pf").uploads[PF_FILE].decode()
    assert changing_firewall_ops(alpha) == ["tasks/firewall.py | Ray's firewall rules (/etc/saf/firewall.pf)",
                                            "tasks/firewall.py | Load Ray's firewall rules (pf anchor "
                                            "com.apple/org.saf.ray)"]
    assert alpha.op("Load Ray's firewall rules").commands == ["pfctl -a com.apple/org.saf.ray -f /etc/saf/firewall.pf"]


def test_pf_disabled_after_all_is_enabled_again_without_reloading(plan):
    fresh = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=MACS)["alpha"]
    label = label_of(fresh.op("firewall.pf").uploads[PF_FILE])
    facts = mac_with_firewall(fresh, **{"firewall.PfRules": pf_loaded(label, enabled=False)})
    alpha = plan({"alpha": facts, "beta": beta_mac()}, cluster=MACS)["alpha"]
    assert alpha.op("Load Ray's firewall rules").commands == ["pfctl -E"]


def test_firewall_off_on_a_mac_that_had_it_removes_anchor_job_and_files(plan):
    fresh = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=MACS)["alpha"]
    alpha = plan({"alpha": mac_with_firewall(fresh), "beta": beta_mac()},
                 cluster=without(MACS, firewall=False))["alpha"]
    assert alpha.op("Remove Ray's firewall rules (pf anchor").commands == [  # anchor-scoped: never -F all
        "pfctl -a com.apple/org.saf.ray -F rules", "pfctl -a com.apple/org.saf.ray -F Tables"]
    assert alpha.op("Unload the firewall job").commands == ["launchctl bootout system/org.saf.firewall"]
    assert alpha.op("Remove the firewall job definition").commands == [f"rm -f {PLIST}"]
    assert alpha.op("Remove the firewall rules file").commands == [f"rm -f {PF_FILE}"]
    assert all(op.sudo for op in firewall_ops(alpha))


# --- Debian: nftables ---------------------------------------------------------------------------


def debian(ip: str, **overrides):
    return fresh_debian(**{"network.LinuxInterfaces": Raw(IP_ADDR.replace("MTU", "1500").replace("10.0.0.1", ip)),
                           "server.Which:nft": "/usr/sbin/nft", **overrides})


def debian_with_firewall(fresh_plan, ip: str = "10.0.0.1", **overrides):
    nft = fresh_plan.op("firewall.nft").uploads[NFT_FILE]
    unit = fresh_plan.op("Load them at boot (saf-firewall.service)").uploads[UNIT_FILE]
    return debian(ip, **{
        "files.Directory:/etc/saf": {"mode": 755, "user": "root", "group": "root"},
        f"files.File:{NFT_FILE}": {"mode": 644, "user": "root", "group": "root"},
        f"files.Sha1File:{NFT_FILE}": sha1(nft),
        f"files.File:{UNIT_FILE}": {"mode": 644, "user": "root", "group": "root"},
        f"files.Sha1File:{UNIT_FILE}": sha1(unit),
        "firewall.NftRules": {"digest": label_of(nft).removeprefix("saf-ray-")},
        "systemd.SystemdStatus:*": {"saf-firewall.service": True},  # after a boot
        "systemd.SystemdEnabled:*": {"saf-firewall.service": True},
        **overrides,
    })


def test_debian_gets_the_nft_table_and_a_boot_unit_that_loads_it(plan):
    alpha = plan({"alpha": debian("10.0.0.1"), "beta": debian("10.0.0.2")}, cluster=DEBIANS)["alpha"]
    rules = alpha.op("firewall.nft").uploads[NFT_FILE].decode()
    assert rules.index("table inet saf {}") < rules.index("delete table inet saf") < rules.index("table inet saf {\n")
    assert "elements = { 6380-6386, 6390-6391, 8265, 10001-19999, 44217, 44227 }" in rules
    assert rules.index("ct state established,related accept") < rules.index("ip saddr @peers4 accept")
    assert "elements = { 10.0.0.1, 10.0.0.2 }" in rules
    assert "type filter hook input priority 0; policy accept;" in rules
    unit = alpha.op("Load them at boot (saf-firewall.service)").uploads[UNIT_FILE].decode()
    assert "Type=oneshot" in unit and "RemainAfterExit=yes" in unit
    assert "ExecStart=/usr/sbin/nft -f /etc/saf/firewall.nft" in unit and "WantedBy=multi-user.target" in unit
    load = alpha.op("Load Ray's firewall rules (table inet saf)")
    assert load.sudo and load.commands == ["/usr/sbin/nft -f /etc/saf/firewall.nft"]
    boot = alpha.op("Enable saf-firewall.service")
    assert boot.sudo and boot.commands == ["systemctl daemon-reload", "systemctl enable saf-firewall.service"]
    assert load.position < alpha.op("Ray head (systemd)").position


def test_debian_without_nft_gets_nftables_from_apt(plan):
    facts = debian("10.0.0.1", **{"server.Which:nft": None})
    alpha = plan({"alpha": facts, "beta": debian("10.0.0.2")}, cluster=DEBIANS)["alpha"]
    assert any("apt-get" in command and "install" in command and "nftables" in command
               for command in alpha.op("Install nftables").commands)


def test_converged_debian_gets_no_firewall_command(plan):
    fresh = plan({"alpha": debian("10.0.0.1"), "beta": debian("10.0.0.2")}, cluster=DEBIANS)["alpha"]
    alpha = plan({"alpha": debian_with_firewall(fresh), "beta": debian("10.0.0.2")}, cluster=DEBIANS)["alpha"]
    assert firewall_ops(alpha) and changing_firewall_ops(alpha) == []


def test_debian_whose_table_was_deleted_gets_it_loaded_again(plan):
    fresh = plan({"alpha": debian("10.0.0.1"), "beta": debian("10.0.0.2")}, cluster=DEBIANS)["alpha"]
    facts = debian_with_firewall(fresh, **{"firewall.NftRules": None})
    alpha = plan({"alpha": facts, "beta": debian("10.0.0.2")}, cluster=DEBIANS)["alpha"]
    assert changing_firewall_ops(alpha) == ["tasks/firewall.py | Load Ray's firewall rules (table inet saf)"]
    assert alpha.op("Load Ray's firewall rules").commands == ["/usr/sbin/nft -f /etc/saf/firewall.nft"]


def test_firewall_off_on_a_debian_host_that_had_it_removes_table_unit_and_file(plan):
    fresh = plan({"alpha": debian("10.0.0.1"), "beta": debian("10.0.0.2")}, cluster=DEBIANS)["alpha"]
    alpha = plan({"alpha": debian_with_firewall(fresh), "beta": debian("10.0.0.2")},
                 cluster=without(DEBIANS, firewall=False))["alpha"]
    assert alpha.op("Remove Ray's firewall rules (table inet saf)").commands == ["nft delete table inet saf"]
    assert alpha.op("Stop loading them at boot").commands == ["systemctl stop saf-firewall.service",
                                                              "systemctl disable saf-firewall.service"]
    assert alpha.op("Remove saf-firewall.service").commands == [f"rm -f {UNIT_FILE}"]
    assert alpha.op("Reload systemd (firewall unit removed)").commands == ["systemctl daemon-reload"]
    assert alpha.op("Remove the firewall rules file").commands == [f"rm -f {NFT_FILE}"]
    assert all(op.sudo for op in firewall_ops(alpha))


# --- off by default ----------------------------------------------------------------------------


def test_default_off_on_fresh_hosts_gives_no_firewall_command(plan):
    macs = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster={"nodes": MACS["nodes"]})
    debians = plan({"alpha": debian("10.0.0.1"), "beta": debian("10.0.0.2")}, cluster={"nodes": DEBIANS["nodes"]})
    for host_plan in (*macs.values(), *debians.values()):
        assert changing_firewall_ops(host_plan) == []
        assert not any("nft" in command or "pfctl" in command for command in host_plan.commands)


def test_without_sudo_the_firewall_is_skipped_with_a_warning(plan, caplog):
    linger = {"server.Command:loginctl show-user saf -p Linger --value 2>/dev/null || true": "yes"}
    with caplog.at_level(logging.WARNING):
        no_sudo = {"nodes": DEBIANS["nodes"][:1], "settings": {"firewall": True, "use_sudo": False}}
        alpha = plan({"alpha": debian("10.0.0.1", **linger)}, cluster=no_sudo)["alpha"]
    assert firewall_ops(alpha) == []
    assert "[alpha] firewall not managed: it needs sudo (use_sudo: false)" in caplog.text


def test_a_limited_run_warns_that_the_other_nodes_keep_their_rules(plan, caplog):
    with caplog.at_level(logging.WARNING):
        plan({"beta": debian("10.0.0.2")}, cluster=DEBIANS, limit=["beta"])
    assert "firewall: alpha keep their old rules in this limited run" in caplog.text


def test_a_mac_whose_pf_ignores_apples_anchors_is_warned(plan, caplog):
    edited = Raw("Status: Enabled for 0 days 00:01:02     Debug: Urgent\n-- main\n-- anchor\n")
    with caplog.at_level(logging.WARNING):
        plan({"alpha": fresh_mac(**{"firewall.PfRules": edited}), "beta": beta_mac()}, cluster=MACS)
    assert "[alpha] pf's main ruleset has no `anchor \"com.apple/*\"`" in caplog.text
    assert "[beta] pf's main ruleset" not in caplog.text
