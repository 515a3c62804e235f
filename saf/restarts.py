"""Why a node's Ray must restart in this run although its service definition is unchanged.

A task that changes something Ray has loaded (the venv it runs, its auth token) records the
reason; the Ray service task reads the reasons where it decides to restart. A changed
definition restarts Ray by itself (the service operation sees it). The reasons live on the run's
Host object, so they last exactly one run (a new run, or a new plan, has new Host objects).
"""

from __future__ import annotations

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
