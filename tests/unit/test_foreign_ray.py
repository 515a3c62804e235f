"""Ray not started by SAF (saf/foreign_ray.py, saf/facts/ray.py): the facts read from raw ps / ss /
lsof / grep / plutil / crontab output (tests/fixtures), the ownership judgement the deploy, the
doctor and the verification share, and the node commands run for real: the crontab rewrite and its
undoing against a stand-in crontab, launcher files moved aside and back (never over another), the
process stop against real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from saf.facts.ray import (
    CrontabRayLines,
    LaunchdRayJobs,
    LinuxListeners,
    MacListeners,
    RayProcesses,
    RayProcessUnits,
    SystemdRayUnits,
)
from saf.facts.unexpected import UnexpectedOutput
from saf.facts.set_aside import SetAsideLaunchers
from saf.foreign_ray import (
    CRON_MARKER,
    Launcher,
    Owner,
    crontab_command,
    latest_entries,
    move_aside_command,
    put_back_command,
    saved_path,
    uncomment_crontab_command,
    describe_listener,
    foreign_listeners,
    foreign_processes,
    saf_service_pids,
    short_command,
    stop_processes_command,
    stray_problems,
    stray_problems_from_output,
)
from saf.ports import unnamed_listener_ports
from saf.spec import load_defaults
from tests.conftest import PROJECT_DIR
from tests.fixtures import linux_fixtures, linux_output, macos_output

SETTINGS = SimpleNamespace(**load_defaults(PROJECT_DIR))
PORTS = unnamed_listener_ports(SETTINGS)
SAF_SYSTEM_UNIT = Owner(unit="saf-ray-worker.service")
SAF_USER_UNIT = Owner(unit="saf-ray-worker.service", user_unit=True)


def parsed(fact_cls, text: str):
    return fact_cls().process(text.splitlines())


def test_every_linux_fixture_names_its_command_and_source():
    fixtures = linux_fixtures()
    assert len(fixtures) == 6
    for fixture in fixtures:
        assert fixture.field("command").split(" (")[0] in (
            "ps -A -ww -o user= -o pid= -o ppid= -o unit= -o uunit= -o args=", "ss -Hltnp")
        assert fixture.field("grounding") == "captured" and fixture.header["source"]


def test_ps_with_units_reads_saf_s_system_unit_and_a_hand_started_head_in_a_session():
    processes = parsed(RayProcessUnits, linux_output("ps-A-units.worker-and-hand-run-head.debian12.txt"))
    by_pid = {p["pid"]: p for p in processes}
    assert sorted(by_pid) == [24, 25, 26, 27, 28, 29, 32, 33, 34, 35, 36, 37]  # pid 1 and ps are not Ray
    assert by_pid[24]["unit"] == "saf-ray-worker.service" and by_pid[24]["user_unit"] is None
    assert by_pid[28] == {"user": "saf", "pid": 28, "ppid": 1, "command": "ray::IDLE",
                          "unit": "saf-ray-worker.service", "user_unit": None}
    assert by_pid[33]["unit"] == "session-4.scope"
    assert "dashboard.py --host=0.0.0.0 --port=8265" in by_pid[33]["command"]
    assert saf_service_pids(processes, SAF_SYSTEM_UNIT) == {24, 25, 26, 27, 28, 29}
    assert [p["pid"] for p in foreign_processes(processes, SAF_SYSTEM_UNIT)] == [32, 33, 34, 35, 36, 37]


def test_a_user_unit_is_saf_s_only_as_the_user_unit_it_is():
    processes = parsed(RayProcessUnits, linux_output("ps-A-units.saf-user-unit.debian12.txt"))
    assert {p["unit"] for p in processes} == {"user@1000.service"}
    assert saf_service_pids(processes, SAF_USER_UNIT) == {24, 25, 26, 27, 28, 29}
    assert saf_service_pids(processes, SAF_SYSTEM_UNIT) == set()  # a system unit of that name is another thing
    other = parsed(RayProcessUnits, linux_output("ps-A-units.foreign-user-unit.debian12.txt"))
    assert [(p["pid"], p["user_unit"]) for p in other] == [(26, "ray-worker.service"), (27, "ray-worker.service")]
    assert saf_service_pids(other, SAF_USER_UNIT) == set()


def test_ss_reads_bind_addresses_and_owners():
    listeners = parsed(LinuxListeners, linux_output("ss-Hltnp.worker-and-hand-run-head.debian12.txt"))
    assert {"address": "0.0.0.0", "port": 8265, "pid": 33, "program": "python3.11"} in listeners
    assert {"address": "*", "port": 6380, "pid": 32, "program": "gcs_server"} in listeners
    assert {"address": "10.77.0.13", "port": 6385, "pid": 26, "program": "python3.11"} in listeners
    assert {"address": "*", "port": 10003, "pid": 37, "program": "ray::IDLE"} in listeners
    unnamed = parsed(LinuxListeners, "LISTEN 0      4096   [::ffff:127.0.0.1]:6380 *:*\n"
                                     "LISTEN 0      128    127.0.0.53%lo:53 0.0.0.0:* users:((\"systemd-resolve\",pid=88,fd=14))\n")
    assert unnamed == [{"address": "127.0.0.1", "port": 6380, "pid": None, "program": None},
                       {"address": "127.0.0.53", "port": 53, "pid": 88, "program": "systemd-resolve"}]


def test_lsof_reads_the_seeds_listeners():
    listeners = parsed(MacListeners, macos_output("lsof-iTCP-LISTEN.seed-leftovers.txt"))
    assert listeners[:2] == [
        {"address": "*", "port": 6380, "pid": 2231, "program": "gcs_serve", "user": "arthurdell"},
        {"address": "*", "port": 8265, "pid": 2245, "program": "Python", "user": "arthurdell"}]
    assert parsed(MacListeners, "") == []


@pytest.mark.parametrize("fact, text", [
    (RayProcessUnits, "saf 24 1 saf-ray-worker.service\n"),
    (LinuxListeners, "State Recv-Q Send-Q Local Address:Port Peer Address:Port\n"),
    (MacListeners, "lsof: WARNING: can't stat() nfs file system /Volumes/x\n"),
    (CrontabRayLines, "crontab: no crontab for saf\n"),
    (SystemdRayUnits, "grep: /etc/systemd/system: Permission denied\n"),
    (LaunchdRayJobs, "== /Library/LaunchAgents/x.plist\n<?xml version=\"1.0\"?>\n"),
])
def test_output_not_understood_is_named_never_guessed(fact, text):
    with pytest.raises(UnexpectedOutput):
        parsed(fact, text)


def test_the_verification_s_stray_check_names_the_hand_started_head_and_not_saf_s_worker():
    processes = parsed(RayProcessUnits, linux_output("ps-A-units.worker-and-hand-run-head.debian12.txt"))
    listeners = parsed(LinuxListeners, linux_output("ss-Hltnp.worker-and-hand-run-head.debian12.txt"))
    problems = stray_problems(processes, listeners, SAF_SYSTEM_UNIT, PORTS, 8265, "loopback")
    assert len(problems) == 6 + 6  # the head's processes, and the head's listeners (8265, 10001, 6380, 2 raylet, 1 worker)
    assert "listener on a Ray port not SAF's service's: 0.0.0.0:8265 (python3.11 pid 33)" in problems
    assert "Ray process not started by SAF's service: pid 32 (saf): .../ray/core/src/ray/gcs/gcs_server " \
           "--log_dir=/tmp/ray/session_2026-11-30_03-02-55_104512_3120/lo..." in problems  # cut to 100 characters
    assert not any("pid 24 " in problem or "pid 26)" in problem for problem in problems)
    saf_only = [line for line in listeners if line["pid"] in range(24, 30)]
    assert stray_problems([p for p in processes if p["pid"] < 30], saf_only, SAF_SYSTEM_UNIT, PORTS, 8265,
                          "loopback") == []


def test_a_listener_without_a_named_owner_on_a_ray_port_is_a_stray_but_redis_is_not_ray():
    listeners = [{"address": "*", "port": 6380, "pid": None, "program": None},
                 {"address": "127.0.0.1", "port": 6379, "pid": 900, "program": "redis-server"}]
    assert foreign_listeners(listeners, [], SAF_SYSTEM_UNIT, PORTS) == listeners[:1]


def test_saf_s_own_dashboard_open_beyond_loopback_is_a_stray_unless_the_settings_say_cluster():
    processes = [{"user": "saf", "pid": 5, "ppid": 1, "command": "/v/bin/python -u .../ray/dashboard/dashboard.py",
                  "unit": "saf-ray-head.service", "user_unit": None}]
    listeners = [{"address": "0.0.0.0", "port": 8265, "pid": 5, "program": "python3.11"}]
    owner = Owner(unit="saf-ray-head.service")
    assert stray_problems(processes, listeners, owner, PORTS, 8265, "loopback") == [
        "the dashboard listens on 0.0.0.0:8265 (python3.11 pid 5) although dashboard_bind is loopback"]
    assert stray_problems(processes, listeners, owner, PORTS, 8265, "cluster") == []


def test_on_macos_the_launchd_job_s_tree_is_saf_s():
    processes = parsed(RayProcesses, macos_output("ps-A.converged.macos15.txt"))
    assert saf_service_pids(processes, Owner(job_pid=4127)) == {4127, 4139, 4152, 4160}
    assert saf_service_pids(processes, Owner(job_pid=None)) == set()
    seeds = parsed(RayProcesses, macos_output("ps-A.seed-leftovers.macos14.txt"))
    assert [p["pid"] for p in foreign_processes(seeds, Owner(job_pid=4127))] == [2231, 2245, 2251, 2262]


def test_unit_files_and_plists_that_start_ray_are_found_and_others_are_not():
    units = parsed(SystemdRayUnits, "/etc/systemd/system/ray.service:ExecStart=/usr/bin/ray start --head --block\n"
                                    "/etc/systemd/system/nginx.service:ExecStart=/usr/sbin/nginx\n"
                                    "/home/saf/.config/systemd/user/w.service:  ExecStart=/bin/sh -c 'python -m "
                                    "ray.scripts.scripts start --address=x:6380'\n")
    assert [(u["unit"], u["user"]) for u in units] == [("ray.service", False), ("w.service", True)]
    jobs = parsed(LaunchdRayJobs, "== /Library/LaunchAgents/a.plist\n"
                                  '{"Label":"a","Program":"/Users/x/venv/bin/ray","ProgramArguments":["ray","start"]}\n\n'
                                  "== /Library/LaunchAgents/b.plist\n"
                                  '{"Label":"b","ProgramArguments":["/usr/bin/array-tool","--start"]}\n\n'
                                  "== /Library/LaunchDaemons/c.plist\n!! not JSON\n\n")
    assert jobs == [{"path": "/Library/LaunchAgents/a.plist", "label": "a", "program": "/Users/x/venv/bin/ray ray start"},
                    {"path": "/Library/LaunchDaemons/c.plist", "label": "c", "program": None}]


def test_crontab_lines_that_start_ray_are_numbered_and_commented_ones_are_not():
    cron = parsed(CrontabRayLines, "1 2\n# ray start by hand\n\n@reboot ray start --head\n"
                                   f"{CRON_MARKER}@reboot ray start --head\n")
    assert cron == {"checksum": "1 2", "lines": [(3, "@reboot ray start --head")]}


@pytest.fixture
def crontab(tmp_path, monkeypatch):
    """A stand-in `crontab` on PATH keeping the table in a file (-l prints it, - replaces it)."""
    table = tmp_path / "table"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crontab").write_text(f'#!/bin/sh\nif [ "$1" = -l ]; then cat {table}; else cat > {table}; fi\n')
    (bin_dir / "crontab").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return table


def read_crontab_fact(table: Path) -> dict:
    from saf.facts.ray import CRONTAB_COMMAND
    out = subprocess.run(["sh", "-c", CRONTAB_COMMAND], capture_output=True, text=True, check=True).stdout
    return parsed(CrontabRayLines, out)


def test_the_crontab_rewrite_comments_out_exactly_the_lines_read_and_keeps_a_copy(crontab, tmp_path):
    original = ("SHELL=/bin/sh\n@reboot /home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380\n"
                "*/5 * * * * echo 'not ray' \"quoted\" \\\\ x\n@reboot ray start --head   # twice\n")
    crontab.write_text(original)
    cron = read_crontab_fact(crontab)
    assert [number for number, _ in cron["lines"]] == [2, 4]
    backup = tmp_path / "backup"
    backup.mkdir()
    subprocess.run(["sh", "-c", crontab_command(cron["lines"], cron["checksum"], str(backup))], check=True)
    assert crontab.read_text() == original.replace("@reboot", CRON_MARKER + "@reboot")
    assert (backup / "crontab").read_text() == original
    assert read_crontab_fact(crontab)["lines"] == []  # a re-run finds nothing to do


def test_the_crontab_rewrite_refuses_a_crontab_changed_since_it_was_read(crontab, tmp_path):
    crontab.write_text("@reboot ray start --head\n")
    cron = read_crontab_fact(crontab)
    crontab.write_text("# edited meanwhile\n@reboot ray start --head\n")
    result = subprocess.run(["sh", "-c", crontab_command(cron["lines"], cron["checksum"], str(tmp_path))],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 1 and "the crontab changed since it was read" in result.stderr
    assert crontab.read_text() == "# edited meanwhile\n@reboot ray start --head\n"


def test_restore_uncomments_exactly_the_lines_saf_commented_out(crontab, tmp_path):
    original = ("SHELL=/bin/sh\n@reboot /home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380 # it's 100%\n"
                f"{CRON_MARKER}@reboot ray start --head\n"  # a line SAF did not comment out in this run: left
                "*/5 * * * * echo 'not ray' \"quoted\" \\\\ x\n")
    crontab.write_text(original)
    cron = read_crontab_fact(crontab)
    subprocess.run(["sh", "-c", crontab_command(cron["lines"], cron["checksum"], str(tmp_path))], check=True)
    assert crontab.read_text() != original
    restore = uncomment_crontab_command([line for _, line in cron["lines"]])
    subprocess.run(["sh", "-c", restore], check=True)
    assert crontab.read_text() == original
    subprocess.run(["sh", "-c", restore], check=True)  # again: nothing marked is left to take off
    assert crontab.read_text() == original


def sh(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)


def test_launchers_of_the_same_name_are_kept_apart_by_path_and_never_written_over(tmp_path):
    backup = str(tmp_path / "backup")
    first, second = tmp_path / "etc" / "ray.service", tmp_path / "home" / "ray.service"
    for path in (first, second):
        path.parent.mkdir(parents=True)
        path.write_text(f"unit at {path}")
    assert sh(move_aside_command(str(first), backup)).returncode == 0
    assert sh(move_aside_command(str(second), backup)).returncode == 0
    assert Path(saved_path(backup, str(first))).read_text() == f"unit at {first}"
    assert Path(saved_path(backup, str(second))).read_text() == f"unit at {second}"
    assert saved_path(backup, str(first)) == f"{backup}/files{first}"
    first.write_text("a new unit, written after the first was set aside")
    again = sh(move_aside_command(str(first), backup))  # same run, same path: refused, both kept
    assert again.returncode == 1 and "exists already" in again.stderr and "never written over" in again.stderr
    assert first.read_text().startswith("a new unit") and Path(saved_path(backup, str(first))).read_text() == \
        f"unit at {first}"


def test_putting_back_never_writes_over_a_file_and_is_done_once(tmp_path):
    backup, unit = str(tmp_path / "backup"), tmp_path / "etc" / "systemd" / "ray.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("the user's unit")
    assert sh(move_aside_command(str(unit), backup)).returncode == 0 and not unit.exists()
    unit.write_text("another file meanwhile")
    refused = sh(put_back_command(saved_path(backup, str(unit)), str(unit)))
    assert refused.returncode == 1 and f"SAF: {unit} exists already" in refused.stderr
    assert unit.read_text() == "another file meanwhile"
    unit.unlink()
    unit.parent.rmdir()  # its folder gone too: made again
    assert sh(put_back_command(saved_path(backup, str(unit)), str(unit))).returncode == 0
    assert unit.read_text() == "the user's unit" and not Path(saved_path(backup, str(unit))).exists()
    assert sh(put_back_command(saved_path(backup, str(unit)), str(unit))).returncode == 0  # done: fine
    unit.unlink()
    gone = sh(put_back_command(saved_path(backup, str(unit)), str(unit)))
    assert gone.returncode == 1 and "nothing to put back" in gone.stderr


def test_set_aside_manifests_are_read_with_their_run_and_the_newest_copy_wins():
    output = ("== /home/saf/.saf/foreign-ray-backup/20250101T000000Z/manifest.jsonl\n"
              '{"kind": "system unit", "name": "ray.service", "path": "/etc/systemd/system/ray.service"}\n'
              '{"kind": "crontab", "name": "saf", "lines": [[1, "@reboot ray start"]]}\n'
              "== /home/saf/.saf/foreign-ray-backup/20260101T000000Z/manifest.jsonl\n"
              '{"kind": "system unit", "name": "ray.service", "path": "/etc/systemd/system/ray.service"}\n'
              '{"kind": "user unit", "name": "ray-worker.service", "path": ""}\n')
    entries = parsed(SetAsideLaunchers, output)
    assert [(entry["run"], entry["kind"]) for entry in entries] == [
        ("20250101T000000Z", "system unit"), ("20250101T000000Z", "crontab"), ("20260101T000000Z", "system unit"),
        ("20260101T000000Z", "user unit")]
    assert entries[0]["manifest"] == "/home/saf/.saf/foreign-ray-backup/20250101T000000Z/manifest.jsonl"
    restored, left = latest_entries(entries)
    assert restored == entries[1:] and left == entries[:1]
    with pytest.raises(UnexpectedOutput):
        parsed(SetAsideLaunchers, "== /x/r/manifest.jsonl\nnot json\n")
    with pytest.raises(UnexpectedOutput):
        parsed(SetAsideLaunchers, '{"kind": "crontab", "name": "saf"}\n')  # no manifest named before it
    assert parsed(SetAsideLaunchers, "") == []


def _spawn(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(list(argv), start_new_session=True)


def _ps_entry(process: subprocess.Popen) -> dict:
    out = subprocess.run(["ps", "-o", "user=", "-o", "args=", "-p", str(process.pid)], capture_output=True,
                         text=True, check=True).stdout.split(maxsplit=1)
    return {"pid": process.pid, "user": out[0], "command": out[1].strip()}


def test_the_stop_terms_then_kills_after_the_wait_and_leaves_a_reused_pid_alone():
    polite = _spawn("sleep", "300")
    stubborn = _spawn("sh", "-c", "trap '' TERM; while :; do sleep 0.1; done")
    bystander = _spawn("sleep", "301")
    time.sleep(0.3)
    try:
        entries = [_ps_entry(polite), _ps_entry(stubborn),
                   {**_ps_entry(bystander), "command": "/elsewhere/raylet --x"}]  # its pid now runs another program
        started = time.monotonic()
        result = subprocess.run(["sh", "-c", stop_processes_command(entries, wait_s=1)], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, result.stderr
        assert polite.wait(5) == -signal.SIGTERM and stubborn.wait(5) == -signal.SIGKILL
        assert 1 <= time.monotonic() - started < 6  # TERM, the bounded wait, then KILL
        assert bystander.poll() is None
    finally:
        for process in (polite, stubborn, bystander):
            if process.poll() is None:
                process.kill()
                process.wait()


def _cgroup_leaf(pid: int) -> str:
    leaves = [line.rsplit("/", 1)[1] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    return next((leaf for leaf in leaves if leaf), "")


def test_the_stop_leaves_a_process_in_saf_s_unit_alone_when_it_runs():
    process = _spawn("sleep", "302")
    time.sleep(0.2)
    try:
        leaf = _cgroup_leaf(process.pid)
        if not leaf:
            pytest.skip("this machine puts processes in no named cgroup")
        command = stop_processes_command([_ps_entry(process)], wait_s=1, owner=Owner(unit=leaf))
        assert subprocess.run(["sh", "-c", command], check=False).returncode == 0
        assert process.poll() is None  # in "SAF's unit" now: never stopped
        elsewhere = stop_processes_command([_ps_entry(process)], wait_s=1, owner=Owner(unit="saf-ray-worker.service"))
        subprocess.run(["sh", "-c", elsewhere], check=True)  # not in that unit: stopped
        assert process.wait(5) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_stop_does_nothing_if_saf_s_launchd_job_restarted_since_it_was_read(tmp_path, monkeypatch):
    launchctl = tmp_path / "launchctl"
    launchctl.write_text("#!/bin/sh\nprintf 'system/org.saf.ray-head = {\\n\\tstate = running\\n\\tpid = 5210\\n}\\n'\n")
    launchctl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    process = _spawn("sleep", "303")
    time.sleep(0.2)
    try:
        stale = stop_processes_command([_ps_entry(process)], wait_s=1, owner=Owner(job_pid=4127),
                                       job_target="system/org.saf.ray-head")
        result = subprocess.run(["sh", "-c", stale], capture_output=True, text=True, check=False)
        assert result.returncode == 1 and "its Ray job restarted since it was read" in result.stderr
        assert process.poll() is None
        current = stop_processes_command([_ps_entry(process)], wait_s=1, owner=Owner(job_pid=5210),
                                         job_target="system/org.saf.ray-head")
        assert subprocess.run(["sh", "-c", current], check=False).returncode == 0 and process.wait(5) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_unit_file_search_runs_and_reads_a_user_unit_that_starts_ray(tmp_path):
    units = tmp_path / ".config/systemd/user"
    units.mkdir(parents=True)
    (units / "ray-worker.service").write_text("[Service]\nExecStart=/home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380"
                                              " --block\nRestart=always\n")
    (units / "other.service").write_text("[Service]\nExecStart=/usr/bin/true\n")
    out = subprocess.run(["sh", "-c", SystemdRayUnits().command(home=str(tmp_path))], capture_output=True, text=True,
                         check=True).stdout
    found = [unit for unit in parsed(SystemdRayUnits, out) if unit["path"].startswith(str(tmp_path))]
    assert found == [{"path": str(units / "ray-worker.service"), "unit": "ray-worker.service", "user": True,
                      "exec": "ExecStart=/home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380 --block"}]


@pytest.mark.parametrize("command, ray", [
    ("ray::IDLE", True), ("ray-dashboard-JobHead-0", True),  # titles Ray's processes give themselves
    ("/v/bin/python -m ray.util.client.server --address=10.77.0.13:6380 --port=10001", True),
    ("/usr/bin/python3 /home/x/array_tool.py --start", False), ("/usr/sbin/sshd -D", False),
])
def test_what_counts_as_a_ray_process(command, ray):
    assert bool(parsed(RayProcesses, f"saf 10 1 {command}\n")) is ray


def test_the_verification_reads_strays_from_what_the_node_printed():
    ps = linux_output("ps-A-units.worker-and-hand-run-head.debian12.txt")
    ss = linux_output("ss-Hltnp.worker-and-hand-run-head.debian12.txt")
    problems = stray_problems_from_output(False, ps, ss, "", "saf-ray-worker.service", False, SETTINGS)
    assert len(problems) == 12 and any("0.0.0.0:8265 (python3.11 pid 33)" in problem for problem in problems)
    # the checker's own processes aside (and so their sockets)
    aside = stray_problems_from_output(False, ps, ss, "", "saf-ray-worker.service", False, SETTINGS,
                                       ignore_pids=[33, 34])
    assert len(aside) == 12 - 2 - 1 and not any("pid 33" in problem or "pid 34" in problem for problem in aside)
    seeds = macos_output("ps-A.seed-leftovers.macos14.txt")
    lsof = macos_output("lsof-iTCP-LISTEN.seed-leftovers.txt")
    job = macos_output("launchctl-print.running.macos15.txt")
    mac = stray_problems_from_output(True, seeds, lsof, job, "", False, SETTINGS)
    assert "listener on a Ray port not SAF's service's: *:8265 (Python pid 2245)" in mac and len(mac) == 4 + 4
    converged = macos_output("ps-A.converged.macos15.txt")
    assert stray_problems_from_output(True, converged, "", job, "", False, SETTINGS) == []


def test_the_verification_reads_the_settings_s_dashboard_and_the_unit_kind():
    ps = "root 1 0 init.scope - /sbin/init\nsaf 5 1 saf-ray-head.service - /v/bin/python -u .../ray/dashboard/dashboard.py\n"
    ss = 'LISTEN 0 128 0.0.0.0:8265 0.0.0.0:* users:(("python3.11",pid=5,fd=3))\n'
    assert stray_problems_from_output(False, ps, ss, "", "saf-ray-head.service", False, SETTINGS) == [
        "the dashboard listens on 0.0.0.0:8265 (python3.11 pid 5) although dashboard_bind is loopback"]
    open_on_purpose = SimpleNamespace(**{**vars(SETTINGS), "dashboard_bind": "cluster"})
    assert stray_problems_from_output(False, ps, ss, "", "saf-ray-head.service", False, open_on_purpose) == []
    user_ps = linux_output("ps-A-units.saf-user-unit.debian12.txt")
    assert stray_problems_from_output(False, user_ps, "", "", "saf-ray-worker.service", True, SETTINGS) == []
    assert len(stray_problems_from_output(False, user_ps, "", "", "saf-ray-worker.service", False, SETTINGS)) == 6


@pytest.mark.parametrize("listener, described", [
    ({"address": "::", "port": 8265, "pid": 7, "program": "python3"}, "[::]:8265 (python3 pid 7)"),
    ({"address": "0.0.0.0", "port": 6380, "pid": None, "program": None}, "0.0.0.0:6380 (a process not named to this user)"),
])
def test_a_listener_reads_as_address_port_and_owner(listener, described):
    assert describe_listener(listener) == described


def test_a_command_is_cut_only_beyond_the_width():
    assert short_command("x" * 10, width=10) == "x" * 10
    assert short_command("x" * 11, width=10) == "x" * 7 + "..."
    assert short_command("/usr/bin/python3 -u -B /x/bin/ray start --head") == "/x/bin/ray start --head"


def test_a_launcher_is_described_with_its_file_when_it_has_one():
    assert Launcher("system unit", "ray.service", "/etc/systemd/system/ray.service").describe() == \
        "system unit ray.service (/etc/systemd/system/ray.service)"
    assert Launcher("user unit", "ray-worker.service").describe() == "user unit ray-worker.service"


def test_an_unnamed_listener_in_the_worker_range_is_not_a_stray_but_one_on_a_ray_port_is():
    # a worker's socket seen as the worker exits has no process left to name (seen on the lab during
    # a verification); another user's Ray is in ps anyway. On Ray's own ports it still counts.
    ps = "root 1 0 init.scope - /sbin/init\n"
    worker_range = 'LISTEN 0 128 *:14908 *:*\n'
    assert stray_problems_from_output(False, ps, worker_range, "", "saf-ray-worker.service", False, SETTINGS) == []
    gcs = 'LISTEN 0 128 *:6380 *:*\n'
    assert stray_problems_from_output(False, ps, gcs, "", "saf-ray-worker.service", False, SETTINGS) == [
        "listener on a Ray port not SAF's service's: *:6380 (a process not named to this user)"]
    assert 14908 not in PORTS and {6379, 6380, 8265, 10001, 6381, 6386} <= PORTS
