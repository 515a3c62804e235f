"""How the node's Ray service runs right now, read from the node: what a restart decision needs.

A run that was interrupted (Ctrl-C, a killed pyinfra, a dropped SSH connection) may have switched
the venv, pushed a token or written a unit file without restarting Ray; the next run must see that
from the node, not from what it changes itself. One command per node answers, for the service's
main process (systemd's ``MainPID``, the launchd job's ``pid``):

- which venv it runs: the venv directory named in its own command line or its children's (on
  Linux the service runs ``<venv>/bin/python <root>/current/bin/ray start``, the shebang naming the
  venv; Ray's raylet and gcs_server run from ``<venv>/lib/.../site-packages/ray/core``), against
  the venv ``<root>/current`` resolves to (``cd -P``: POSIX, where macOS's ``readlink -f`` is recent);
- when it started: the node's clock (``date +%s``) less its elapsed time (``ps -o etime=``, the
  spelling macOS and Linux share), against the modification times of the files it has loaded (the
  unit file or plist, the auth token, the current venv's site-packages: pip rewrites it when a
  repair changes a package in place); the node's own clock on both sides, so the control
  machine's does not matter;
- systemd's ``NeedDaemonReload``: the unit file on disk differs from the one systemd loaded.

Read live, not asked ahead (saf/fact_cache.py): it observes processes and the service manager's state.
"""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase

from saf.facts.launchd import LaunchdJob
from saf.facts.unexpected import UnexpectedOutput

SECTIONS = ("service", "root", "process", "current", "now", "mtime")
MANAGERS = ("systemd", "launchd")
_ETIME = re.compile(r"^(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+)$")  # [[dd-]hh:]mm:ss
_PROCESS = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\S+)\s+(.*)$")
_MTIME = re.compile(r"^(\d+) (.+)$")


def etime_seconds(etime: str) -> int:
    """``ps -o etime=`` (``[[dd-]hh:]mm:ss``) in seconds."""
    found = _ETIME.match(etime.strip())
    if not found:
        raise ValueError(etime)
    days, hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _service_lines(manager: str, target: str, user_mode: bool) -> str:
    """Shell printing the service manager's view (raw) and setting ``pid`` to the main process."""
    if manager == "systemd":
        systemctl = "systemctl --user" if user_mode else "systemctl"
        return (
            f"out=$({systemctl} show -p MainPID -p NeedDaemonReload {shlex.quote(target)} 2>/dev/null); "
            "printf '%s\\n' \"$out\"; pid=$(printf '%s\\n' \"$out\" | sed -n 's/^MainPID=//p')"
        )
    return (
        f"out=$(launchctl print {shlex.quote(target)} 2>/dev/null); printf '%s\\n' \"$out\"; "
        "pid=$(printf '%s\\n' \"$out\" | sed -n 's/^[[:space:]]*pid = \\([0-9][0-9]*\\)$/\\1/p' | head -n 1)"
    )


def service_run_command(
    manager: str, target: str, venv_root: str, watched: tuple[str, ...], user_mode: bool = False
) -> str:
    """The one shell command behind :class:`RayServiceRun` (sections headed ``== name``)."""
    root = shlex.quote(venv_root.rstrip("/"))
    files = " ".join([*(shlex.quote(path) for path in watched), f"{root}/current/lib/python*/site-packages"])
    return "; ".join(
        [
            "echo '== service'",
            f"echo {manager}",
            _service_lines(manager, target, user_mode),
            "echo '== root'",
            f"echo {root}",
            "echo '== process'",
            (
                'if [ -n "$pid" ] && [ "$pid" != 0 ]; then ps -A -ww -o pid= -o ppid= -o etime= -o args= '
                "| awk -v p=\"$pid\" '$1 == p || $2 == p'; fi"
            ),
            "echo '== current'",
            f"(cd -P {root}/current 2>/dev/null && pwd -P)",
            "echo '== now'",
            "date +%s",
            "echo '== mtime'",
            (
                f'for f in {files}; do [ -e "$f" ] || continue; '
                'm=$(stat -c %Y "$f" 2>/dev/null || stat -f %m "$f" 2>/dev/null) && echo "$m $f"; done'
            ),
            "true",
        ]
    )


