"""The decisions inside SAF's operations, given the facts they read: launchd jobs, Homebrew
formulae, drifted pins, and stopping a host. The plan tests cover the same through deploy.py;
these name each case."""

from __future__ import annotations

import logging

import pytest
from pyinfra.api import Config, Inventory, State

from saf.operations.brew import missing_formulae
from saf.operations.launchd import job_commands
from saf.operations.python import drifted
from saf.operations.stop import fail_host

PLIST = "/Library/LaunchDaemons/org.saf.ray-head.plist"
TARGET = "system/org.saf.ray-head"
BOOTSTRAP = [f"launchctl enable {TARGET}", f"launchctl bootstrap system {PLIST}"]  # enable first
RUNNING = {"state": "running", "pid": 4127, "path": PLIST}


def commands(loaded, **kwargs) -> list[str]:
    return job_commands(loaded, "org.saf.ray-head", PLIST, "system", **kwargs)


def test_a_job_not_loaded_is_bootstrapped_and_enabled():
    assert commands(None) == BOOTSTRAP


def test_a_running_job_is_left_alone():
    assert commands(RUNNING) == []


@pytest.mark.parametrize("state", ["not running", "spawn scheduled", None])
def test_a_loaded_job_that_is_not_running_is_kickstarted(state):
    assert commands({**RUNNING, "state": state, "pid": None}) == [f"launchctl kickstart -k {TARGET}"]


def test_a_oneshot_job_that_ran_and_exited_is_left_alone_unless_asked():
    exited = {**RUNNING, "state": "not running", "pid": None}
    assert commands(exited, oneshot=True) == []
    assert commands(exited, oneshot=True, restart=True) == [f"launchctl kickstart -k {TARGET}"]
    assert commands(None, oneshot=True) == BOOTSTRAP


def test_a_running_job_is_restarted_when_asked():
    assert commands(RUNNING, restart=True) == [f"launchctl kickstart -k {TARGET}"]


def test_a_changed_definition_is_booted_out_waited_for_then_bootstrapped():
    reload = commands(RUNNING, definition_changed=True, restart=True)
    assert reload[0] == f"launchctl bootout {TARGET} || true"
    assert reload[1].startswith(f"for i in $(seq 50); do launchctl print {TARGET} >/dev/null 2>&1 || exit 0;")
    assert "SAF: org.saf.ray-head did not unload within 10 s" in reload[1]
    assert reload[2:] == BOOTSTRAP


def test_an_absent_job_is_booted_out_only_if_loaded():
    assert commands(RUNNING, present=False) == [f"launchctl bootout {TARGET}"]
    assert commands(None, present=False) == []


def test_a_launch_agent_is_bootstrapped_in_the_users_gui_domain_and_its_path_quoted():
    plist = "/Users/a b/Library/LaunchAgents/org.saf.ray-head.plist"
    assert job_commands(None, "org.saf.ray-head", plist, "gui/501") == [
        "launchctl enable gui/501/org.saf.ray-head", f"launchctl bootstrap gui/501 '{plist}'"]


def test_missing_formulae_keep_the_order_asked_and_match_names_exactly():
    installed = {"openssl@3": {"3.4.0"}, "xz": {"5.6.3"}}
    assert missing_formulae(["pyenv", "openssl@3", "readline", "xz"], installed) == ["pyenv", "readline"]
    assert missing_formulae(["openssl"], installed) == ["openssl"]  # openssl@3 is another formula
    assert missing_formulae(["xz"], installed) == []


def test_drifted_pins_are_those_whose_installed_version_differs_or_is_missing():
    pins = ("ray[default]==2.49.1", "mlx==0.29.1", "numpy==2.0.2", "Typing_Extensions==4.12.2")
    installed = {"ray": "2.49.1", "mlx": "0.28.0", "typing-extensions": "4.12.2"}
    assert drifted(pins, installed) == ["mlx==0.29.1", "numpy==2.0.2"]
    assert drifted(pins, None) == list(pins)  # a venv that reports nothing (no python) has every pin drifted


def test_failing_a_host_logs_the_reason_as_its_error_and_stops_it(caplog):
    inventory = Inventory((["alpha"], {}))
    state = State(inventory, Config())
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        assert fail_host(state, inventory.get_host("alpha"), "Python 3.9.23 was built without lzma") is False
    [record] = [r for r in caplog.records if "built without lzma" in r.getMessage()]
    assert record.levelno == logging.ERROR and "[alpha]" in record.getMessage()


def test_pins_and_installed_names_compare_as_normalised_distribution_names():
    """PEP 503: case, and runs of '-', '_' and '.', do not tell names apart (a dotted pin would
    otherwise read as drifted on every run, and be repaired every run)."""
    installed = {"ruamel-yaml": "0.18.6", "zope-interface": "7.2", "typing-extensions": "4.12.2"}
    pins = ("ruamel.yaml==0.18.6", "Zope.Interface==7.2", "typing__extensions==4.12.2")
    assert drifted(pins, installed) == []


def test_a_process_the_python_build_leaves_behind_does_not_hold_the_session(tmp_path):
    """The build's command, run by a real shell with a stand-in pyenv that leaves a sleeper behind
    (as compileall's pool workers were left on the lab): the command returns, and a failure shows
    the end of the log."""
    import subprocess
    import time

    from saf.operations.python import _build_python

    fake = tmp_path / "pyenv"
    fake.write_text("#!/bin/sh\necho building $*\n(sleep 30 &)\nexit ${FAKE_STATUS:-0}\n")
    fake.chmod(0o755)
    build = next(str(c) for c in _build_python(None, "3.9.23", str(fake), str(tmp_path), None, "")
                 if "install" in str(c))
    started = time.monotonic()
    done = subprocess.run(["sh", "-c", build], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0 and done.stdout == "" and time.monotonic() - started < 10
    assert (tmp_path / "saf-build-3.9.23.log").read_text() == "building install --skip-existing 3.9.23\n"
    failed = subprocess.run(["sh", "-c", build], capture_output=True, text=True, timeout=20,
                            env={"FAKE_STATUS": "2", "PATH": "/usr/bin:/bin"})
    assert failed.returncode == 1 and failed.stdout == "building install --skip-existing 3.9.23\n"
