"""`saf rollback` and `saf teardown`, planned on Macs."""

from __future__ import annotations

import shlex

from saf.node_scripts import node_script
from saf.venv_spec import ROOT_MARKER, VENV_NAME_PATTERN
from tests.facts import converged_mac, fresh_debian, fresh_mac, saf_roots, venv_for

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


VENVS = {"teardown_venvs": "true"}


def teardown_command(root: str) -> str:
    return (f"sh -c {shlex.quote(node_script('venv_teardown.sh'))} venv_teardown.sh {root} "
            f"{shlex.quote(VENV_NAME_PATTERN)} {ROOT_MARKER} '.requirements.txt .pip.log'")


def test_teardown_with_venvs_removes_only_saf_s_venvs_and_links_by_the_node_script(plan):
    alpha = plan({"alpha": converged_mac()}, cluster=ONE_MAC, deploy_file="tasks/teardown.py", data=VENVS)["alpha"]
    assert alpha.op("Remove SAF's venvs").commands == [teardown_command(f"{HOME}/saf/venv")]
    others = [command for op in alpha.changing_ops if op.name != "Remove SAF's venvs" for command in op.commands]
    assert others and not any("rm -rf" in command or "saf/venv" in command for command in others)


def test_teardown_with_venvs_on_linux_names_the_linux_root(plan):
    name, _ = venv_for()
    facts = fresh_debian(**{"python.SafVenvs:*": {"venvs": {name: True}, "current": name, "previous": None},
                            **saf_roots(venv="ours", marked=True)})
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1", "ssh_user": "saf"}]}
    alpha = plan({"alpha": facts}, cluster=cluster, deploy_file="tasks/teardown.py", data=VENVS)["alpha"]
    assert alpha.op("Remove SAF's venvs").commands == [teardown_command("/home/saf/saf/venv")]


def test_teardown_with_venvs_where_no_venv_of_saf_s_is_left_changes_nothing(plan):
    # after an earlier teardown that kept the user's folder (and so the root and its marker)
    kept = fresh_mac(**saf_roots(venv="foreign", entry="notes", marked=True))
    alpha = plan({"alpha": kept}, cluster=ONE_MAC, deploy_file="tasks/teardown.py", data=VENVS)["alpha"]
    assert alpha.changing_ops == []
    gone = plan({"alpha": fresh_mac()}, cluster=ONE_MAC, deploy_file="tasks/teardown.py", data=VENVS)["alpha"]
    assert gone.changing_ops == []


def test_teardown_with_venvs_removes_an_empty_root(plan):
    empty = fresh_mac(**saf_roots(venv="ours", marked=True))  # only the marker left
    alpha = plan({"alpha": empty}, cluster=ONE_MAC, deploy_file="tasks/teardown.py", data=VENVS)["alpha"]
    assert alpha.op("Remove SAF's venvs").commands == [teardown_command(f"{HOME}/saf/venv")]
