"""Put back what ``foreign_ray: stop`` set aside (``saf restore-launchers``): each launchd job or
systemd unit file moved back to the path it came from (never over a file there) and enabled
again, the crontab lines it commented out uncommented; then each manifest it read is marked
restored, so a second run does nothing. Nothing is started: the restored launchers run at their
next boot or login (cron lines at their next time), or when started by hand as the log says.

Read from each node's ``~/.saf/foreign-ray-backup/<run>/manifest.jsonl`` (tasks/foreign_ray.py
writes them); where two runs set aside the same file, the newest run's copy is put back and the
older one stays in its folder. Run ``saf teardown`` first when going back to a hand-run Ray, or
the next deploy sets the launchers aside again.
"""

import shlex

from pyinfra import host, logger
from pyinfra.facts.server import Home
from pyinfra.operations import server

from saf.facts.set_aside import SetAsideLaunchers
from saf.foreign_ray import (
    MANIFEST,
    RESTORED_MANIFEST,
    backup_root,
    latest_entries,
    restore_commands,
    restore_describe,
    start_hint,
    uncomment_crontab_command,
)

entries = host.get_fact(SetAsideLaunchers, backup_root=backup_root(host.get_fact(Home)))
restored, left = latest_entries(entries)
for entry in left:
    logger.warning(
        f"[{host.name}] left in {entry['saved']}: an older copy of the {restore_describe(entry)} "
        "(a newer one is put back)"
    )
for entry in (e for e in restored if e["kind"] != "crontab"):
    server.shell(
        name=f"Put back the {restore_describe(entry)} and enable it (not started)",
        commands=restore_commands(entry),
        _sudo=bool(entry.get("sudo")),
    )
    logger.warning(
        f"[{host.name}] put back, not started: the {restore_describe(entry)}; to start it now: {start_hint(entry)}"
    )
cron_lines = [line for entry in restored if entry["kind"] == "crontab" for _, line in entry["lines"]]
if cron_lines:
    server.shell(
        name=f"Uncomment the {len(cron_lines)} crontab line(s) SAF commented out",
        commands=[uncomment_crontab_command(cron_lines)],
    )
for manifest in sorted({entry["manifest"] for entry in entries}):
    server.shell(
        name=f"Mark {manifest.rsplit('/', 2)[-2]}'s set-aside launchers restored",
        commands=[f"mv -- {shlex.quote(manifest)} {shlex.quote(manifest[: -len(MANIFEST)] + RESTORED_MANIFEST)}"],
    )
if not entries:
    logger.info(f"[{host.name}] nothing set aside by SAF to put back")
