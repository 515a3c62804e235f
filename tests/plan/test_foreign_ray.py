"""Ray not started by SAF (issue 15), planned: the seeds' hand-run Ray on a Mac stopped with the exact
commands or the node refused before any change; nothing on a converged Mac or Debian host, nor on
SAF's own service right after a restart or a rollback; a Debian host's own user unit and crontab
line taken out of service. Raw ps / lsof / ss output from tests/fixtures, parsed by the facts."""

from __future__ import annotations

import json
import logging
import shlex

import pytest

import saf.foreign_ray
from tests.facts import IP_ADDR, converged_mac, fresh_debian, fresh_mac
from tests.fixtures import linux_output, macos_output
from tests.planning import Raw

HOME = "/Users/arthurdell"
ONE_MAC = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}]}
LAB_DEBIAN = {"nodes": [{"name": "alpha", "role": "head", "address": "10.77.0.11"},
                        {"name": "gamma", "role": "worker", "address": "10.77.0.13"}]}
BACKUP = f"{HOME}/.saf/foreign-ray-backup/{saf.foreign_ray.RUN_STAMP}"
DEBIAN_BACKUP = f"/home/saf/.saf/foreign-ray-backup/{saf.foreign_ray.RUN_STAMP}"

# a LaunchAgent the seeds' user would have written for their head (plutil -convert json prints one line)
AGENT = f"{HOME}/Library/LaunchAgents/com.arthurdell.ray-head.plist"
SAF_JOB = ("== /Library/LaunchDaemons/org.saf.ray-head.plist\n"  # SAF's own job: never foreign
           '{"Label":"org.saf.ray-head","ProgramArguments":["/Users/arthurdell/saf/venv/current/bin/ray","start",'
           '"--head","--block"]}\n\n')
LAUNCHD_JOBS = Raw(
    f"== {AGENT}\n"
    '{"Label":"com.arthurdell.ray-head","ProgramArguments":["/bin/zsh","-lc","source ~/saf-venv-39/bin/activate '
    '&& RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 ray start --head --port=6380 --dashboard-host=0.0.0.0"],'
    '"RunAtLoad":true}\n\n' + SAF_JOB)
CRONTAB = Raw("3107512639 180\n# SAF cluster (by hand)\n"
              "@reboot /Users/arthurdell/saf-venv-39/bin/ray start --head --port=6380 --dashboard-host=0.0.0.0\n"
              "*/5 * * * * /Users/arthurdell/saf_status.sh >/dev/null 2>&1\n")
SEEDS_MAC = {
    "ray.RayProcesses": Raw(macos_output("ps-A.seed-leftovers.macos14.txt")),
    "ray.MacListeners": Raw(macos_output("lsof-iTCP-LISTEN.seed-leftovers.txt")),
    "ray.LaunchdRayJobs:*": LAUNCHD_JOBS,
    "ray.CrontabRayLines": CRONTAB,
    "server.Command:id -u": "501",
}


def recorded(command: str, backup: str) -> dict:
    """The manifest entry a step appends to the run's manifest (its JSON, parsed)."""
    words = shlex.split(command)
    assert words[:2] == ["printf", "%s\\n"] and words[3:] == [">>", f"{backup}/manifest.jsonl"], command
    return json.loads(words[2])


def moved_aside(path: str, backup: str) -> str:
    """The exact command that moves ``path`` under ``backup``/files, never over a file there."""
    saved = f"{backup}/files{path}"
    return (f"if [ -e {saved} ] || [ -L {saved} ]; then echo 'SAF: {saved} exists already, and {path} is never "
            f"written over it; move one of them away and re-run' >&2; exit 1; fi; "
            f"mkdir -p {saved.rsplit('/', 1)[0]} && mv -n -- {path} {saved}")


def foreign_ops(host_plan):
    return [op for op in host_plan.ops if op.name.startswith("tasks/foreign_ray.py")]


def other_changing_ops(host_plan):
    return [op for op in host_plan.changing_ops if not op.name.startswith("tasks/foreign_ray.py")]


