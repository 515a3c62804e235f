"""The Ray on a node, whoever started it: its processes, who owns them, what listens, and what
would start it again.

``ps -A -ww -o user= -o pid= -o ppid= -o args=`` reads the same on macOS and Linux. ``-ww``: whole
command lines; without it ps may cut them at 80 columns when it cannot tell the width of its
output (seen on the lab, from a process with no terminal), and a cut line hides Ray's names. A Ray process is
one of Ray's own programs (raylet, gcs_server), a ``ray start`` or a Python process running one
of Ray's components (dashboard, agents, the autoscaler's monitor, the client server, workers
named ``ray::``, the dashboard's module processes named ``ray-dashboard-<Module>-<n>``).

Ownership is the service manager's word, never a path: on Linux procps' ``unit`` / ``uunit``
columns name each process's systemd unit (the cgroup systemd put it in); on macOS the launchd
job's pid (:class:`saf.facts.launchd.LaunchdJob`) roots SAF's process tree. The judgement itself
is :mod:`saf.foreign_ray`'s.

Listeners come from ``ss -Hltnp`` (Linux) and ``lsof -iTCP -sTCP:LISTEN -n -P`` (macOS); what
would start Ray again from unit files, launchd plists and the SSH user's crontab.
"""

from __future__ import annotations

import json
import re
import shlex

from pyinfra.api import FactBase

from saf.facts.unexpected import UnexpectedOutput

PS_COMMAND = "ps -A -ww -o user= -o pid= -o ppid= -o args="
PS_UNITS_COMMAND = "ps -A -ww -o user= -o pid= -o ppid= -o unit= -o uunit= -o args="
SS_COMMAND = "ss -Hltnp"
LSOF_COMMAND = "lsof -iTCP -sTCP:LISTEN -n -P"
_RAY_PROGRAM = re.compile(
    r"(/raylet(\s|$)|/gcs_server(\s|$)|\bray start\b|/bin/ray\s+start\b|ray/dashboard/|ray/_private/"
    r"|ray/autoscaler/_private/monitor\.py|^ray::|^ray-dashboard-|default_worker\.py|-m ray\.util\.client\.server\b)"
)
# what runs `ray start` (directly, from a shell line, or through `python -m ray.scripts.scripts start`)
RAY_START = re.compile(r"(\bray(\.scripts\.scripts)?\s+start\b)")
_LINE = re.compile(r"^\s*(\S+)\s+(\d+)\s+(\d+)\s+(.*)$")
_UNITS_LINE = re.compile(r"^\s*(\S+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(.*)$")


def is_ray_command(command: str) -> bool:
    """Whether a process's command line is one of Ray's processes."""
    return bool(_RAY_PROGRAM.search(command))


class RayProcesses(FactBase[list]):
    """``[{"user", "pid", "ppid", "command"}]`` for every Ray process on the node."""

    default = list

    def command(self) -> str:
        return PS_COMMAND

    def process(self, output: list[str]) -> list:
        processes = []
        for line in output:
            if not line.strip():
                continue
            found = _LINE.match(line)
            if not found:
                raise UnexpectedOutput(PS_COMMAND, [line])
            user, pid, ppid, command = found.groups()
            if is_ray_command(command):
                processes.append({"user": user, "pid": int(pid), "ppid": int(ppid), "command": command})
        return processes


def _unit(value: str) -> str | None:
    return None if value == "-" else value


