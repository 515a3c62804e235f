"""Ray token authentication and the whole-stack upgrade, planned against fixture facts.

A Mac converged on 3.9.23 / Ray 2.49.1 / MLX 0.29.1 (no token: that Ray has none) is upgraded to
3.12.8 / Ray 2.60.0 / MLX 0.32.4 in one run: the new Python beside the old, the new venv, the
switch, the token pushed (0600) and the services reloaded head first. The token is in no plist,
no command and no other upload.
"""

from __future__ import annotations

import hashlib
import plistlib

import pytest

from saf.auth import ensure_control_token
from saf.operations.plist import STAGED_SUFFIX
from tests.facts import converged_mac, installed, rendered_plist, venv_for

HOME = "/Users/arthurdell"
TOKEN_PATH = f"{HOME}/.saf/ray/auth-token"
TWO_MACS = [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"},
            {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"}]
NEW_PINS = {"python_version": "3.12.8", "ray_version": "2.60.0", "mlx_version": "0.32.4"}
PLISTS = {"alpha": "/Library/LaunchDaemons/org.saf.ray-head.plist",
          "beta": "/Library/LaunchDaemons/org.saf.ray-worker.plist"}


@pytest.fixture
def token_file(tmp_path):
    return tmp_path / "secrets" / "ray-auth-token"


def cluster(token_file, **settings):
    return {"nodes": TWO_MACS, "settings": {"ray_auth_token_file": str(token_file), **settings}}


def old_macs() -> dict:
    """Two Macs converged on the default pins: 3.9.23 is built, 3.12.8 is not."""
    no_new_python = {f"python.PythonInterpreter:{HOME}/.pyenv/versions/3.12.8/bin/python": None}
    return {"alpha": converged_mac(**no_new_python),
            "beta": converged_mac(role="worker", ip="192.168.1.42", **no_new_python)}


def upgraded_mac(token: bytes, role: str = "head", ip: str = "192.168.1.172") -> dict:
    """A Mac converged on the new pins with token authentication, holding ``token``."""
    name, reqs = venv_for(python="3.12.8", ray="2.60.0", mlx="0.32.4")
    label = f"org.saf.ray-{role}"
    plist = rendered_plist(role, ip, "192.168.1.172", ray_version="2.60.0")
    return converged_mac(role=role, ip=ip, **{
        "python.PythonInterpreter:*": {"version": "3.12.8", "missing": []},
        "python.SafVenvs:*": {"venvs": {name: True}, "current": name, "previous": None},
        f"python.VenvDistributions:{HOME}/saf/venv/{name}": installed(reqs),
        f"files.Sha1File:/Library/LaunchDaemons/{label}.plist": hashlib.sha1(plist).hexdigest(),
        f"files.Directory:{HOME}/.saf/ray": {"mode": 700},
        f"files.File:{TOKEN_PATH}": {"mode": 600, "user": "arthurdell"},
        f"files.Sha1File:{TOKEN_PATH}": hashlib.sha1(token).hexdigest(),
    })


def test_a_whole_stack_upgrade_gets_python_venv_switch_token_and_ordered_reloads(plan, token_file):
    plans = plan(old_macs(), cluster=cluster(token_file, **NEW_PINS))
    alpha, beta = plans["alpha"], plans["beta"]
    new, reqs = venv_for(python="3.12.8", ray="2.60.0", mlx="0.32.4")
    assert reqs == ("ray[default]==2.60.0", "mlx==0.32.4", "numpy==2.0.2")
    assert [op.name.split(" | ")[1] for op in alpha.changing_ops] == [
        "Build Python 3.12.8 (pyenv)", f"Venv {new}", "Ray auth token directory (0700)", "Ray auth token (0600)",
        "Ray head job definition (LaunchDaemon)", "Ray head (launchd)"]
    build = alpha.op("Build Python 3.12.8").commands[0]
    assert "pyenv install --skip-existing 3.12.8" in build  # beside 3.9.23, which stays
    assert not alpha.has_command("pyenv uninstall") and not alpha.has_command("versions/3.9.23")
    venv = alpha.op(f"Venv {new}").commands
    assert any(f"{HOME}/.pyenv/versions/3.12.8/bin/python -m venv {HOME}/saf/venv/{new}" in c for c in venv)
    assert venv[-1].endswith(f" {HOME}/saf/venv {new}")  # the switch, after the proof
    # the definition changed (it now names the token): reloaded, not just restarted
    assert alpha.op("Ray head (launchd)").commands[0] == "launchctl bootout system/org.saf.ray-head || true"
    assert alpha.op("Ray head (launchd)").position < beta.op("Ray worker (launchd)").position


def test_the_token_is_pushed_0600_and_is_in_no_plist_or_command(plan, token_file):
    plans = plan(old_macs(), cluster=cluster(token_file, **NEW_PINS))
    token = token_file.read_bytes()
    assert len(token) == 64 and token_file.stat().st_mode & 0o777 == 0o600
    for name, host_plan in plans.items():
        put = host_plan.op("Ray auth token (0600)")
        assert put.uploads == {TOKEN_PATH: token}
        assert f"chmod 600 {TOKEN_PATH}" in put.commands
        assert f"chmod 700 {HOME}/.saf/ray" in host_plan.op("directory (0700)").commands
        job = plistlib.loads(host_plan.op("job definition (LaunchDaemon)").uploads[PLISTS[name] + STAGED_SUFFIX])
        assert job["EnvironmentVariables"]["RAY_AUTH_MODE"] == "token"
        assert job["EnvironmentVariables"]["RAY_AUTH_TOKEN_PATH"] == TOKEN_PATH
        assert all(token.decode() not in command for command in host_plan.commands)
        others = [data for op in host_plan.ops for dest, data in op.uploads.items() if dest != TOKEN_PATH]
        assert others and all(token not in data for data in others)


def test_one_token_for_the_whole_cluster_generated_once(plan, token_file):
    first = plan(old_macs(), cluster=cluster(token_file, **NEW_PINS))
    again = plan(old_macs(), cluster=cluster(token_file, **NEW_PINS))
    uploads = {p.op("Ray auth token (0600)").uploads[TOKEN_PATH] for p in [*first.values(), *again.values()]}
    assert uploads == {token_file.read_bytes()}


def test_a_converged_upgraded_cluster_gets_no_command(plan, token_file):
    token = ensure_control_token(token_file).read_bytes()
    plans = plan({"alpha": upgraded_mac(token), "beta": upgraded_mac(token, role="worker", ip="192.168.1.42")},
                 cluster=cluster(token_file, **NEW_PINS))
    for host_plan in plans.values():
        assert host_plan.changing_ops == []


def test_a_rotated_token_is_pushed_and_ray_restarted_head_first(plan, token_file):
    stale = b"0" * 64  # what the nodes hold; the control side has a new one
    ensure_control_token(token_file)
    plans = plan({"alpha": upgraded_mac(stale), "beta": upgraded_mac(stale, role="worker", ip="192.168.1.42")},
                 cluster=cluster(token_file, **NEW_PINS))
    alpha, beta = plans["alpha"], plans["beta"]
    assert [op.name.split(" | ")[1] for op in alpha.changing_ops] == ["Ray auth token (0600)", "Ray head (launchd)"]
    assert alpha.op("Ray head (launchd)").commands == ["launchctl kickstart -k system/org.saf.ray-head"]
    assert beta.op("Ray worker (launchd)").commands == ["launchctl kickstart -k system/org.saf.ray-worker"]
    assert alpha.op("Ray head (launchd)").position < beta.op("Ray worker (launchd)").position


def test_ray_auth_off_disables_it_explicitly_and_pushes_no_token(plan, token_file):
    plans = plan(old_macs(), cluster=cluster(token_file, ray_auth="off", **NEW_PINS))
    alpha = plans["alpha"]
    job = plistlib.loads(alpha.op("job definition (LaunchDaemon)").uploads[PLISTS["alpha"] + STAGED_SUFFIX])
    assert job["EnvironmentVariables"]["RAY_AUTH_MODE"] == "disabled"  # newer Rays default to token
    assert "RAY_AUTH_TOKEN_PATH" not in job["EnvironmentVariables"]
    assert not any("auth token" in op.name for op in alpha.ops) and not token_file.exists()  # none, none to remove


def test_a_ray_without_token_auth_gets_no_auth_variables(plan, token_file):
    alpha = plan(old_macs(), cluster=cluster(token_file))["alpha"]
    assert alpha.changing_ops == []  # the converged default cluster: Ray 2.49.1 predates token auth
    assert not token_file.exists()


def test_a_left_over_token_is_removed_when_auth_goes_off(plan, token_file):
    facts = old_macs()
    facts["alpha"][f"files.File:{TOKEN_PATH}"] = {"mode": 600}
    alpha = plan(facts, cluster=cluster(token_file, ray_auth="off", **NEW_PINS))["alpha"]
    assert alpha.op("No Ray auth token").commands == [f"rm -f {TOKEN_PATH}"]


def test_the_whole_stack_upgrade_asks_the_index_for_every_pin_of_each_platform(plan, token_file, pin_checks):
    plan(old_macs(), cluster=cluster(token_file, **NEW_PINS))
    assert {check["key"] for check in pin_checks} == {"cp3.12.8-macosx_15_0_arm64"}
    assert all(check["requirements"] == ("ray[default]==2.60.0", "mlx==0.32.4", "numpy==2.0.2")
               for check in pin_checks)
