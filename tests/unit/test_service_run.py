"""The Ray service's running state (saf.facts.service.RayServiceRun) read the way pyinfra reads it:
its command run by ``sh`` here, with a real process standing for Ray (started from a venv directory,
while ``current`` names another), real ``ps``, ``date``, ``stat`` and ``cd -P``; only
``systemctl``/``launchctl`` are stand-ins (printing that process's pid). And the judgement of it
(saf.restarts.stale_ray)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from saf.facts.service import RayServiceRun, etime_seconds, venv_in
from saf.restarts import stale_ray
from tests.unit.test_facts_on_node import read_fact, stand_ins  # noqa: F401 (a fixture)

OLD, NEW = "py3.11.2-ray2.49.1-mlx0.29.1-aaaaaaaa", "py3.11.2-ray2.60.0-mlx0.32.4-bbbbbbbb"


@pytest.fixture
def ray_from_old_venv(tmp_path):
    """A venv root holding OLD and NEW, ``current`` -> NEW, and a process started from OLD's bin."""
    root = tmp_path / "venv"
    for name in (OLD, NEW):
        (root / name / "bin").mkdir(parents=True)
        (root / name / "lib/python3.11/site-packages").mkdir(parents=True)
    os.symlink(NEW, root / "current")
    sleeper = root / OLD / "bin" / "python"
    os.symlink("/bin/sleep", sleeper)
    process = subprocess.Popen([str(sleeper), "300"])
    yield root, process
    process.kill()
    process.wait()


def systemctl(directory: Path, pid: int, need_reload: str = "no") -> None:
    script = directory / "systemctl"
    script.write_text(f'#!/bin/sh\n[ "$1 $2 $3" = "show -p MainPID" ] || exit 1\n'
                      f'printf "MainPID={pid}\\nNeedDaemonReload={need_reload}\\n"\n')
    script.chmod(0o755)


def test_a_process_started_from_the_old_venv_reads_as_that_venv_against_current(ray_from_old_venv, stand_ins, tmp_path):
    root, process = ray_from_old_venv
    unit = tmp_path / "saf-ray-head.service"
    unit.write_text("[Unit]\n")
    os.utime(unit, (time.time() - 3600, time.time() - 3600))  # written an hour before the start
    systemctl(stand_ins, process.pid)
    time.sleep(1.1)  # a whole second of elapsed time
    run = read_fact(RayServiceRun, stand_ins, manager="systemd", target="saf-ray-head.service",
                    venv_root=str(root), watched=(str(unit), str(tmp_path / "no-token")))
    assert run["pid"] == process.pid and run["venv"] == OLD and run["current"] == NEW
    assert abs(run["started"] - time.time()) < 5 and run["need_daemon_reload"] is False
    site_packages = f"{root}/current/lib/python3.11/site-packages"
    assert set(run["mtimes"]) == {str(unit), site_packages}  # a missing file is not listed
    assert stale_ray(run, str(unit)).reasons == (f"it runs from venv {OLD}, current is {NEW}",)


def test_a_unit_written_after_the_start_and_not_loaded_is_stale(ray_from_old_venv, stand_ins, tmp_path):
    root, process = ray_from_old_venv
    os.unlink(root / "current")
    os.symlink(OLD, root / "current")
    os.utime(root / OLD / "lib/python3.11/site-packages", (time.time() - 3600, time.time() - 3600))
    time.sleep(1.1)
    unit = tmp_path / "saf-ray-head.service"
    unit.write_text("[Unit]\n")  # after the start
    systemctl(stand_ins, process.pid, need_reload="yes")
    run = read_fact(RayServiceRun, stand_ins, manager="systemd", target="saf-ray-head.service",
                    venv_root=str(root), watched=(str(unit),))
    stale = stale_ray(run, str(unit))
    assert run["venv"] == run["current"] == OLD
    assert stale.reload_definition and stale.daemon_reload
    assert stale.reasons == (f"its definition {unit} changed after it started "
                             "(systemd has not loaded it: NeedDaemonReload)",)


def test_a_main_pid_that_names_no_process_is_not_running(stand_ins, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    systemctl(stand_ins, dead.pid)
    run = read_fact(RayServiceRun, stand_ins, manager="systemd", target="saf-ray-head.service",
                    venv_root=str(tmp_path / "venv"))
    assert run["pid"] is None and run["venv"] is None and run["current"] is None
    assert not stale_ray(run, "/etc/systemd/system/saf-ray-head.service")


def test_the_fact_is_one_command_and_answers_inside_a_script_of_questions(ray_from_old_venv, stand_ins, tmp_path):
    # saf/fact_cache.py asks it with the others in one script: the script's own shells are not Ray's
    from saf.fact_cache import batch_script, split_batch
    from saf.facts.service import service_run_command
    root, process = ray_from_old_venv
    systemctl(stand_ins, process.pid)
    command = service_run_command("systemd", "saf-ray-head.service", str(root), ())
    script = batch_script(["echo other", command], "TOKEN")
    output = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                            env={**os.environ, "PATH": f"{stand_ins}:/usr/bin:/bin"}).stdout.splitlines()
    run = RayServiceRun().process(split_batch(output, "TOKEN", 2)[1])
    assert run["venv"] == OLD and run["pid"] == process.pid


@pytest.mark.parametrize("etime,seconds", [("00:07", 7), ("59:58", 3598), ("01:00:00", 3600),
                                           ("2-03:04:05", 2 * 86400 + 3 * 3600 + 4 * 60 + 5)])
def test_ps_elapsed_time_in_both_spellings(etime, seconds):
    assert etime_seconds(etime) == seconds


def test_the_venv_a_command_line_names_is_never_current_or_previous():
    root = "/Users/a/saf/venv"
    assert venv_in(f"/x/python {root}/current/bin/ray start", root) is None
    assert venv_in(f"{root}/{OLD}/lib/python3.9/site-packages/ray/core/src/ray/raylet/raylet", root) == OLD
    assert venv_in(f"/other{root}x/{OLD}/bin/python", root) is None
    assert venv_in(f"/other{root}/{OLD}/bin/python", root) is None  # another root that ends like this one


def test_a_question_asked_on_a_terminal_is_never_asked_ahead(tmp_path):
    # tasks/venv.py builds on a pty (_get_pty): facts read inside that operation carry it, and a
    # script of questions on stdin (`sh -s`) never sees its end on a pty: the run hung on the lab
    import json

    from saf.fact_cache import read_questions
    path = tmp_path / "questions.json"
    path.write_text(json.dumps([{"command": "echo a", "arguments": {"_get_pty": True}},
                                {"command": "echo b", "arguments": {}}]))
    assert [q["command"] for q in read_questions(path)] == ["echo b"]
