"""What ``foreign_ray: stop`` set aside on a node and has not been put back: the entries of every
run's manifest (``~/.saf/foreign-ray-backup/<run>/manifest.jsonl``, written by tasks/foreign_ray.py).

A manifest that ``saf restore-launchers`` has put back is renamed (manifest.restored.jsonl), so
it is not read again.
"""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase

from saf.facts.unexpected import UnexpectedOutput

COMMAND_NAME = "cat ~/.saf/foreign-ray-backup/*/manifest.jsonl"


class SetAsideLaunchers(FactBase[list]):
    """``[{"run", "manifest", "kind", "name", "path", "saved", ...}]``: each manifest line with its
    run (the backup folder's name, a UTC stamp) and manifest path, in the order written."""

    pure_read = True  # reads manifest files only: may be kept and asked ahead (saf/fact_cache.py)

    default = list

    def command(self, backup_root: str) -> str:
        return (
            f'for f in {shlex.quote(backup_root)}/*/manifest.jsonl; do [ -f "$f" ] || continue; '
            'echo "== $f"; cat "$f"; done; true'
        )

    def process(self, output: list[str]) -> list:
        entries, manifest = [], None
        for line in output:
            if line.startswith("== "):
                manifest = line[3:].strip()
                continue
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if manifest is None or not isinstance(entry, dict) or not {"kind", "name"} <= set(entry):
                raise UnexpectedOutput(COMMAND_NAME, [line])
            entries.append({**entry, "run": manifest.rsplit("/", 2)[-2], "manifest": manifest})
        return entries
