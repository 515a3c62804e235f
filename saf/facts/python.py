"""Facts about a node's Python side: a pyenv-built interpreter, the SAF venvs, what a venv holds."""

from __future__ import annotations

import json
import re
import shlex

from pyinfra.api import FactBase, StringCommand
from pyinfra.api.command import QuoteString

from saf.venv_spec import is_venv_name

# A Python built without these is broken even if it starts (no _ssl: pip fails later, at worst).
REQUIRED_MODULES = ("ssl", "sqlite3", "lzma", "bz2", "ctypes", "readline")

_PROBE = (
    "import importlib, json, platform\n"
    "missing = []\n"
    f"for name in {REQUIRED_MODULES!r}:\n"
    "    try:\n"
    "        importlib.import_module(name)\n"
    "    except Exception:\n"
    "        missing.append(name)\n"
    "print(json.dumps({'version': platform.python_version(), 'missing': missing}))\n"
)

COMPLETE_MARKER = ".saf-complete"


class PythonInterpreter(FactBase[dict | None]):
    """``{"version": "3.9.23", "missing": [modules]}`` for an interpreter path, or None if absent."""

    pure_read = True  # reads an interpreter's version only: may be kept and asked ahead (saf/fact_cache.py)

    def command(self, python: str) -> StringCommand:
        return StringCommand(
            "if [ -x",
            QuoteString(python),
            "]; then",
            QuoteString(python),
            "-c",
            QuoteString(_PROBE),
            "2>/dev/null || echo BROKEN; fi",
        )

    def process(self, output: list[str]) -> dict | None:
        for line in output:
            line = line.strip()
            if line == "BROKEN":
                return {"version": None, "missing": list(REQUIRED_MODULES)}
            if line.startswith("{"):
                return json.loads(line)
        return None


class SafVenvs(FactBase[dict]):
    """The venvs under a venv root: ``{"venvs": {name: complete}, "current": name, "previous": name}``."""

    pure_read = True  # reads a folder's listing only: may be kept and asked ahead (saf/fact_cache.py)

    @staticmethod
    def default() -> dict:  # no output at all: the root does not exist yet
        return {"venvs": {}, "current": None, "previous": None}

    def command(self, root: str) -> StringCommand:
        script = (
            'cd "$1" 2>/dev/null || exit 0; '
            # only directories named like SAF's venvs: anything else under the root is not ours
            'for d in py*-ray*-mlx*-*/; do d="${d%/}"; [ -L "$d" ] && continue; [ -d "$d" ] || continue; '
            f'if [ -f "$d/{COMPLETE_MARKER}" ]; then echo "venv complete $d"; else echo "venv partial $d"; fi; done; '
            'for l in current previous; do [ -L "$l" ] && echo "link $l $(readlink "$l")"; done; true'
        )
        return StringCommand("sh -c", QuoteString(script), "saf", QuoteString(root))

    def process(self, output: list[str]) -> dict:
        result = self.default()
        for line in output:
            parts = line.strip().split(" ", 2)
            if len(parts) == 3 and parts[0] == "venv" and is_venv_name(parts[2]):  # the glob is loose
                result["venvs"][parts[2]] = parts[1] == "complete"
            elif len(parts) == 3 and parts[0] == "link":
                result[parts[1]] = parts[2].rstrip("/").rsplit("/", 1)[-1]
        return result


class VenvDistributions(FactBase[dict | None]):
    """Installed distributions of a venv, ``{normalized name: version}``, or None without a venv.

    Read from the names of site-packages' ``<name>-<version>.dist-info`` directories (what pip
    records for each installed distribution) rather than by starting the venv's Python: the same
    answer in a twentieth of the time, on every deploy."""

    pure_read = True  # reads a venv's files only: may be kept and asked ahead (saf/fact_cache.py)

    MARK = "SAF-VENV"

    def command(self, venv: str) -> StringCommand:
        python = f"{venv}/bin/python"
        site_packages = f"{shlex.quote(f'{venv}/lib')}/python*/site-packages"  # the glob outside the quotes
        return StringCommand(
            "if [ -x", QuoteString(python), f"]; then echo {self.MARK}; ls -1", site_packages, "2>/dev/null; fi"
        )

    def process(self, output: list[str]) -> dict | None:
        if self.MARK not in (line.strip() for line in output):
            return None
        found = {}
        for line in output:
            entry = line.strip()
            if entry.endswith(".dist-info") and "-" in entry:
                name, _, version = entry[: -len(".dist-info")].partition("-")
                found[re.sub(r"[-_.]+", "-", name).lower()] = version
        return found


class GlibcVersion(FactBase[str | None]):
    """The C library's version on Linux (``2.36``), which decides the manylinux wheels a node takes."""

    pure_read = True  # reads a version only: may be kept and asked ahead (saf/fact_cache.py)

    def command(self) -> str:
        return "getconf GNU_LIBC_VERSION 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        for line in output:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "glibc":
                return parts[1]
        return None
