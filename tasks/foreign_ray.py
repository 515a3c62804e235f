"""Ray that SAF's service did not start (a hand-run cluster's): stopped, or the node refused.

Included right after preflight, so that with ``foreign_ray: refuse`` a node running foreign Ray
is stopped before anything changes on it, and with ``stop`` the foreign Ray (its GCS on the
seeds' 6380, a dashboard on 0.0.0.0) is gone before SAF's service needs its ports. ``stop``
first takes out what would start it again and that SAF did not write (a launchd job or systemd
unit: disabled, its file moved to ~/.saf/foreign-ray-backup/<run>/files/<its whole path>, never
over another; crontab lines: commented out with a marker), each recorded in the run's
manifest.jsonl for ``saf restore-launchers`` (tasks/restore_launchers.py), then stops each process
(TERM, KILL after a bounded wait). A node where nothing foreign runs gets no operation at all.
See saf/foreign_ray.py for the judgement.
"""

from pyinfra import host, logger
from pyinfra.facts.server import Home
from pyinfra.operations import server

from saf.foreign_ray import (
    autoscaler_fixes,
    backup_dir,
    backup_folder_command,
    crontab_command,
    crontab_entry,
    found_lines,
    launcher_commands,
    manifest_command,
    node_foreign_ray,
    refusal,
    stop_processes_command,
    sudo_refusal,
)
from saf.operations.stop import stop_host

found = node_foreign_ray(host)


def warn(message: str) -> None:
    logger.warning(f"[{host.name}] {message}")


def take_out_of_service() -> None:
    """Launchers first (a supervisor would restart what is killed), then the processes."""
    backup = backup_dir(host.get_fact(Home))
    if found.launchers or found.cron_lines:
        server.shell(name="Folder for what SAF sets aside (foreign Ray)", commands=[backup_folder_command(backup)])
    for launcher in found.launchers:
        server.shell(
            name=f"Take the {launcher.describe()} out of service (foreign Ray)",
            commands=launcher_commands(launcher, backup),
            _sudo=launcher.needs_sudo,
        )
    if found.cron_lines:
        numbers = ", ".join(str(number) for number, _ in found.cron_lines)
        server.shell(
            name=f"Comment out crontab line(s) {numbers} that start Ray (foreign Ray)",
            commands=[
                crontab_command(found.cron_lines, found.cron_checksum, backup),
                manifest_command(backup, crontab_entry(found.user, found.cron_lines, backup)),
            ],
        )
    if found.processes:
        pids = ", ".join(str(process["pid"]) for process in found.processes)
        server.shell(
            name=f"Stop the Ray not started by SAF: pids {pids}",
            commands=[stop_processes_command(found.processes, owner=found.owner, job_target=found.job_target)],
            _sudo=bool(found.others_processes),
        )


if found.found or found.unreadable_jobs:
    for line in found_lines(found):
        warn(f"Ray not started by SAF: {line}")
    for fix in autoscaler_fixes(host.name, found):
        warn(fix)
if found.found:
    if host.data.foreign_ray == "refuse":
        stop_host(name="Foreign Ray", reason=refusal(host.name, found))
    elif found.needs_sudo and not host.data.use_sudo:
        stop_host(name="Foreign Ray", reason=sudo_refusal(host.name, found))
    else:
        take_out_of_service()
