"""launchd jobs with the modern launchctl (bootstrap, bootout, enable, kickstart).

pyinfra's own launchd operation drives the deprecated ``launchctl start/stop``, which does not
load a changed plist; this one reads the job's state with ``launchctl print`` and yields only
what the job needs.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation

from saf.facts.launchd import LaunchdJob


@operation()
def launchd_job(
    label: str,
    plist: str,
    domain: str = "system",
    definition_changed: bool = False,
    restart: bool = False,
    present: bool = True,
    oneshot: bool = False,
):
    """
    Load, reload or restart a launchd job so that it runs its current definition.

    + label: the job's Label
    + plist: path of its plist on the node
    + domain: ``system`` (LaunchDaemon) or ``gui/<uid>`` (LaunchAgent)
    + definition_changed: the plist changed in this run: reload it (bootout, then bootstrap)
    + restart: restart the running job (``kickstart -k``), e.g. because its venv changed
    + present: False unloads the job (``bootout``) if it is loaded
    + oneshot: a job that runs once at load (and at boot) and exits: loaded is all it needs
    """
    target = f"{domain}/{label}"
    commands = job_commands(
        host.get_fact(LaunchdJob, target=target),
        label,
        plist,
        domain,
        definition_changed=definition_changed,
        restart=restart,
        present=present,
        oneshot=oneshot,
    )
    if commands or not present:
        yield from commands
    else:
        host.noop(f"launchd job {label} is loaded" + ("" if oneshot else " and running"))


def job_commands(
    loaded: dict | None,
    label: str,
    plist: str,
    domain: str,
    definition_changed: bool = False,
    restart: bool = False,
    present: bool = True,
    oneshot: bool = False,
) -> list[str]:
    """What a job needs, given what ``launchctl print`` says of it (``loaded``): [] when nothing."""
    target = f"{domain}/{label}"
    if not present:
        return [f"launchctl bootout {target}"] if loaded is not None else []
    # enable first: a job disabled earlier (launchctl disable, or an old `launchctl unload -w`)
    # cannot be bootstrapped (launchctl bootstrap fails with "Service is disabled")
    bootstrap = [f"launchctl enable {target}", f"launchctl bootstrap {domain} {shlex.quote(plist)}"]
    if loaded is None:
        return bootstrap
    if definition_changed:
        # bootstrap of a loaded job fails (exit 5): unload first, and wait until it is gone
        return [
            f"launchctl bootout {target} || true",
            (
                f"for i in $(seq 50); do launchctl print {target} >/dev/null 2>&1 || exit 0; sleep 0.2; done; "
                f"echo 'SAF: {label} did not unload within 10 s' >&2; exit 1"
            ),
            *bootstrap,
        ]
    if restart or (not oneshot and loaded.get("state") != "running"):
        return [f"launchctl kickstart -k {target}"]
    return []
