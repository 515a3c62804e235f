"""The macOS application firewall, planned: Ray's binaries allowed only where it is on and does not
allow them yet, whatever the `firewall` setting says."""

from __future__ import annotations

import logging

import pytest

from tests.facts import fresh_mac, venv_for
from tests.planning import Raw

HOME = "/Users/arthurdell"
ONE_MAC = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}]}
MACS = {"nodes": ONE_MAC["nodes"]}
SOCKETFILTERFW = "/usr/libexec/ApplicationFirewall/socketfilterfw"
VENV = f"{HOME}/saf/venv/{venv_for()[0]}"
RAY_BINARIES = (f"{HOME}/.pyenv/versions/3.9.23/bin/python3.9",  # what the venv's bin/python links to
                f"{VENV}/lib/python3.9/site-packages/ray/core/src/ray/raylet/raylet",
                f"{VENV}/lib/python3.9/site-packages/ray/core/src/ray/gcs/gcs_server")


def app_firewall_ops(host_plan):
    return [op for op in host_plan.ops if op.name.startswith("tasks/app_firewall.py")]


def app_firewall(state: int, apps: dict[str, str] | None = None) -> Raw:
    """``--getglobalstate`` then ``--listapps``, as socketfilterfw prints them."""
    words = {0: "Firewall is disabled. (State = 0)", 1: "Firewall is enabled. (State = 1)",
             2: "Firewall is blocking all non-essential incoming connections. (State = 2)"}
    listing = "".join(f"\n{number} :  {path}\n \t ( {rule} incoming connections )\n"
                      for number, (path, rule) in enumerate((apps or {}).items(), start=1))
    return Raw(f"{words[state]}\nALF: total number of apps = {len(apps or {})}\n{listing}")


def test_app_firewall_on_lets_rays_binaries_accept_connections(plan):
    facts = fresh_mac(**{"firewall.AppFirewall": app_firewall(1, {"/Applications/Safari.app": "Allow"})})
    alpha = plan({"alpha": facts}, cluster={"nodes": MACS["nodes"][:1]})["alpha"]  # firewall setting off
    op = alpha.op("application firewall")
    assert op.sudo
    assert op.commands == [command for path in RAY_BINARIES
                           for command in (f"{SOCKETFILTERFW} --add {path}", f"{SOCKETFILTERFW} --unblockapp {path}")]
    assert op.position < alpha.op("Ray head (launchd)").position


def test_app_firewall_listing_python_as_blocked_gets_unblock_only(plan):
    listed = {RAY_BINARIES[0]: "Block", RAY_BINARIES[1]: "Allow", RAY_BINARIES[2]: "Allow"}
    facts = fresh_mac(**{"firewall.AppFirewall": app_firewall(1, listed)})
    alpha = plan({"alpha": facts}, cluster={"nodes": MACS["nodes"][:1]})["alpha"]
    assert alpha.op("application firewall").commands == [f"{SOCKETFILTERFW} --unblockapp {RAY_BINARIES[0]}"]


@pytest.mark.parametrize("app_firewall_facts", [
    app_firewall(0),
    app_firewall(1, {path: "Allow" for path in RAY_BINARIES}),
], ids=["disabled", "already-allowed"])
def test_app_firewall_off_or_already_allowing_ray_gets_nothing(plan, app_firewall_facts):
    alpha = plan({"alpha": fresh_mac(**{"firewall.AppFirewall": app_firewall_facts})},
                 cluster={"nodes": MACS["nodes"][:1]})["alpha"]
    assert not any(op.changes for op in app_firewall_ops(alpha))
    assert not alpha.has_command("socketfilterfw")


def test_app_firewall_blocking_everything_is_named(plan, caplog):
    with caplog.at_level(logging.WARNING):
        plan({"alpha": fresh_mac(**{"firewall.AppFirewall": app_firewall(2)})}, cluster={"nodes": MACS["nodes"][:1]})
    assert "blocks all incoming connections" in caplog.text


def test_a_listing_by_name_only_is_matched_to_rays_binaries(plan):
    # some versions list names, not paths (`raylet (state: 1)`): a re-run must not add them again
    names = {"python3.9": True, "raylet": True, "gcs_server": False, "Google Chrome": False}
    alpha = plan({"alpha": fresh_mac(**{"firewall.AppFirewall": {"state": 1, "apps": names}})},
                 cluster={"nodes": MACS["nodes"][:1]})["alpha"]
    assert alpha.op("application firewall").commands == [f"{SOCKETFILTERFW} --unblockapp {RAY_BINARIES[2]}"]
