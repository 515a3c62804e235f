"""Ray as a service, planned: launchd jobs on macOS (plists checked with plistlib), systemd on Linux."""

from __future__ import annotations

import hashlib
import plistlib

from saf.operations.plist import STAGED_SUFFIX
from tests.facts import converged_mac, fresh_debian, fresh_mac

HOME = "/Users/arthurdell"
TWO_MACS = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"},
                      {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"}]}
HEAD_PLIST = "/Library/LaunchDaemons/org.saf.ray-head.plist"
WORKER_PLIST = "/Library/LaunchDaemons/org.saf.ray-worker.plist"


def staged(path: str) -> str:
    """Where a plist is uploaded and linted before it is moved over ``path``."""
    return path + STAGED_SUFFIX


def beta_mac(**overrides):
    from tests.facts import mac_network
    return fresh_mac(**{**mac_network(ip="192.168.1.42"), **overrides})


def converged_beta(**overrides):
    return converged_mac(role="worker", ip="192.168.1.42", **overrides)


def service_ops(host_plan):
    return [op for op in host_plan.ops if op.name.startswith("tasks/ray_service.py")]


def test_head_and_worker_plists_have_the_exact_keys(plan):
    plans = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=TWO_MACS)
    head = plistlib.loads(plans["alpha"].op("LaunchDaemon").uploads[staged(HEAD_PLIST)])
    worker = plistlib.loads(plans["beta"].op("LaunchDaemon").uploads[staged(WORKER_PLIST)])
    ray = f"{HOME}/saf/venv/current/bin/ray"
    assert head["Label"] == "org.saf.ray-head" and worker["Label"] == "org.saf.ray-worker"
    pinned = ["--node-manager-port=6381", "--object-manager-port=6382", "--runtime-env-agent-port=6383",
              "--dashboard-agent-grpc-port=6384", "--dashboard-agent-listen-port=6385", "--metrics-export-port=6386",
              "--min-worker-port=10002", "--max-worker-port=19999"]  # every port Ray listens on, pinned
    assert head["ProgramArguments"] == [
        ray, "start", "--head", "--port=6380", "--dashboard-host=127.0.0.1", "--dashboard-port=8265",
        "--ray-client-server-port=10001", "--node-ip-address=192.168.1.172", *pinned, "--disable-usage-stats",
        "--block"]
    assert worker["ProgramArguments"] == [
        ray, "start", "--address=192.168.1.172:6380", "--node-ip-address=192.168.1.42", *pinned,
        "--disable-usage-stats", "--block"]
    for job in (head, worker):
        assert job["UserName"] == "arthurdell"
        assert job["EnvironmentVariables"]["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"
        assert job["EnvironmentVariables"]["HOME"] == HOME
        assert job["EnvironmentVariables"]["PATH"].startswith(f"{HOME}/saf/venv/current/bin:")
        assert job["RunAtLoad"] is True and job["KeepAlive"] is True and job["ThrottleInterval"] == 10
        assert job["StandardOutPath"].startswith(f"{HOME}/Library/Logs/saf/")
        assert not any("0.0.0.0" in argument for argument in job["ProgramArguments"])


def test_fresh_mac_gets_root_owned_daemon_lint_and_bootstrap(plan):
    alpha = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=TWO_MACS)["alpha"]
    definition = alpha.op("LaunchDaemon")
    assert definition.sudo
    new = staged(HEAD_PLIST)
    assert definition.commands == [  # the upload, then the lint before it replaces the installed plist
        f"upload {new}", f"plutil -lint {new} || {{ rm -f {new}; exit 1; }}", f"chown root:wheel {new}",
        f"chmod 644 {new}", f"mv {new} {HEAD_PLIST}"]
    load = alpha.op("Ray head (launchd)")
    assert load.sudo
    assert load.commands == ["launchctl enable system/org.saf.ray-head", f"launchctl bootstrap system {HEAD_PLIST}"]


def test_head_is_started_before_workers(plan):
    plans = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=TWO_MACS)
    assert plans["alpha"].op("Ray head (launchd)").position < plans["beta"].op("Ray worker (launchd)").position


def test_converged_macs_get_no_command_at_all(plan):
    plans = plan({"alpha": converged_mac(), "beta": converged_beta()}, cluster=TWO_MACS)
    assert service_ops(plans["alpha"]) and service_ops(plans["beta"])
    assert plans["alpha"].changing_ops == [] and plans["beta"].changing_ops == []


def test_changed_venv_gets_kickstart_only(plan):
    from tests.facts import venv_for

    old, _ = venv_for(mlx="0.29.0")
    alpha = converged_mac(**{"python.SafVenvs:*": {"venvs": {old: True}, "current": old, "previous": None}})
    head = plan({"alpha": alpha, "beta": beta_mac()}, cluster=TWO_MACS)["alpha"]
    assert head.op("Ray head (launchd)").commands == ["launchctl kickstart -k system/org.saf.ray-head"]
    assert not head.op("LaunchDaemon").changes


