"""A run stopped before its restart leaves Ray running what it loaded before; the next run reads
that from the node (saf.facts.service.RayServiceRun) and restarts exactly what is stale, saying why.

macOS from the raw ``launchctl print`` and ``ps`` fixtures; Debian as systemd and ps print it on
the lab. A converged node (Ray started after every file it loaded) gets no command at all.
"""

from __future__ import annotations

import hashlib
import logging

from tests.facts import (
    converged_mac,
    fresh_debian,
    installed,
    ray_service_run,
    venv_for,
)

HOME = "/Users/arthurdell"
MAC_ROOT = f"{HOME}/saf/venv"
HEAD_PLIST = "/Library/LaunchDaemons/org.saf.ray-head.plist"
TWO_MACS = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"},
                      {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"}]}
CURRENT, _ = venv_for()
OLD, _ = venv_for(mlx="0.29.0")


def beta() -> dict:
    return converged_mac(role="worker", ip="192.168.1.42")


def mac_running(**run) -> dict:
    """A converged head Mac whose Ray service is in the state ``run`` says."""
    return converged_mac(**{"service.RayServiceRun:*": ray_service_run("launchd", MAC_ROOT, **run)})


def restarts(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if "Ray restarts on" in record.getMessage()]


def test_a_mac_running_the_old_venv_after_a_switch_is_kickstarted_and_says_why(plan, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    alpha = mac_running(running=OLD, current=CURRENT, watched=(HEAD_PLIST,))
    head = plan({"alpha": alpha, "beta": beta()}, cluster=TWO_MACS)["alpha"]
    assert head.op("Ray head (launchd)").commands == ["launchctl kickstart -k system/org.saf.ray-head"]
    assert [op.name.split(" | ")[1] for op in head.changing_ops] == ["Ray head (launchd)"]  # nothing else
    assert restarts(caplog) == [f"Ray restarts on alpha: it runs from venv {OLD}, current is {CURRENT}"]


def test_a_converged_mac_whose_ray_started_after_its_files_gets_no_command(plan, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    alpha = mac_running(running=CURRENT, watched=(HEAD_PLIST, f"{MAC_ROOT}/current/lib/python3.9/site-packages"))
    plans = plan({"alpha": alpha, "beta": beta()}, cluster=TWO_MACS)
    assert plans["alpha"].changing_ops == [] and plans["beta"].changing_ops == []
    assert restarts(caplog) == []


def test_a_plist_written_after_ray_started_is_reloaded_not_just_kickstarted(plan, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    alpha = mac_running(running=CURRENT, watched=(HEAD_PLIST,), changed=(HEAD_PLIST,))
    load = plan({"alpha": alpha, "beta": beta()}, cluster=TWO_MACS)["alpha"].op("Ray head (launchd)")
    assert load.commands[0] == "launchctl bootout system/org.saf.ray-head || true"  # launchd keeps the old job
    assert load.commands[-1] == f"launchctl bootstrap system {HEAD_PLIST}"
    assert restarts(caplog) == [f"Ray restarts on alpha: its definition {HEAD_PLIST} changed after it started"]


def test_packages_repaired_in_place_after_ray_started_restart_it(plan, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    packages = f"{MAC_ROOT}/current/lib/python3.9/site-packages"
    alpha = mac_running(running=CURRENT, watched=(HEAD_PLIST, packages), changed=(packages,))
    head = plan({"alpha": alpha, "beta": beta()}, cluster=TWO_MACS)["alpha"]
    assert head.op("Ray head (launchd)").commands == ["launchctl kickstart -k system/org.saf.ray-head"]
    assert restarts(caplog) == [f"Ray restarts on alpha: the packages of its venv {CURRENT} changed after it started"]


def test_a_token_pushed_after_ray_started_restarts_it_and_an_older_one_does_not(plan, caplog, tmp_path):
    from saf.auth import ensure_control_token
    from tests.facts import rendered_plist
    caplog.set_level(logging.INFO, logger="pyinfra")
    token_file = tmp_path / "ray-auth-token"
    token = ensure_control_token(token_file).read_bytes()
    pins = {"python_version": "3.11.9", "ray_version": "2.60.0", "ray_auth_token_file": str(token_file)}
    name, reqs = venv_for(python="3.11.9", ray="2.60.0")  # Ray 2.60 has no wheels for Python 3.9
    node_token = f"{HOME}/.saf/ray/auth-token"

    def alpha(changed: tuple[str, ...]) -> dict:
        return converged_mac(**{
            "python.PythonInterpreter:*": {"version": "3.11.9", "missing": []},
            "python.SafVenvs:*": {"venvs": {name: True}, "current": name, "previous": None},
            f"python.VenvDistributions:{MAC_ROOT}/{name}": installed(reqs),
            f"files.Sha1File:{HEAD_PLIST}": hashlib.sha1(rendered_plist("head", "192.168.1.172", "192.168.1.172",
                                                                         ray_version="2.60.0")).hexdigest(),
            f"files.Directory:{HOME}/.saf/ray": {"mode": 700},
            f"files.File:{node_token}": {"mode": 600, "user": "arthurdell"},
            f"files.Sha1File:{node_token}": hashlib.sha1(token).hexdigest(),
            "service.RayServiceRun:*": ray_service_run("launchd", MAC_ROOT, name, watched=(HEAD_PLIST, node_token),
                                                       changed=changed)})

    cluster = {"nodes": TWO_MACS["nodes"][:1], "settings": pins}
    stale = plan({"alpha": alpha((node_token,))}, cluster=cluster)["alpha"]
    assert [op.name.split(" | ")[1] for op in stale.changing_ops] == ["Ray head (launchd)"]
    assert stale.op("Ray head (launchd)").commands == ["launchctl kickstart -k system/org.saf.ray-head"]
    assert restarts(caplog) == ["Ray restarts on alpha: its auth token changed after it started"]
    assert plan({"alpha": alpha(())}, cluster=cluster)["alpha"].changing_ops == []


# --- Debian: systemd ----------------------------------------------------------------------------

DEBIAN_ROOT = "/home/saf/saf/venv"
TWO_DEBIAN = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}]}
UNIT = "/etc/systemd/system/saf-ray-head.service"


def debian_converged(plan, **run) -> dict:
    """A Debian head converged on the default pins, its Ray in the state ``run`` says."""
    from tests.facts import IP_ADDR
    from tests.planning import Raw
    fresh = plan({"alpha": fresh_debian()}, cluster=TWO_DEBIAN)
    rendered = fresh["alpha"].op("Ray head unit").uploads[UNIT]
    name, reqs = venv_for(extra="cpu")
    return fresh_debian(**{
        "network.LinuxInterfaces": Raw(IP_ADDR.replace("MTU", "1500")),
        "python.PythonInterpreter:*": {"version": "3.9.23", "missing": []},
        "files.Directory:/home/saf/.pyenv/.git": {"mode": 755},
        "files.Directory:/home/saf/.pyenv": {"mode": 755},
        "python.SafVenvs:*": {"venvs": {name: True}, "current": name, "previous": None},
        f"python.VenvDistributions:{DEBIAN_ROOT}/{name}": installed(reqs),
        "systemd.SystemdStatus:*": {"saf-ray-head.service": True},
        "systemd.SystemdEnabled:*": {"saf-ray-head.service": True},
        f"files.File:{UNIT}": {"mode": 644, "user": "root", "group": "root"},
        f"files.Sha1File:{UNIT}": hashlib.sha1(rendered).hexdigest(),
        "service.RayServiceRun:*": ray_service_run("systemd", DEBIAN_ROOT, **{"running": name, **run}),
    })


def service_op(plan, facts):
    return plan({"alpha": facts}, cluster=TWO_DEBIAN)["alpha"].op("Ray head (systemd)")


def test_debian_converged_and_running_gets_no_restart(plan):
    assert service_op(plan, debian_converged(plan, watched=(UNIT,))).commands == []


def test_debian_running_the_old_venv_is_restarted(plan, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    current, _ = venv_for(extra="cpu")
    old, _ = venv_for(extra="cpu", mlx="0.29.0")
    facts = debian_converged(plan, running=old, current=current)
    caplog.clear()  # the fresh node planned to render the unit
    assert service_op(plan, facts).commands == ["systemctl restart saf-ray-head.service"]
    assert restarts(caplog) == [f"Ray restarts on alpha: it runs from venv {old}, current is {current}"]


def test_debian_unit_written_but_not_loaded_is_reloaded_and_restarted(plan, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    facts = debian_converged(plan, watched=(UNIT,), changed=(UNIT,), need_daemon_reload=True)
    caplog.clear()
    assert service_op(plan, facts).commands == ["systemctl daemon-reload", "systemctl restart saf-ray-head.service"]
    assert restarts(caplog) == [f"Ray restarts on alpha: its definition {UNIT} changed after it started "
                                "(systemd has not loaded it: NeedDaemonReload)"]


def test_debian_unit_loaded_but_ray_not_restarted_is_restarted(plan):
    # killed between `systemctl daemon-reload` and `systemctl restart`: loaded, but Ray is older than it
    facts = debian_converged(plan, watched=(UNIT,), changed=(UNIT,))
    assert service_op(plan, facts).commands == ["systemctl restart saf-ray-head.service"]


def test_debian_stopped_service_with_an_unloaded_unit_is_reloaded_before_it_starts(plan):
    facts = debian_converged(plan, running=None, need_daemon_reload=True)
    facts["systemd.SystemdStatus:*"] = {"saf-ray-head.service": False}
    assert service_op(plan, facts).commands == ["systemctl daemon-reload", "systemctl start saf-ray-head.service"]