def test_the_seeds_hand_run_ray_on_a_mac_is_stopped_with_the_exact_commands(plan, caplog):
    with caplog.at_level(logging.WARNING):
        alpha = plan({"alpha": fresh_mac(**SEEDS_MAC)}, cluster=ONE_MAC)["alpha"]
    ops = foreign_ops(alpha)
    assert [op.name.split(" | ", 1)[1] for op in ops] == [
        "Folder for what SAF sets aside (foreign Ray)",
        f"Take the launchd job com.arthurdell.ray-head ({AGENT}) out of service (foreign Ray)",
        "Comment out crontab line(s) 2 that start Ray (foreign Ray)",
        "Stop the Ray not started by SAF: pids 2231, 2245, 2251, 2262"]
    assert ops[0].commands == [f"mkdir -p {BACKUP}/files && touch {BACKUP}/manifest.jsonl"]
    assert ops[1].commands[:3] == ["launchctl bootout gui/501/com.arthurdell.ray-head 2>/dev/null || true",
                                   "launchctl disable gui/501/com.arthurdell.ray-head", moved_aside(AGENT, BACKUP)]
    assert moved_aside(AGENT, BACKUP).endswith(
        f"mv -n -- {AGENT} {BACKUP}/files/Users/arthurdell/Library/LaunchAgents/com.arthurdell.ray-head.plist")
    assert recorded(ops[1].commands[3], BACKUP) == {
        "kind": "launchd job", "name": "com.arthurdell.ray-head", "path": AGENT, "domain": "gui/501", "sudo": False,
        "saved": f"{BACKUP}/files{AGENT}", "program": "/bin/zsh -lc source ~/saf-venv-39/bin/activate && "
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 ray start --head --port=6380 --dashboard-host=0.0.0.0"}
    assert not ops[1].sudo  # the user's own LaunchAgent
    saved_crontab = f"{BACKUP}/crontab"
    assert ops[2].commands[0] == (
        "c=$(crontab -l 2>/dev/null); if [ \"$(printf '%s\\n' \"$c\" | cksum)\" != '3107512639 180' ]; then "
        "echo 'SAF: the crontab changed since it was read; re-run the deploy' >&2; exit 1; fi; "
        f"if [ -e {saved_crontab} ] || [ -L {saved_crontab} ]; then echo 'SAF: {saved_crontab} exists already, and "
        "the crontab is never written over it; move one of them away and re-run' >&2; exit 1; fi; "
        f"printf '%s\\n' \"$c\" > {BACKUP}/crontab && printf '%s\\n' \"$c\" | "
        "awk 'NR == 2 { print \"# SAF disabled (foreign Ray): \" $0; next } { print }' | crontab -")
    assert recorded(ops[2].commands[1], BACKUP) == {
        "kind": "crontab", "name": "arthurdell", "marker": "# SAF disabled (foreign Ray): ", "sudo": False,
        "lines": [[2, "@reboot /Users/arthurdell/saf-venv-39/bin/ray start --head --port=6380 "
                      "--dashboard-host=0.0.0.0"]], "saved": saved_crontab}
    stop = ops[3].commands[0]
    assert ops[3].commands == [saf.foreign_ray.stop_processes_command([
        {"pid": 2231, "user": "arthurdell", "command": "/Users/arthurdell/saf-venv-39/lib/python3.9/site-packages/"
                                                      "ray/core/src/ray/gcs/gcs_server"},
        {"pid": 2245, "user": "arthurdell", "command": "/Library/Developer/CommandLineTools/Library/Frameworks/"
                                                      "Python3.framework/Versions/3.9/Resources/Python.app/"
                                                      "Contents/MacOS/Python"},
        {"pid": 2251, "user": "arthurdell", "command": "/Users/arthurdell/saf-venv-39/lib/python3.9/site-packages/"
                                                      "ray/core/src/ray/raylet/raylet"},
        {"pid": 2262, "user": "arthurdell", "command": "/Library/Developer/CommandLineTools/Library/Frameworks/"
                                                      "Python3.framework/Versions/3.9/Resources/Python.app/"
                                                      "Contents/MacOS/Python"}],
        owner=saf.foreign_ray.Owner(job_pid=None), job_target="system/org.saf.ray-head")]
    # nothing is stopped if SAF's own job has started (or restarted) since the judgement was made
    assert "now=$(launchctl print system/org.saf.ray-head 2>/dev/null" in stop and "if [ \"$now\" != '' ]" in stop
    assert "kill -TERM" in stop and "kill -KILL" in stop and "-lt 50 " in stop  # TERM, then KILL after 10 s
    assert not ops[3].sudo  # all the SSH user's
    # launchers out of service first, then the processes; all before anything else changes on the node
    assert [op.position for op in ops] == sorted(op.position for op in ops)
    assert max(op.position for op in ops) < min(op.position for op in other_changing_ops(alpha))
    # each process named in the output (pid, user, command), and what listens
    assert "[alpha] Ray not started by SAF: pid 2245 (arthurdell): /Users/arthurdell/saf-venv-39/lib/python3.9/" \
           "site-packages/ray/dashboard/dashboard.py" not in caplog.text  # shortened as a person reads it
    assert "[alpha] Ray not started by SAF: pid 2245 (arthurdell): .../ray/dashboard/dashboard.py --host=0.0.0.0" \
           in caplog.text
    assert "[alpha] Ray not started by SAF: listening: *:8265 (Python pid 2245)" in caplog.text
    assert "rapportd" not in caplog.text  # a listener of another program on no Ray port


def test_refuse_stops_the_mac_before_any_change_naming_what_was_found_and_how_to_stop_it(plan):
    cluster = {**ONE_MAC, "settings": {"foreign_ray": "refuse"}}
    alpha = plan({"alpha": fresh_mac(**SEEDS_MAC)}, cluster=cluster)["alpha"]
    ops = foreign_ops(alpha)
    assert [op.name for op in ops] == ["tasks/foreign_ray.py | Foreign Ray"]
    assert ops[0].position < min(op.position for op in other_changing_ops(alpha))  # the host fails there
    message = ops[0].commands[0]
    assert message.startswith("call fail_host(alpha runs Ray outside SAF's service (foreign_ray: refuse): ")
    for found in ("pid 2231 (arthurdell): .../ray/core/src/ray/gcs/gcs_server",
                  "listening: *:6380 (gcs_serve pid 2231)", "listening: *:8265 (Python pid 2245)",
                  f"started again by the launchd job com.arthurdell.ray-head ({AGENT}): /bin/zsh -lc source",
                  "started again by crontab line 2 of arthurdell: @reboot"):
        assert found in message
    for how in ("`ray stop` as arthurdell, or `kill 2231 2245 2251 2262`",
                f"`launchctl bootout gui/501/com.arthurdell.ray-head` and move {AGENT} away",
                "comment out crontab line 2 (`crontab -e`)", "or set foreign_ray: stop"):
        assert how in message


def test_a_converged_mac_runs_nothing_and_saf_s_own_job_is_not_foreign(plan):
    converged = converged_mac(**{"ray.RayProcesses": Raw(macos_output("ps-A.converged.macos15.txt")),
                                 "ray.LaunchdRayJobs:*": Raw(SAF_JOB)})
    alpha = plan({"alpha": converged}, cluster=ONE_MAC)["alpha"]
    assert foreign_ops(alpha) == [] and alpha.changing_ops == []


RESTARTED = Raw(  # SAF's job right after a restart (kickstart -k, a crash): new pids, the tree under the new one
    "root 1 0 /sbin/launchd\n"
    "arthurdell 5210 1 /Users/arthurdell/.pyenv/versions/3.9.23/bin/python3.9 /Users/arthurdell/saf/venv/current/"
    "bin/ray start --head --block\n"
    "arthurdell 5222 5210 /Users/arthurdell/saf/venv/py3.9.23-ray2.49.1-mlx0.29.1-0a1b2c3d/lib/python3.9/"
    "site-packages/ray/core/src/ray/gcs/gcs_server --gcs_server_port=6380\n"
    "arthurdell 5230 5210 /Users/arthurdell/saf/venv/py3.9.23-ray2.49.1-mlx0.29.1-0a1b2c3d/lib/python3.9/"
    "site-packages/ray/core/src/ray/raylet/raylet --node_manager_port=6381\n"
    "arthurdell 5301 5230 ray::IDLE\n")
ROLLED_BACK = Raw(  # after `saf rollback`: the previous venv (another name) is current
    "arthurdell 6001 1 /Users/arthurdell/.pyenv/versions/3.9.23/bin/python3.9 /Users/arthurdell/saf/venv/current/"
    "bin/ray start --head --block\n"
    "arthurdell 6010 6001 /Users/arthurdell/saf/venv/py3.9.23-ray2.49.0-mlx0.29.0-77aa88bb/lib/python3.9/"
    "site-packages/ray/core/src/ray/raylet/raylet --node_manager_port=6381\n")


@pytest.mark.parametrize("processes, job_pid", [(RESTARTED, 5210), (ROLLED_BACK, 6001)], ids=["restart", "rollback"])
def test_saf_s_own_service_is_never_foreign_after_a_restart_or_a_rollback(plan, processes, job_pid):
    job = {"state": "running", "pid": job_pid, "path": "/Library/LaunchDaemons/org.saf.ray-head.plist"}
    listeners = Raw("COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\n"
                    f"gcs_serve {job_pid + 12} arthurdell 11u IPv4 0x5e3a1c2b9f0d4e71 0t0 TCP *:6380 (LISTEN)\n"
                    f"Python {job_pid + 20} arthurdell 24u IPv4 0x5e3a1c2b9f0d5a19 0t0 TCP 127.0.0.1:8265 (LISTEN)\n")
    facts = converged_mac(**{"ray.RayProcesses": processes, "ray.MacListeners": listeners,
                             "launchd.LaunchdJob:system/org.saf.ray-head": job})
    alpha = plan({"alpha": facts}, cluster=ONE_MAC)["alpha"]
    assert foreign_ops(alpha) == [] and alpha.changing_ops == []
    # the job's previous pid (4127) would make every process foreign: the job's pid of now is what counts
    stale = converged_mac(**{"ray.RayProcesses": processes})
    assert foreign_ops(plan({"alpha": stale}, cluster=ONE_MAC)["alpha"])


def lab_debian(ip: str, **overrides):
    return fresh_debian(**{"network.LinuxInterfaces": Raw(IP_ADDR.replace("MTU", "1500").replace("10.0.0.1", ip)),
                           **overrides})


def test_a_converged_debian_worker_runs_nothing_for_foreign_ray(plan):
    gamma = lab_debian("10.77.0.13", **{
        "ray.RayProcessUnits": Raw(linux_output("ps-A-units.saf-user-unit.debian12.txt").replace(
            "user@1000.service               saf-ray-worker.service ",
            "saf-ray-worker.service          -                      ")),
        "ray.LinuxListeners": Raw(linux_output("ss-Hltnp.saf-user-unit.debian12.txt"))})
    assert foreign_ops(plan({"gamma": gamma}, cluster=LAB_DEBIAN, limit=["gamma"])["gamma"]) == []
    captured = lab_debian("10.77.0.13", **{
        "ray.RayProcessUnits": Raw(linux_output("ps-A-units.worker-and-hand-run-head.debian12.txt")),
        "ray.LinuxListeners": Raw(linux_output("ss-Hltnp.worker-and-hand-run-head.debian12.txt"))})
    stop = plan({"gamma": captured}, cluster=LAB_DEBIAN, limit=["gamma"])["gamma"].op("Stop the Ray not started")
    assert stop.name.endswith("pids 32, 33, 34, 35, 36, 37")  # the hand-started head only; SAF's 24-29 stay


def test_a_debian_host_s_own_user_unit_is_disabled_and_moved_aside_then_its_ray_stopped(plan):
    unit = "/home/saf/.config/systemd/user/ray-worker.service"
    gamma = lab_debian("10.77.0.13", **{
        "ray.RayProcessUnits": Raw(linux_output("ps-A-units.foreign-user-unit.debian12.txt")),
        "ray.LinuxListeners": Raw(linux_output("ss-Hltnp.foreign-user-unit.debian12.txt")),
        "ray.SystemdRayUnits:*": Raw(f"{unit}:ExecStart=/home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380 "
                                     "--block\n")})
    ops = foreign_ops(plan({"gamma": gamma}, cluster=LAB_DEBIAN, limit=["gamma"])["gamma"])
    assert [op.name.split(" | ", 1)[1] for op in ops] == [
        "Folder for what SAF sets aside (foreign Ray)",
        f"Take the user unit ray-worker.service ({unit}) out of service (foreign Ray)",
        "Stop the Ray not started by SAF: pids 26, 27"]
    assert "launchctl" not in ops[2].commands[0] and ops[2].commands[0].startswith("alive() {")  # no launchd guard
    assert ops[1].commands[:3] == ["systemctl --user disable --now ray-worker.service",
                                   moved_aside(unit, DEBIAN_BACKUP), "systemctl --user daemon-reload"]
    assert recorded(ops[1].commands[3], DEBIAN_BACKUP) == {
        "kind": "user unit", "name": "ray-worker.service", "path": unit, "saved": f"{DEBIAN_BACKUP}/files{unit}",
        "domain": "", "sudo": False, "program": "ExecStart=/home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380 "
                                                "--block"}
    assert not ops[1].sudo and not ops[2].sudo


def test_a_debian_host_s_crontab_line_is_commented_out_and_a_system_unit_needs_sudo(plan):
    gamma = lab_debian("10.77.0.13", **{
        "ray.CrontabRayLines": Raw("377055398 67\n@reboot /home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380\n"),
        "ray.SystemdRayUnits:*": Raw("/etc/systemd/system/ray.service:ExecStart=/usr/bin/python3 -m "
                                     "ray.scripts.scripts start --head --block\n"
                                     "/etc/systemd/system/saf-ray-worker.service:ExecStart=/home/saf/saf/venv/"
                                     "current/bin/ray start --block\n")})  # SAF's own: left alone
    ops = foreign_ops(plan({"gamma": gamma}, cluster=LAB_DEBIAN, limit=["gamma"])["gamma"])
    assert [op.name.split(" | ", 1)[1] for op in ops] == [
        "Folder for what SAF sets aside (foreign Ray)",
        "Take the system unit ray.service (/etc/systemd/system/ray.service) out of service (foreign Ray)",
        "Comment out crontab line(s) 1 that start Ray (foreign Ray)"]  # nothing runs: nothing to stop
    assert ops[1].sudo and ops[1].commands[:3] == [
        "systemctl disable --now ray.service", moved_aside("/etc/systemd/system/ray.service", DEBIAN_BACKUP),
        "systemctl daemon-reload"]
    assert recorded(ops[1].commands[3], DEBIAN_BACKUP)["sudo"] is True
    assert "NR == 1 { print" in ops[2].commands[0] and not ops[2].sudo


def test_a_re_run_on_an_adopted_node_changes_nothing(plan):
    adopted = lab_debian("10.77.0.13", **{"ray.CrontabRayLines": Raw(
        "1234 100\n# SAF disabled (foreign Ray): @reboot /home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380\n")})
    assert foreign_ops(plan({"gamma": adopted}, cluster=LAB_DEBIAN, limit=["gamma"])["gamma"]) == []


def test_another_user_s_ray_without_sudo_stops_the_node_with_the_fix(plan):
    root_ray = ("root 1 0 init.scope - /sbin/init\n"
                "root 7001 1 - - /opt/ray/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet --node_manager_port=0\n")
    facts = lab_debian("10.77.0.13", **{"ray.RayProcessUnits": Raw(root_ray)})
    cluster = {**LAB_DEBIAN, "settings": {"use_sudo": False}}
    ops = foreign_ops(plan({"gamma": {**facts, "server.Command:*": ""}}, cluster=cluster, limit=["gamma"])["gamma"])
    assert [op.name for op in ops] == ["tasks/foreign_ray.py | Foreign Ray"]
    assert "only root can stop, and use_sudo is false: pid 7001 (root): .../ray/core/src/ray/raylet/raylet" \
           in ops[0].commands[0]
    with_sudo = plan({"gamma": facts}, cluster=LAB_DEBIAN, limit=["gamma"])["gamma"]
    assert with_sudo.op("Stop the Ray not started by SAF: pids 7001").sudo


def test_a_running_unit_whose_file_was_not_found_is_still_taken_out_of_service(plan):
    # the unit files SAF greps hold no `ray start` (a generated unit, a wrapper script): the unit that
    # the foreign processes run in is disabled by name, with nothing to move; a user unit without sudo
    in_units = ("root 1 0 init.scope - /sbin/init\n"
                "saf 26 1 user@1000.service ray-worker.service /home/saf/ray-venv/lib/python3.11/site-packages/ray/"
                "core/src/ray/raylet/raylet --node_manager_port=0\n"
                "root 40 1 ray-head.service - /opt/ray/bin/python /opt/ray/bin/ray start --head --block\n"
                "root 42 40 ray-head.service - /opt/ray/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server\n"
                "saf 41 1 ssh.service - /home/saf/ray-venv/bin/python /home/saf/ray-venv/bin/ray start --head\n")
    gamma = lab_debian("10.77.0.13", **{"ray.RayProcessUnits": Raw(in_units)})
    ops = foreign_ops(plan({"gamma": gamma}, cluster=LAB_DEBIAN, limit=["gamma"])["gamma"])
    assert [op.name.split(" | ", 1)[1] for op in ops] == [
        "Folder for what SAF sets aside (foreign Ray)",
        "Take the user unit ray-worker.service out of service (foreign Ray)",
        "Take the system unit ray-head.service out of service (foreign Ray)",  # not ssh.service: a login's
        "Stop the Ray not started by SAF: pids 26, 40, 42, 41"]  # one launcher per unit, however many run in it
    assert ops[1].commands[0] == ("if systemctl --user cat ray-worker.service >/dev/null 2>&1; then systemctl --user "
                                  "disable --now ray-worker.service 2>/dev/null || systemctl --user stop "
                                  "ray-worker.service; fi")
    assert recorded(ops[1].commands[1], DEBIAN_BACKUP) == {  # disabled by name: nothing moved, no file to bring back
        "kind": "user unit", "name": "ray-worker.service", "path": "", "saved": "", "domain": "", "sudo": False,
        "program": ""}
    assert not ops[1].sudo and ops[2].sudo
    assert ops[2].commands[0] == ("if systemctl cat ray-head.service >/dev/null 2>&1; then systemctl disable --now "
                                  "ray-head.service 2>/dev/null || systemctl stop ray-head.service; fi")


def test_refuse_on_debian_names_each_unit_and_the_crontab_lines_in_the_fix(plan):
    gamma = lab_debian("10.77.0.13", **{
        "ray.RayProcessUnits": Raw(linux_output("ps-A-units.foreign-user-unit.debian12.txt")),
        "ray.SystemdRayUnits:*": Raw("/etc/systemd/system/ray.service:ExecStart=/usr/bin/ray start --head --block\n"
                                     "/home/saf/.config/systemd/user/ray-worker.service:ExecStart=/home/saf/ray-venv/"
                                     "bin/ray start --address=10.77.0.11:6380 --block\n"),
        "ray.CrontabRayLines": Raw("1 2\n@reboot /home/saf/ray-venv/bin/ray start --head\n"
                                   "@reboot /home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380\n")})
    cluster = {**LAB_DEBIAN, "settings": {"foreign_ray": "refuse"}}
    message = foreign_ops(plan({"gamma": gamma}, cluster=cluster, limit=["gamma"])["gamma"])[0].commands[0]
    assert ("stop it (`ray stop` as saf, or `kill 26 27`); `systemctl disable --now ray.service`; "
            "`systemctl --user disable --now ray-worker.service`; comment out crontab lines 1, 2 (`crontab -e`)"
            in message), message
    assert ("started again by the system unit ray.service (/etc/systemd/system/ray.service): ExecStart=/usr/bin/ray "
            "start --head --block; started again by the user unit ray-worker.service") in message


def test_a_hand_made_launch_daemon_is_booted_out_of_the_system_domain_with_sudo(plan):
    daemon = "/Library/LaunchDaemons/com.lab.ray-worker.plist"
    jobs = Raw(SAF_JOB + f"== {daemon}\n"  # SAF's own job first: passed over, not the end of the list
               '{"Label":"com.lab.ray-worker","ProgramArguments":["/opt/ray/bin/ray","start","--address=10.0.0.1:6380",'
               '"--block"]}\n\n')
    alpha = plan({"alpha": fresh_mac(**{**SEEDS_MAC, "ray.LaunchdRayJobs:*": jobs})}, cluster=ONE_MAC)["alpha"]
    take = alpha.op("Take the launchd job com.lab.ray-worker")
    assert take.commands[:3] == ["launchctl bootout system/com.lab.ray-worker 2>/dev/null || true",
                                 "launchctl disable system/com.lab.ray-worker", moved_aside(daemon, BACKUP)]
    assert recorded(take.commands[3], BACKUP)["domain"] == "system"
    assert take.sudo


# --- saf restore-launchers: what the stop set aside, put back (tasks/restore_launchers.py) ----------

OLDER_RUN = "20250101T000000Z"


def manifest_output(ops, backup: str) -> str:
    """What the SetAsideLaunchers fact reads after the deploy ran ``ops``: the manifest lines they append."""
    lines = [shlex.split(command)[2] for op in ops for command in op.commands if command.startswith("printf '%s\\n' ")]
    assert lines
    return f"== {backup}/manifest.jsonl\n" + "\n".join(lines) + "\n"


def restore_plan(plan, name: str, facts: dict, cluster: dict, limit=None):
    return plan({name: facts}, cluster=cluster, limit=limit, deploy_file="tasks/restore_launchers.py")[name]


def put_back(saved: str, path: str) -> str:
    return (f"if [ -e {saved} ] || [ -L {saved} ]; then if [ -e {path} ] || [ -L {path} ]; then echo 'SAF: {path} "
            f"exists already, and {saved} is never written over it; move one of them away and re-run' >&2; exit 1; "
            f"fi; mkdir -p {path.rsplit('/', 1)[0]} && mv -n -- {saved} {path}; elif [ ! -e {path} ] && "
            f"[ ! -L {path} ]; then echo 'SAF: neither {saved} nor {path} exists: nothing to put back' >&2; exit 1; fi")


def test_restore_on_debian_puts_the_unit_back_enables_it_and_uncomments_the_crontab_without_starting(plan, caplog):
    unit = "/etc/systemd/system/ray.service"
    gamma = lab_debian("10.77.0.13", **{
        "ray.CrontabRayLines": Raw("377055398 67\n@reboot /home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380\n"),
        "ray.SystemdRayUnits:*": Raw(f"{unit}:ExecStart=/usr/bin/python3 -m ray.scripts.scripts start --head --block\n")})
    stopped = foreign_ops(plan({"gamma": gamma}, cluster=LAB_DEBIAN, limit=["gamma"])["gamma"])
    older = f"/home/saf/.saf/foreign-ray-backup/{OLDER_RUN}"
    older_entry = json.dumps({"kind": "system unit", "name": "ray.service", "path": unit, "saved": f"{older}/files{unit}",
                              "domain": "", "sudo": True, "program": ""})
    manifests = f"== {older}/manifest.jsonl\n{older_entry}\n" + manifest_output(stopped, DEBIAN_BACKUP)
    facts = {"server.Home": "/home/saf", "set_aside.SetAsideLaunchers:*": Raw(manifests)}
    with caplog.at_level(logging.WARNING):
        ops = restore_plan(plan, "gamma", facts, LAB_DEBIAN, limit=["gamma"]).ops
    assert [op.name for op in ops] == [
        f"Put back the system unit ray.service ({unit}) and enable it (not started)",
        "Uncomment the 1 crontab line(s) SAF commented out",
        f"Mark {OLDER_RUN}'s set-aside launchers restored",
        f"Mark {saf.foreign_ray.RUN_STAMP}'s set-aside launchers restored"]
    assert ops[0].sudo and ops[0].commands == [put_back(f"{DEBIAN_BACKUP}/files{unit}", unit),
                                               "systemctl daemon-reload", "systemctl enable ray.service"]
    assert not ops[1].sudo and ops[1].commands == [
        "c=$(crontab -l 2>/dev/null); printf '%s\\n' \"$c\" | SAF_MARKER='# SAF disabled (foreign Ray): ' "
        "SAF_LINES='@reboot /home/saf/ray-venv/bin/ray start --address=10.77.0.11:6380' awk 'BEGIN { m = "
        "ENVIRON[\"SAF_MARKER\"]; n = split(ENVIRON[\"SAF_LINES\"], l, \"\\n\"); for (i = 1; i <= n; i++) want[m l[i]] "
        "= 1 } ($0 in want) { print substr($0, length(m) + 1); next } { print }' | crontab -"]
    assert ops[3].commands == [f"mv -- {DEBIAN_BACKUP}/manifest.jsonl {DEBIAN_BACKUP}/manifest.restored.jsonl"]
    assert not any(word in command for op in ops for command in op.commands
                   for word in ("systemctl start", "--now", "restart"))  # nothing started
    assert "[gamma] put back, not started: the system unit ray.service (/etc/systemd/system/ray.service); to start " \
           "it now: `systemctl start ray.service`" in caplog.text
    assert f"[gamma] left in {older}/files{unit}: an older copy of the system unit ray.service" in caplog.text


def test_restore_enables_a_unit_disabled_by_name_only_if_it_is_still_there(plan):
    in_units = ("root 1 0 init.scope - /sbin/init\n"
                "saf 26 1 user@1000.service ray-worker.service /home/saf/ray-venv/lib/python3.11/site-packages/ray/"
                "core/src/ray/raylet/raylet --node_manager_port=0\n")
    gamma = lab_debian("10.77.0.13", **{"ray.RayProcessUnits": Raw(in_units)})
    stopped = foreign_ops(plan({"gamma": gamma}, cluster=LAB_DEBIAN, limit=["gamma"])["gamma"])
    facts = {"server.Home": "/home/saf", "set_aside.SetAsideLaunchers:*": Raw(manifest_output(stopped, DEBIAN_BACKUP))}
    put = restore_plan(plan, "gamma", facts, LAB_DEBIAN, limit=["gamma"]).op("Put back the user unit ray-worker")
    assert put.commands == ["if systemctl --user cat ray-worker.service >/dev/null 2>&1; then "
                            "systemctl --user enable ray-worker.service; fi"] and not put.sudo


def test_restore_on_a_mac_moves_the_agent_and_the_daemon_back_and_enables_them_in_their_domains(plan):
    daemon = "/Library/LaunchDaemons/com.lab.ray-worker.plist"
    jobs = Raw(LAUNCHD_JOBS.output + f"== {daemon}\n"
               '{"Label":"com.lab.ray-worker","ProgramArguments":["/opt/ray/bin/ray","start","--block"]}\n\n')
    stopped = foreign_ops(plan({"alpha": fresh_mac(**{**SEEDS_MAC, "ray.LaunchdRayJobs:*": jobs})},
                               cluster=ONE_MAC)["alpha"])
    facts = {"server.Home": HOME, "set_aside.SetAsideLaunchers:*": Raw(manifest_output(stopped, BACKUP))}
    ops = restore_plan(plan, "alpha", facts, ONE_MAC).ops
    assert [op.name for op in ops] == [
        f"Put back the launchd job com.arthurdell.ray-head ({AGENT}) and enable it (not started)",
        f"Put back the launchd job com.lab.ray-worker ({daemon}) and enable it (not started)",
        "Uncomment the 1 crontab line(s) SAF commented out",
        f"Mark {saf.foreign_ray.RUN_STAMP}'s set-aside launchers restored"]
    assert ops[0].commands == [put_back(f"{BACKUP}/files{AGENT}", AGENT),
                               "launchctl enable gui/501/com.arthurdell.ray-head"] and not ops[0].sudo
    assert ops[1].commands == [put_back(f"{BACKUP}/files{daemon}", daemon),
                               "launchctl enable system/com.lab.ray-worker"] and ops[1].sudo
    assert not any("bootstrap" in command for op in ops for command in op.commands)  # enabled, not started


def test_restore_with_nothing_set_aside_changes_nothing(plan):
    facts = {"server.Home": "/home/saf", "set_aside.SetAsideLaunchers:*": Raw("")}
    assert restore_plan(plan, "gamma", facts, LAB_DEBIAN, limit=["gamma"]).ops == []
