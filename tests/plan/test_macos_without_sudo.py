"""`use_sudo: false` on a Mac: nothing runs as root. Ray runs as a LaunchAgent; the MTU, pmset and
the firewalls are left alone with a warning saying what the user must do."""

from __future__ import annotations

import logging

from tests.facts import fresh_mac
from tests.planning import Raw

NO_SUDO = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}],
           "settings": {"use_sudo": False, "firewall": True}}
AGENT = "/Users/arthurdell/Library/LaunchAgents/org.saf.ray-head.plist"


def mac_without_sudo(**overrides):
    return fresh_mac(**{"system.PasswordlessSudo": Raw("no\n"),
                        "files.File:/opt/homebrew/bin/brew": {"mode": 755, "size": 1000},
                        "server.Command:id -u": "501", "launchd.LaunchdDomain:gui/501": Raw("reachable\n"),
                        **overrides})


def test_nothing_runs_with_sudo_and_ray_is_a_launch_agent(plan, caplog):
    with caplog.at_level(logging.WARNING):
        alpha = plan({"alpha": mac_without_sudo()}, cluster=NO_SUDO)["alpha"]
    assert alpha.ops and not [op.name for op in alpha.ops if op.sudo]
    assert not alpha.has_command("sudo ") and not alpha.has_command("/Library/LaunchDaemons")
    assert f"{AGENT}.saf-new" in alpha.op("Ray head job definition (LaunchAgent)").uploads
    assert f"launchctl bootstrap gui/501 {AGENT}" in alpha.op("Ray head (launchd)").commands
    assert not alpha.has_command("pmset") and not alpha.has_command("networksetup -setMTU")
    assert not alpha.has_command("pfctl") and not alpha.has_command("socketfilterfw")
    for words in ("power settings left alone", "MTU of en0 not managed", "firewall not managed",
                  "Ray runs as a LaunchAgent"):
        assert words in caplog.text