def test_changed_definition_is_reloaded_with_bootout_then_bootstrap(plan):
    alpha = converged_mac()
    exposed = {**TWO_MACS, "settings": {"dashboard_bind": "cluster", "firewall": True}}  # never without one
    head = plan({"alpha": alpha, "beta": beta_mac()}, cluster=exposed)["alpha"]
    arguments = plistlib.loads(head.op("job definition (LaunchDaemon)").uploads[staged(HEAD_PLIST)])["ProgramArguments"]
    assert "--dashboard-host=192.168.1.172" in arguments
    commands = head.op("Ray head (launchd)").commands
    assert commands[0] == "launchctl bootout system/org.saf.ray-head || true"
    assert commands[-2:] == ["launchctl enable system/org.saf.ray-head", f"launchctl bootstrap system {HEAD_PLIST}"]


def test_launch_agent_setting_uses_the_users_domain_without_sudo(plan):
    agent = {**TWO_MACS, "settings": {"macos_service": "agent"}}
    alpha = plan({"alpha": fresh_mac(**{"server.Command:id -u": "501"}), "beta": beta_mac(**{"server.Command:id -u": "501"})},
                 cluster=agent)["alpha"]
    path = f"{HOME}/Library/LaunchAgents/org.saf.ray-head.plist"
    job = plistlib.loads(alpha.op("LaunchAgent").uploads[staged(path)])
    assert "UserName" not in job
    load = alpha.op("Ray head (launchd)")
    assert not load.sudo
    assert load.commands == ["launchctl enable gui/501/org.saf.ray-head", f"launchctl bootstrap gui/501 {path}"]


TWO_DEBIAN = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"},
                        {"name": "beta", "role": "worker", "address": "10.0.0.2"}]}


def debian(ip: str, **overrides):
    from tests.facts import IP_ADDR
    from tests.planning import Raw
    return fresh_debian(**{"network.LinuxInterfaces": Raw(IP_ADDR.replace("MTU", "1500").replace("10.0.0.1", ip)),
                           **overrides})


def test_debian_gets_a_system_unit_started_and_enabled(plan):
    plans = plan({"alpha": debian("10.0.0.1"), "beta": debian("10.0.0.2")}, cluster=TWO_DEBIAN)
    unit = plans["beta"].op("Ray worker unit").uploads["/etc/systemd/system/saf-ray-worker.service"].decode()
    assert "ExecStart=/home/saf/saf/venv/current/bin/ray start --address=10.0.0.1:6380 --node-ip-address=10.0.0.2" in unit
    assert "User=saf" in unit and "Restart=always" in unit and "RestartSec=5" in unit
    assert "Environment=RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1" in unit
    start = plans["beta"].op("Ray worker (systemd)")
    assert start.sudo and start.commands == ["systemctl daemon-reload", "systemctl start saf-ray-worker.service",
                                             "systemctl enable saf-ray-worker.service"]


def test_debian_converged_unit_is_left_alone_and_a_changed_one_restarts(plan):
    fresh = plan({"alpha": debian("10.0.0.1"), "beta": debian("10.0.0.2")}, cluster=TWO_DEBIAN)
    path = "/etc/systemd/system/saf-ray-head.service"
    rendered = fresh["alpha"].op("Ray head unit").uploads[path]
    from tests.facts import installed, venv_for
    name, reqs = venv_for(extra="cpu")
    running = {"python.SafVenvs:*": {"venvs": {name: True}, "current": name, "previous": None},
               f"python.VenvDistributions:/home/saf/saf/venv/{name}": installed(reqs),
               "systemd.SystemdStatus:*": {"saf-ray-head.service": True},
               "systemd.SystemdEnabled:*": {"saf-ray-head.service": True},
               f"files.File:{path}": {"mode": 644, "user": "root", "group": "root"}}
    same = debian("10.0.0.1", **running, **{f"files.Sha1File:{path}": hashlib.sha1(rendered).hexdigest()})
    alpha = plan({"alpha": same, "beta": debian("10.0.0.2")}, cluster=TWO_DEBIAN)["alpha"]
    assert not alpha.op("Ray head unit").changes and not alpha.op("Ray head (systemd)").changes
    other = debian("10.0.0.1", **running, **{f"files.Sha1File:{path}": "0" * 40})
    alpha = plan({"alpha": other, "beta": debian("10.0.0.2")}, cluster=TWO_DEBIAN)["alpha"]
    assert alpha.op("Ray head (systemd)").commands == ["systemctl daemon-reload", "systemctl restart saf-ray-head.service"]


def test_a_plist_with_the_right_content_but_a_drifted_mode_is_only_chmodded(plan):
    drifted = converged_mac(**{f"files.File:{HEAD_PLIST}": {"mode": 664, "user": "root", "group": "wheel"}})
    alpha = plan({"alpha": drifted, "beta": converged_beta()}, cluster=TWO_MACS)["alpha"]
    assert alpha.op("LaunchDaemon").commands == [f"chmod 644 {HEAD_PLIST}"]
    assert alpha.op("Ray head (launchd)").commands == [  # a changed definition: reloaded
        "launchctl bootout system/org.saf.ray-head || true", alpha.op("Ray head (launchd)").commands[1],
        "launchctl enable system/org.saf.ray-head", f"launchctl bootstrap system {HEAD_PLIST}"]
