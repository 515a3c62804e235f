"""Whose are the folders SAF would write into and delete from: ``venv_root`` and ``pyenv_root``.

One command per node reads both. A folder is SAF's to use when it is absent, empty, marked as
SAF's (``venv_root`` holds ``.saf-venv-root``, written when SAF builds a venv there), a pyenv
checkout (``pyenv_root`` holds ``bin/pyenv`` or ``libexec/pyenv``), or holds only what SAF and pyenv
put there (its venvs, named exactly as SAF names them, and the ``current``/``previous`` links;
pyenv's ``versions``, ``shims``, ``cache``...), which adopts a cluster deployed before the marker
existed. Anything else is someone's folder: the first entry that is not SAF's is reported, and
preflight refuses the node (``saf/preflight.py``) unless the folder carries SAF's marker.
"""

from __future__ import annotations

from pyinfra.api import FactBase, StringCommand
from pyinfra.api.command import QuoteString

from saf.venv_spec import CURRENT, PREVIOUS, ROOT_MARKER, VENV_NAME_PATTERN, VENV_SIDE_FILES

# what pyenv itself keeps in PYENV_ROOT when it is installed elsewhere (Homebrew's pyenv on macOS),
# and SAF's build logs there
PYENV_ENTRIES = ("versions", "shims", "cache", "plugins", "version", "sources", ".pyenv-version")

_SCRIPT = r"""
venv_re=$3 marker=$4 links=$5 side=$6 pyenv_entries=$7
is_venv() { printf '%s\n' "$1" | grep -Eqx "$venv_re"; }
venv_entry() {  # $1: the name, $2: the path
  case $1 in *[!A-Za-z0-9._-]*) return 1 ;; esac  # (no newline: grep -x then sees the whole name)
  [ "$1" = "$marker" ] && return 0
  for l in $links; do [ "$1" = "$l" ] && [ -L "$2" ] && return 0; done
  is_venv "$1" && [ -d "$2" ] && [ ! -L "$2" ] && return 0
  for s in $side; do case $1 in *"$s") is_venv "${1%"$s"}" && return 0 ;; esac; done
  return 1
}
pyenv_entry() {
  case $1 in *[!A-Za-z0-9._-]*) return 1 ;; saf-build-*.log) return 0 ;; esac
  for p in $pyenv_entries; do [ "$1" = "$p" ] && return 0; done
  return 1
}
judge() {  # $1: what (venv_root, pyenv_root), $2: the folder, $3: the entry test
  if [ ! -e "$2" ] && [ ! -L "$2" ]; then echo "$1 absent"; return; fi
  if [ ! -d "$2" ]; then echo "$1 notdir"; return; fi
  if [ "$1" = venv_root ] && [ -e "$2/$marker" ]; then echo "marker $1"; fi
  if [ "$1" = pyenv_root ] && { [ -e "$2/bin/pyenv" ] || [ -e "$2/libexec/pyenv" ]; }; then
    echo "$1 pyenv"; return
  fi
  found=empty
  for e in "$2"/* "$2"/.[!.]* "$2"/..?*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n=${e##*/}
    if ! $3 "$n" "$e"; then
      printf '%s foreign %s\n' "$1" "$(printf '%s' "$n" | tr -c '[:alnum:]._ /~-' '?')"; return
    fi
    found=ours
  done
  echo "$1 $found"
}
judge venv_root "$1" venv_entry
judge pyenv_root "$2" pyenv_entry
"""


def root_state(state: str = "absent", entry: str | None = None, marked: bool = False) -> dict:
    """One folder's answer in :class:`SafRoots`."""
    return {"state": state, "entry": entry, "marked": marked}


class SafRoots(FactBase[dict]):
    """``{"venv_root": {"state": ..., "entry": ..., "marked": ...}, "pyenv_root": {...}}`` for the two
    absolute folders.

    ``state``: ``absent``, ``empty``, ``pyenv`` (a pyenv checkout), ``ours`` (only SAF's and pyenv's
    entries), ``foreign`` (``entry`` names the first entry that is not, odd characters shown as
    ``?``) or ``notdir`` (a file is in the way). ``marked``: venv_root holds SAF's marker.
    """

    pure_read = True  # reads two folders' entries only: may be kept and asked ahead (saf/fact_cache.py)

    @staticmethod
    def default() -> dict:
        return {"venv_root": root_state(), "pyenv_root": root_state()}

    def command(self, venv_root: str, pyenv_root: str) -> StringCommand:
        return StringCommand(
            "sh -c",
            QuoteString(_SCRIPT),
            "saf",
            QuoteString(venv_root),
            QuoteString(pyenv_root),
            QuoteString(VENV_NAME_PATTERN),
            QuoteString(ROOT_MARKER),
            QuoteString(f"{CURRENT} {PREVIOUS} .{CURRENT}.tmp .{PREVIOUS}.tmp"),
            QuoteString(" ".join(VENV_SIDE_FILES)),
            QuoteString(" ".join(PYENV_ENTRIES)),
        )

    def process(self, output: list[str]) -> dict:
        result = self.default()
        marked = set()
        for line in output:
            parts = line.rstrip("\n").split(" ", 2)
            if len(parts) == 2 and parts[0] == "marker":
                marked.add(parts[1])
            elif len(parts) >= 2 and parts[0] in result:
                result[parts[0]] = root_state(parts[1], parts[2] if len(parts) == 3 else None)
        for folder in marked & set(result):
            result[folder]["marked"] = True
        return result
