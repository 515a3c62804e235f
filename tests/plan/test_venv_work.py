"""What the venv task does for each state of a node's venv root, read from the raw venv listing,
and when that restarts Ray: only when what ``current`` runs changes, never for pruning alone."""

from __future__ import annotations

from tests.facts import converged_mac, venv_for, venv_listing

HOME = "/Users/arthurdell"
ROOT = f"{HOME}/saf/venv"
ONE_MAC = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}]}
NAME, REQS = venv_for()
OLD, _ = venv_for(mlx="0.29.0")
OLDER, _ = venv_for(mlx="0.28.0")
KICKSTART = ["launchctl kickstart -k system/org.saf.ray-head"]


def is_switch_to(command: str, name: str) -> bool:
    return command.startswith(f"{ROOT}/{name}/bin/python -c ") and command.endswith(f" {ROOT} {name}")


def changes(plan, listing, **facts):
    alpha = plan({"alpha": converged_mac(**{"python.SafVenvs:*": listing, **facts})}, cluster=ONE_MAC)["alpha"]
    return {op.name.split(" | ", 1)[1]: op.commands for op in alpha.changing_ops}


def test_pruning_leftover_venvs_alone_runs_the_switch_and_does_not_restart_ray(plan):
    done = changes(plan, venv_listing({OLDER: True, OLD: True, NAME: True}, current=NAME, previous=OLD))
    assert list(done) == [f"Venv {NAME}"]
    [switch] = done[f"Venv {NAME}"]
    assert is_switch_to(switch, NAME)


def test_a_partial_leftover_is_pruned_not_built(plan):
    done = changes(plan, venv_listing({NAME: True, OLD: False}, current=NAME))
    assert list(done) == [f"Venv {NAME}"] and len(done[f"Venv {NAME}"]) == 1


def test_current_and_previous_alone_are_converged(plan):
    assert changes(plan, venv_listing({OLD: True, NAME: True}, current=NAME, previous=OLD)) == {}


def test_switching_to_a_sound_venv_that_is_not_current_restarts_ray_without_building(plan):
    done = changes(plan, venv_listing({OLD: True, NAME: True}, current=OLD, previous=NAME))
    assert list(done) == [f"Venv {NAME}", "Ray head (launchd)"]
    [switch] = done[f"Venv {NAME}"]
    assert is_switch_to(switch, NAME)
    assert done["Ray head (launchd)"] == KICKSTART


def test_a_partial_venv_of_the_pinned_name_is_rebuilt_and_ray_restarts(plan):
    done = changes(plan, venv_listing({NAME: False}, current=NAME))
    venv = done[f"Venv {NAME}"]
    assert any(f"/bin/python -m venv {ROOT}/{NAME}" in command for command in venv)
    assert is_switch_to(venv[-1], NAME)
    assert done["Ray head (launchd)"] == KICKSTART


def test_no_venv_root_yet_builds_the_venv(plan):
    done = changes(plan, venv_listing({}))
    assert any(f"-m venv {ROOT}/{NAME}" in command for command in done[f"Venv {NAME}"])


def test_a_complete_venv_whose_python_is_gone_is_repaired_in_place(plan):
    done = changes(plan, venv_listing({NAME: True}, current=NAME),
                   **{f"python.VenvDistributions:{ROOT}/{NAME}": None})
    venv = done[f"Venv {NAME}"]
    assert any("pip install" in command for command in venv)
    assert not any("-m venv" in command for command in venv)  # repaired, not rebuilt
    assert done["Ray head (launchd)"] == KICKSTART
