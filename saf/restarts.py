"""Why a node's Ray must restart in this run although its service definition is unchanged.

Two sources, and Ray restarts (once) when either has a reason:

- **What this run changes.** A task that changes something Ray has loaded (the venv it runs, its
  auth token) records the reason; the Ray service task reads the reasons where it decides to
  restart. They live on the run's Host object, so they last exactly one run.
- **What the node says.** A run stopped between such a change and the restart (Ctrl-C, a killed
  pyinfra, a dropped connection) leaves Ray running what it loaded before, and the next run
  changes nothing that would restart it. So the service's running state is read from the node
  (:class:`saf.facts.service.RayServiceRun`, before any operation runs) and judged here:
  :func:`stale_ray` says what Ray runs that is no longer what is on disk.

A changed definition restarts Ray by itself (the service operation sees it); one changed on disk
after Ray started (and, on systemd, not yet loaded) is a stale reason too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pyinfra.api.host import Host

_ATTRIBUTE = "_saf_ray_restart_reasons"


class RestartReason(Enum):
    VENV_SWITCHED = "the venv Ray runs (current) changes"
    AUTH_TOKEN_CHANGED = "the node's Ray auth token changes"


def restart_ray_because(host: Host, reason: RestartReason) -> None:
    reasons: set[RestartReason] = getattr(host, _ATTRIBUTE, None) or set()
    reasons.add(reason)
    setattr(host, _ATTRIBUTE, reasons)


def ray_restart_reasons(host: Host) -> frozenset[RestartReason]:
    return frozenset(getattr(host, _ATTRIBUTE, None) or ())


def plan_ray_restart(host: Host, why: list[str]) -> None:
    """What the Ray service task decided: Ray restarts on ``host`` for these reasons (said when a
    run stops before the restart: saf/interrupt.py)."""
    host._saf_ray_restart_planned = tuple(why)  # type: ignore[attr-defined]  # SAF's mark on pyinfra's Host


def planned_ray_restart(host: Host) -> tuple[str, ...]:
    return getattr(host, "_saf_ray_restart_planned", ())


@dataclass(frozen=True)
class StaleRay:
    """What the running Ray has loaded that is no longer what is on the node (empty: nothing).

    ``reload_definition``: its definition changed on disk after it started (a restart alone would
    start the old one again: launchd needs a bootout and bootstrap, systemd a daemon-reload)."""

    reasons: tuple[str, ...] = ()
    reload_definition: bool = False
    daemon_reload: bool = False

    def __bool__(self) -> bool:
        return bool(self.reasons) or self.daemon_reload


def _changed_after(run: dict, path: str | None) -> bool:
    mtime = run["mtimes"].get(path) if path else None
    # both on the node's clock, to the second: a file written after the start second is newer
    return mtime is not None and mtime > run["started"]


def _site_packages_changed(run: dict) -> bool:
    return any(path.endswith("/site-packages") and mtime > run["started"] for path, mtime in run["mtimes"].items())


def stale_ray(run: dict, definition: str, token: str | None = None) -> StaleRay:
    """Judge ``run`` (a :class:`~saf.facts.service.RayServiceRun` value): the reasons the running
    Ray is stale, against its ``definition`` file (unit or plist) and auth ``token`` file (None
    when the node runs without one)."""
    need_reload = bool(run.get("need_daemon_reload"))
    if not run.get("pid") or run.get("started") is None:
        # not running: the service operation starts it from what is on disk (systemd after a reload)
        return StaleRay(daemon_reload=need_reload)
    reasons = []
    if run["venv"] and run["current"] and run["venv"] != run["current"]:
        reasons.append(f"it runs from venv {run['venv']}, current is {run['current']}")
    elif run["venv"] and run["venv"] == run["current"] and _site_packages_changed(run):
        reasons.append(f"the packages of its venv {run['venv']} changed after it started")
    definition_changed = need_reload or _changed_after(run, definition)
    if definition_changed:
        reasons.append(
            f"its definition {definition} changed after it started"
            + (" (systemd has not loaded it: NeedDaemonReload)" if need_reload else "")
        )
    if _changed_after(run, token):
        reasons.append("its auth token changed after it started")
    return StaleRay(tuple(reasons), reload_definition=definition_changed, daemon_reload=need_reload)
