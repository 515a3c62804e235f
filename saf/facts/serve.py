"""What a node holds of served models (the staged model directories, with the digest each one was
completed with, and where ``current`` points, in one command), and the served model proven through
its endpoint (:class:`ServeProbe`).

A directory counts as staged only when its ``.saf-digest`` holds the digest asked for: that file is
written last, after the copy is complete, so a re-run with the same model changes nothing and a cut
short copy is copied again. Only names SAF makes are reported (``saf.serve.service.is_model_dir_name``):
nothing else in the folder is ever a candidate for removal.
"""

from __future__ import annotations

import json

from pyinfra.api import FactBase, StringCommand
from pyinfra.api.command import QuoteString

from saf.node_scripts import node_script
from saf.serve.service import CURRENT, DIGEST_MARKER, is_model_dir_name

PROBE_PROGRAM = node_script("serve_probe.py")
PROBE_MARKER = "SAF-SERVE-PROBE "

_SCRIPT = """
cd {models} 2>/dev/null || exit 0
[ -L {current} ] && echo "current $(readlink {current})"
for entry in * .incoming-*; do
  [ -d "$entry" ] && [ ! -L "$entry" ] || continue
  echo "dir $entry $(head -c 64 "$entry/{marker}" 2>/dev/null)"
done
true
"""


class StagedModels(FactBase[dict]):
    """``{"current": "<name>" | None, "dirs": {"<name>": "<digest>" or ""}}`` for the node's models folder
    (an absolute path); empty when it does not exist."""

    pure_read = (
        True  # reads a folder's listing and its marker files only: may be kept and asked ahead (saf/fact_cache.py)
    )

    def command(self, models: str) -> str:
        from shlex import quote

        return _SCRIPT.format(models=quote(models), current=CURRENT, marker=DIGEST_MARKER)

    @staticmethod
    def default() -> dict:
        return {"current": None, "dirs": {}}

    def process(self, output: list[str]) -> dict:
        return parse_staged_models(output)


def parse_staged_models(output: list[str]) -> dict:
    staged: dict = {"current": None, "dirs": {}}
    for line in output:
        kind, _, rest = line.partition(" ")
        if kind == "current":
            staged["current"] = rest.strip() or None
        elif kind == "dir":
            name, _, digest = rest.partition(" ")
            if is_model_dir_name(name):
                staged["dirs"][name] = digest.strip()
    return staged


class ServeProbe(FactBase[dict]):
    """The served model proven through its endpoint, from the head (saf/node_scripts/serve_probe.py):
    ``ok`` or a ``reason`` by name, and per replica its timings. Read live: it asks a running service."""

    @staticmethod
    def default() -> dict:
        return {"ok": False, "reason": "no_probe_output", "detail": "the serving probe printed nothing"}

    def command(
        self, python: str, endpoint: str, model: str, replicas: int, key_file: str = "", timeout: int = 120
    ) -> StringCommand:
        key = ["--key-file", QuoteString(key_file)] if key_file else []
        return StringCommand(
            QuoteString(python),
            "-c",
            QuoteString(PROBE_PROGRAM),
            "--endpoint",
            QuoteString(endpoint),
            "--model",
            QuoteString(model),
            "--replicas",
            str(int(replicas)),
            *key,
            "--timeout",
            str(int(timeout)),
            "2>&1 || true",
        )

    def process(self, output: list[str]) -> dict:
        for line in output:
            if line.startswith(PROBE_MARKER):
                return json.loads(line[len(PROBE_MARKER) :])
        tail = " | ".join(line.strip() for line in output[-5:])
        return {
            "ok": False,
            "reason": "no_probe_output",
            "detail": f"the serving probe printed no result: {tail[:800]}",
        }
