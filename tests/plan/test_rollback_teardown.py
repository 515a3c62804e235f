"""`saf rollback` and `saf teardown`, planned on Macs."""

from __future__ import annotations

from tests.facts import converged_mac, fresh_mac, venv_for

ONE_MAC = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}]}
TWO_MACS = {"nodes": [*ONE_MAC["nodes"],
                      {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"}]}
HOME = "/Users/arthurdell"


def test_rollback_swaps_to_the_previous_venv_and_restarts_ray(plan):
    current, _ = venv_for(mlx="0.29.3")
    previous, _ = venv_for()
    facts = converged_mac(**{"python.SafVenvs:*": {"venvs": {current: True, previous: True},
                                                   "current": current, "previous": previous}})
    alpha = plan({"alpha": facts}, cluster=ONE_MAC, deploy_file="tasks/rollback.py")["alpha"]
    switch = alpha.op("previous venv current").commands
    assert len(switch) == 1 and switch[0].endswith(f" {HOME}/saf/venv {previous}")
    assert alpha.op("Restart Ray head (launchd)").commands == ["launchctl kickstart -k system/org.saf.ray-head"]


def test_rollback_without_a_previous_venv_does_nothing(plan):
    alpha = plan({"alpha": converged_mac()}, cluster=ONE_MAC, deploy_file="tasks/rollback.py")["alpha"]
    assert alpha.changing_ops == []


def test_teardown_boots_out_and_removes_the_job_and_keeps_venvs(plan):
    alpha = plan({"alpha": converged_mac()}, cluster=ONE_MAC, deploy_file="tasks/teardown.py")["alpha"]
    assert alpha.op("Stop Ray head (launchd)").commands == ["launchctl bootout system/org.saf.ray-head"]
    assert alpha.op("Remove the Ray head job definition").commands == [
        "rm -f /Library/LaunchDaemons/org.saf.ray-head.plist"]
    assert not any("venv" in op.name.lower() for op in alpha.changing_ops)


def test_teardown_of_a_node_without_ray_changes_nothing(plan):
    alpha = plan({"alpha": fresh_mac()}, cluster=ONE_MAC, deploy_file="tasks/teardown.py")["alpha"]
    assert alpha.changing_ops == []


def rolled_back(**overrides):
    current, _ = venv_for(mlx="0.29.3")
    previous, _ = venv_for()
    return converged_mac(**{"python.SafVenvs:*": {"venvs": {current: True, previous: True},
                                                  "current": current, "previous": previous}}, **overrides)


def test_rollback_restarts_the_head_before_the_workers(plan):
    plans = plan({"alpha": rolled_back(), "beta": rolled_back(role="worker", ip="192.168.1.42")},
                 cluster=TWO_MACS, deploy_file="tasks/rollback.py")
    assert plans["alpha"].op("Restart Ray head").position < plans["beta"].op("Restart Ray worker").position


def test_teardown_stops_the_workers_before_the_head(plan):
    plans = plan({"alpha": converged_mac(), "beta": converged_mac(role="worker", ip="192.168.1.42")},
                 cluster=TWO_MACS, deploy_file="tasks/teardown.py")
    assert plans["beta"].op("Stop Ray worker").position < plans["alpha"].op("Stop Ray head").position


def test_teardown_of_a_launch_agent_uses_the_user_domain_and_path(plan):
    agent = {**ONE_MAC, "settings": {"macos_service": "agent"}}
    path = f"{HOME}/Library/LaunchAgents/org.saf.ray-head.plist"
    facts = converged_mac(**{"server.Command:id -u": "501", f"files.File:{path}": {"mode": 644},
                             "launchd.LaunchdJob:gui/501/org.saf.ray-head": {"state": "running", "pid": 4127,
                                                                             "path": path}})
    alpha = plan({"alpha": facts}, cluster=agent, deploy_file="tasks/teardown.py")["alpha"]
    stop = alpha.op("Stop Ray head (launchd)")
    assert stop.commands == ["launchctl bootout gui/501/org.saf.ray-head"] and not stop.sudo
    assert alpha.op("Remove the Ray head job definition").commands == [f"rm -f {path}"]