def _sections(output: list[str], command: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    name = None
    for line in output:
        if line.startswith("== ") and line[3:].strip() in SECTIONS:
            name = line[3:].strip()
            sections[name] = []
        elif name is None:
            if line.strip():
                raise UnexpectedOutput(command, output)
        else:
            sections[name].append(line)
    if set(sections) != set(SECTIONS):
        raise UnexpectedOutput(command, output)
    return sections


def venv_in(command_line: str, venv_root: str) -> str | None:
    """The venv directory under ``venv_root`` a command line names (not ``current``/``previous``)."""
    for found in re.finditer(r"(?:^|\s)" + re.escape(venv_root.rstrip("/")) + r"/([^/\s]+)/", command_line):
        if found.group(1) not in ("current", "previous"):
            return found.group(1)
    return None


class RayServiceRun(FactBase[dict]):
    """``{"pid", "started", "venv", "current", "need_daemon_reload", "mtimes"}``: the service's main
    process (``pid`` None when it runs none), its start (seconds since the epoch, node clock), the
    venv it runs and the one ``current`` names (directory names), systemd's NeedDaemonReload, and
    ``{path: mtime}`` of the watched files that exist. See the module docstring."""

    def command(
        self, manager: str, target: str, venv_root: str, watched: tuple[str, ...] = (), user_mode: bool = False
    ) -> str:
        return service_run_command(manager, target, venv_root, tuple(watched), user_mode)

    def process(self, output: list[str]) -> dict:
        sections = _sections(output, "the Ray service's state (saf.facts.service.RayServiceRun)")
        pid, need_reload = _service(sections["service"])
        try:
            now = int("".join(sections["now"]).strip())
        except ValueError:
            raise UnexpectedOutput("date +%s", sections["now"]) from None
        started, lines = None, []
        for line in sections["process"]:
            found = _PROCESS.match(line)
            if not line.strip():
                continue
            if not found:
                raise UnexpectedOutput("ps -A -o pid= -o ppid= -o etime= -o args=", [line])
            process_pid, _, etime, args = found.groups()
            try:
                seconds = etime_seconds(etime)
            except ValueError:
                raise UnexpectedOutput("ps -o etime=", [line]) from None
            if int(process_pid) == pid:
                started = now - seconds
                lines.append(args)
            else:
                lines.insert(0, args)  # Ray's own programs first: the code that is loaded
        if started is None:
            pid = None  # systemd's or launchd's pid names no process now
        root = "".join(sections["root"]).strip()
        venv = next((name for name in (venv_in(args, root) for args in lines) if name), None)
        current = "".join(sections["current"]).strip().rstrip("/").rsplit("/", 1)[-1] or None
        mtimes = {}
        for line in sections["mtime"]:
            found = _MTIME.match(line.strip())
            if line.strip() and not found:
                raise UnexpectedOutput("stat (modification times)", [line])
            if found:
                mtimes[found.group(2)] = int(found.group(1))
        return {
            "pid": pid,
            "started": started,
            "venv": venv if pid else None,
            "current": current,
            "need_daemon_reload": need_reload,
            "mtimes": mtimes,
        }


def _service(lines: list[str]) -> tuple[int | None, bool]:
    """The main pid and NeedDaemonReload from the section ``<manager>`` then its raw output."""
    manager = lines[0].strip() if lines else ""
    if manager not in MANAGERS:
        raise UnexpectedOutput("the Ray service's state (saf.facts.service.RayServiceRun)", lines)
    if manager == "launchd":
        job = LaunchdJob().process(lines[1:])
        return (job or {}).get("pid"), False
    values = dict(line.strip().split("=", 1) for line in lines[1:] if "=" in line)
    pid = values.get("MainPID", "")
    return (int(pid) if pid.isdigit() and int(pid) > 0 else None), values.get("NeedDaemonReload") == "yes"
