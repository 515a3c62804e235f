"""What a node holds of served models: the staged model directories (with the digest each one was
completed with) and where ``current`` points, in one command.

A directory counts as staged only when its ``.saf-digest`` holds the digest asked for: that file is
written last, after the copy is complete, so a re-run with the same model changes nothing and a cut
short copy is copied again. Only names SAF makes are reported (``saf.serve.service.is_model_dir_name``):
nothing else in the folder is ever a candidate for removal.
"""

from __future__ import annotations

from pyinfra.api import FactBase

from saf.serve.service import CURRENT, DIGEST_MARKER, is_model_dir_name

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

    pure_read = True  # reads a folder's listing and its marker files only: may be kept and asked ahead (saf/fact_cache.py)

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