class RayProcessUnits(FactBase[list]):
    """Linux: :class:`RayProcesses` with each process's systemd ``unit`` (a system unit, or the
    user's ``user@UID.service``) and ``user_unit`` (the user unit inside it); None for ``-``
    (a process outside any unit, e.g. in a session scope's parent or another namespace)."""

    default = list

    def requires_command(self) -> str:
        return "ps"

    def command(self) -> str:
        return PS_UNITS_COMMAND

    def process(self, output: list[str]) -> list:
        processes = []
        any_unit = False
        for line in output:
            if not line.strip():
                continue
            found = _UNITS_LINE.match(line)
            if not found:
                raise UnexpectedOutput(PS_UNITS_COMMAND, [line])
            user, pid, ppid, unit, user_unit, command = found.groups()
            any_unit = any_unit or unit != "-"
            if is_ray_command(command):
                processes.append(
                    {
                        "user": user,
                        "pid": int(pid),
                        "ppid": int(ppid),
                        "command": command,
                        "unit": _unit(unit),
                        "user_unit": _unit(user_unit),
                    }
                )
        if processes and not any_unit:
            # on systemd every process but the kernel's is in a unit (pid 1 in init.scope): a column of
            # '-' means ps cannot read units here, and SAF's own service would look foreign
            raise UnexpectedOutput(PS_UNITS_COMMAND, ["no process is in a systemd unit", *output[:2]])
        return processes


# `ss -Hltnp`: State Recv-Q Send-Q Local:Port Peer:Port [users:(("comm",pid=N,fd=N),...)]
_SS_LINE = re.compile(r"^LISTEN\s+\d+\s+\d+\s+(\S+):(\d+)\s+\S+(?:\s+(users:\(.*\)))?\s*$")
_SS_USER = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)')


def _bind_address(address: str) -> str:
    """``[::ffff:10.0.0.1]`` -> ``10.0.0.1``, ``[::]`` -> ``::``, ``*`` stays (every address)."""
    address = address.strip("[]")
    address = address.split("%", 1)[0]  # fe80::1%eth0: the scope is not part of the address
    return address.removeprefix("::ffff:") if "." in address else address


class LinuxListeners(FactBase[list]):
    """``[{"address", "port", "pid", "program"}]`` for every listening TCP socket (``ss -Hltnp``);
    ``pid``/``program`` None where ss names no process (another user's, without root)."""

    default = list

    def requires_command(self) -> str:
        return "ss"

    def command(self) -> str:
        return SS_COMMAND

    def process(self, output: list[str]) -> list:
        listeners = []
        for line in output:
            if not line.strip():
                continue
            found = _SS_LINE.match(line.strip())
            if not found:
                raise UnexpectedOutput(SS_COMMAND, [line])
            address, port, users = found.groups()
            owners = _SS_USER.findall(users or "") or [(None, None)]
            for program, pid in owners:  # a socket shared by several processes: one entry each
                listeners.append(
                    {
                        "address": _bind_address(address),
                        "port": int(port),
                        "pid": int(pid) if pid else None,
                        "program": program,
                    }
                )
        return listeners


# lsof: COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME, NAME being `host:port (LISTEN)`
_LSOF_LINE = re.compile(r"^(\S+)\s+(\d+)\s+(\S+)\s+\S+\s+(IPv4|IPv6)\s+\S+\s+\S+\s+TCP\s+(\S+):(\d+)\s+\(LISTEN\)$")


class MacListeners(FactBase[list]):
    """``[{"address", "port", "pid", "program", "user"}]`` for every listening TCP socket
    (``lsof -iTCP -sTCP:LISTEN -n -P``; without root, only the caller's own). lsof exits 1 when
    it lists nothing: that is no listener."""

    default = list

    def requires_command(self) -> str:
        return "lsof"

    def command(self) -> str:
        return f"{LSOF_COMMAND} || true"

    def process(self, output: list[str]) -> list:
        listeners = []
        for line in output:
            if not line.strip() or line.startswith("COMMAND "):
                continue
            found = _LSOF_LINE.match(line.strip())
            if not found:
                raise UnexpectedOutput(LSOF_COMMAND, [line])
            program, pid, user, _, address, port = found.groups()
            listeners.append(
                {
                    "address": _bind_address(address),
                    "port": int(port),
                    "pid": int(pid),
                    "program": program,
                    "user": user,
                }
            )
        return listeners


