"""What one task tells a later one within a run, per host: e.g. that the venv changes.

Task files run in separate namespaces; the notes live on the run's Host object, so they last
exactly one run (a new run, or a new plan, has new Host objects).
"""

from __future__ import annotations

from typing import Any

from pyinfra.api.host import Host

_ATTRIBUTE = "_saf_notes"


def note(host: Host, key: str, value: Any) -> None:
    notes = getattr(host, _ATTRIBUTE, None)
    if notes is None:
        notes = {}
        setattr(host, _ATTRIBUTE, notes)
    notes[key] = value


def read(host: Host, key: str, default: Any = None) -> Any:
    return (getattr(host, _ATTRIBUTE, None) or {}).get(key, default)
