"""macOS power settings, planned from `pmset -g custom` outputs: only differing values are set."""

from __future__ import annotations

from tests.planning import Raw
from tests.facts import converged_mac, fresh_debian, fresh_mac

ONE_MAC = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172"}]}


def power(host_plan):
    return [op for op in host_plan.ops if op.name.startswith("tasks/power.py")]


def test_fresh_mac_gets_only_the_values_that_differ(plan):
    [op] = power(plan({"alpha": fresh_mac()}, cluster=ONE_MAC)["alpha"])
    assert op.commands == ["pmset -a sleep 0 disksleep 0 autorestart 1"]  # womp is already 1
    assert op.sudo


def test_converged_mac_gets_nothing(plan):
    assert power(plan({"alpha": converged_mac()}, cluster=ONE_MAC)["alpha"]) == []


def test_tabs_and_blank_lines_are_read_too(plan):
    output = "\nAC Power:\n\tsleep\t0\n\tdisksleep\t0\n\twomp\t0\n\tautorestart\t1\n"
    [op] = power(plan({"alpha": fresh_mac(**{"macos.PmsetSettings": Raw(output)})}, cluster=ONE_MAC)["alpha"])
    assert op.commands == ["pmset -a womp 1"]


def test_setting_off_and_linux_leave_power_alone(plan):
    off = {**ONE_MAC, "settings": {"macos_power_settings": False}}
    assert power(plan({"alpha": fresh_mac()}, cluster=off)["alpha"]) == []
    debian = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}]}
    assert power(plan({"alpha": fresh_debian()}, cluster=debian)["alpha"]) == []