class SystemdRayUnits(FactBase[list]):
    """``[{"path", "unit", "user", "exec"}]``: every unit file in /etc/systemd/system or the SSH
    user's ~/.config/systemd/user whose ExecStart runs ``ray start`` (``user``: a user unit)."""

    pure_read = True  # reads unit files only: may be kept and asked ahead (saf/fact_cache.py)

    default = list

    def command(self, home: str) -> str:
        return (
            f"grep -sHE '^[[:space:]]*ExecStart=' /etc/systemd/system/*.service "
            f"{shlex.quote(home)}/.config/systemd/user/*.service || true"
        )

    def process(self, output: list[str]) -> list:
        units = []
        for line in output:
            if not line.strip():
                continue
            path, separator, exec_line = line.partition(":")
            if not separator or not path.endswith(".service"):
                raise UnexpectedOutput("grep ExecStart= (systemd unit files)", [line])
            if RAY_START.search(exec_line):
                units.append(
                    {
                        "path": path,
                        "unit": path.rsplit("/", 1)[1],
                        "exec": exec_line.strip(),
                        "user": "/.config/systemd/user/" in path,
                    }
                )
        return units


LAUNCHD_DIRS = ("/Library/LaunchDaemons", "/Library/LaunchAgents")


class LaunchdRayJobs(FactBase[list]):
    """``[{"path", "label", "program"}]``: every launchd plist in /Library/LaunchDaemons,
    /Library/LaunchAgents or the SSH user's ~/Library/LaunchAgents whose program runs ``ray
    start``. Each plist that mentions ray is printed as JSON by ``plutil`` (binary ones too); one
    plutil cannot convert (a date, data) is listed with ``program`` None, to be looked at."""

    pure_read = True  # reads plist files only: may be kept and asked ahead (saf/fact_cache.py)

    default = list

    def requires_command(self, home: str) -> str:
        return "plutil"

    def command(self, home: str) -> str:
        dirs = " ".join(f"{directory}/*.plist" for directory in LAUNCHD_DIRS)
        return (
            f"for f in {dirs} {shlex.quote(home)}/Library/LaunchAgents/*.plist; do "
            '[ -f "$f" ] && grep -q ray "$f" 2>/dev/null || continue; '
            'echo "== $f"; plutil -convert json -o - "$f" 2>/dev/null || echo \'!! not JSON\'; echo; done'
        )

    def process(self, output: list[str]) -> list:
        jobs = []
        path = None
        for line in output:
            if line.startswith("== "):
                path = line[3:].strip()
            elif line.strip() == "!! not JSON" and path:
                jobs.append({"path": path, "label": path.rsplit("/", 1)[1].removesuffix(".plist"), "program": None})
            elif line.strip() and path:
                try:
                    plist = json.loads(line)
                except ValueError:
                    raise UnexpectedOutput("plutil -convert json (launchd plists)", [line]) from None
                program = " ".join(
                    [
                        *([plist["Program"]] if plist.get("Program") else []),
                        *map(str, plist.get("ProgramArguments") or []),
                    ]
                )
                if RAY_START.search(program):
                    jobs.append({"path": path, "label": str(plist.get("Label") or ""), "program": program})
            elif line.strip():
                raise UnexpectedOutput("plutil -convert json (launchd plists)", [line])
        return jobs


CRONTAB_COMMAND = "c=$(crontab -l 2>/dev/null); printf '%s\\n' \"$c\" | cksum; printf '%s\\n' \"$c\""
_CKSUM = re.compile(r"^\d+ \d+$")


class CrontabRayLines(FactBase[dict]):
    """The SSH user's crontab: ``{"checksum": cksum of it as read, "lines": [(number, line)]}``
    with the lines that run ``ray start`` and are not commented out (numbered from 1). The
    checksum lets a change refuse to rewrite a crontab edited since it was read."""

    pure_read = True  # reads the user's crontab file only: may be kept and asked ahead (saf/fact_cache.py)

    def command(self) -> str:
        return CRONTAB_COMMAND

    def process(self, output: list[str]) -> dict:
        if not output:
            return {"checksum": "", "lines": []}
        if not _CKSUM.match(output[0].strip()):
            raise UnexpectedOutput("crontab -l | cksum", output)
        lines = [
            (number, line)
            for number, line in enumerate(output[1:], start=1)
            if RAY_START.search(line) and not line.lstrip().startswith("#")
        ]
        return {"checksum": output[0].strip(), "lines": lines}
