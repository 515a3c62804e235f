"""Ray on a node that SAF's service did not start ("foreign" Ray): what is found, and how the deploy
takes it out of service (``foreign_ray: stop``) or refuses the node (``foreign_ray: refuse``).

One judgement, shared by the deploy (tasks/foreign_ray.py), ``saf doctor`` and the verification:
a Ray process is SAF's when its service manager says so, never because of its path. On Linux the
process is in SAF's unit (procps' ``unit`` column for a system unit, ``uunit`` for a user unit);
on macOS it is SAF's launchd job's process or a descendant of it. So SAF's service is SAF's right
after a restart (new pids), after ``saf rollback`` (another venv), and a Ray started by hand from
SAF's own venv is not.

The judgement is plain functions on plain data (:func:`saf_service_pids`, :func:`foreign_processes`,
:func:`foreign_listeners`, :func:`stray_problems`); :func:`node_foreign_ray` reads a host's facts
into :class:`ForeignRay`, and the ``*_commands`` functions say what the deploy runs about it.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from pyinfra.api.host import Host
from pyinfra.facts.server import Command, Home

from saf.facts.launchd import LaunchdJob
from saf.facts.ray import (
    CrontabRayLines,
    LaunchdRayJobs,
    LinuxListeners,
    MacListeners,
    RayProcesses,
    RayProcessUnits,
    SystemdRayUnits,
)
from saf.node_data import NodeData
from saf.node_os import is_macos
from saf.paths import on_node
from saf.ports import unnamed_listener_ports
from saf.service import RayService, node_ray_service

BACKUP_DIR = "~/.saf/foreign-ray-backup"
SAVED_FILES = "files"  # <backup>/files/<the file's whole path>
MANIFEST = "manifest.jsonl"  # <backup>/manifest.jsonl: one JSON object per thing set aside
RESTORED_MANIFEST = "manifest.restored.jsonl"  # the manifest once `saf restore-launchers` has put it all back
CRON_MARKER = "# SAF disabled (foreign Ray): "
# one backup folder per run, named by its UTC start, the same on every node
RUN_STAMP = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
TERM_WAIT_S = 10  # how long a stopped process has between TERM and KILL
LOOPBACK = ("127.0.0.1", "::1", "localhost")
# units a process can be in without the unit being Ray's launcher (cron runs `ray start` lines, an
# SSH login without logind stays in ssh.service): these are never disabled
_GENERIC_UNIT = re.compile(
    r"^((cron|crond|anacron|atd|ssh|sshd|user@\d+|(serial-)?getty@.*|systemd-.*)\.service"
    r"|.*\.scope|init\.scope)$"
)
_AUTOSCALING_CONFIG = re.compile(r"--autoscaling-config[= ](\S+)")


# --- the judgement: plain data in, plain data out ---------------------------------------------


@dataclass(frozen=True)
class Owner:
    """What identifies SAF's Ray service on a node: on Linux its unit (``user_unit``: a user
    unit, use_sudo: false); on macOS its launchd job's pid (None: the job runs no process)."""

    unit: str = ""
    user_unit: bool = False
    job_pid: int | None = None


def saf_service_pids(processes: list[dict], owner: Owner) -> set[int]:
    """The pids of the Ray processes that belong to SAF's service.

    Linux: those in SAF's unit (Ray's workers stay in their raylet's cgroup). macOS: the launchd
    job's process and its descendants (``ray start --block`` is the job's process; it starts
    the daemons, the raylet starts the workers).
    """
    if owner.unit:
        column = "user_unit" if owner.user_unit else "unit"
        return {p["pid"] for p in processes if p.get(column) == owner.unit}
    if owner.job_pid is None:
        return set()
    safs = {owner.job_pid}
    grew = True
    while grew:
        children = {p["pid"] for p in processes if p["ppid"] in safs} - safs
        grew = bool(children)
        safs |= children
    return safs & {p["pid"] for p in processes}


def foreign_processes(processes: list[dict], owner: Owner) -> list[dict]:
    """The Ray processes that are not SAF's service's."""
    safs = saf_service_pids(processes, owner)
    return [process for process in processes if process["pid"] not in safs]


def foreign_listeners(listeners: list[dict], processes: list[dict], owner: Owner, ports: Iterable[int]) -> list[dict]:
    """The listening sockets of Ray processes that are not SAF's service's, and those on Ray's ports
    (``ports``) whose process the OS did not name (another user's, read without root: SAF's service
    runs as the SSH user, whose sockets are always named). Another program on a Ray port (Redis on
    6379) is not Ray."""
    ports = set(ports)
    foreign = {process["pid"] for process in foreign_processes(processes, owner)}
    return [
        listener
        for listener in listeners
        if listener["pid"] in foreign or (listener["pid"] is None and listener["port"] in ports)
    ]


def open_dashboards(
    listeners: list[dict], processes: list[dict], owner: Owner, dashboard_port: int, dashboard_bind: str
) -> list[dict]:
    """SAF's own sockets on the dashboard port bound beyond loopback while ``dashboard_bind`` says
    loopback (the job API runs any code a visitor submits)."""
    if dashboard_bind == "cluster":
        return []
    safs = saf_service_pids(processes, owner)
    return [
        listener
        for listener in listeners
        if listener["pid"] in safs and listener["port"] == dashboard_port and listener["address"] not in LOOPBACK
    ]


def short_command(command: str, width: int = 100) -> str:
    """A process's command as a person reads it: the interpreter dropped when a Python runs a script
    (``/.../Python.app/.../Python -u /x/bin/ray start`` -> ``/x/bin/ray start``), site-packages
    shortened to ``.../``, then cut to ``width``."""
    words = command.split(maxsplit=1)
    if len(words) == 2 and re.search(r"(^|/)[Pp]ython[0-9.]*$", words[0]):
        command = re.sub(r"^(-\w+\s+)*", "", words[1])  # and its options (-u)
    command = re.sub(r"\S*/site-packages/", ".../", command)  # Ray's own programs: .../ray/core/src/ray/raylet/raylet
    return command if len(command) <= width else command[: width - 3] + "..."


def describe_process(process: dict) -> str:
    return f"pid {process['pid']} ({process['user']}): {short_command(process['command'])}"


def describe_listener(listener: dict) -> str:
    address = listener["address"]
    where = f"[{address}]" if ":" in address else address
    owner = (
        f"{listener['program']} pid {listener['pid']}" if listener.get("pid") else "a process not named to this user"
    )
    return f"{where}:{listener['port']} ({owner})"


def stray_problems(
    processes: list[dict],
    listeners: list[dict],
    owner: Owner,
    ports: Iterable[int],
    dashboard_port: int,
    dashboard_bind: str,
    ignore_pids: Iterable[int] = (),
) -> list[str]:
    """The verification's stray check for one node: one sentence per Ray process or listener that
    is not SAF's service's, and per SAF dashboard open beyond loopback against the settings; []
    when only SAF's service runs Ray there. ``ignore_pids``: the checker's own processes (a driver
    whose command line mentions Ray)."""
    ignored = set(ignore_pids)
    processes = [process for process in processes if process["pid"] not in ignored]
    problems = [
        f"Ray process not started by SAF's service: {describe_process(p)}" for p in foreign_processes(processes, owner)
    ]
    problems += [
        f"listener on a Ray port not SAF's service's: {describe_listener(listener)}"
        for listener in foreign_listeners(listeners, processes, owner, ports)
    ]
    problems += [
        f"the dashboard listens on {describe_listener(listener)} although dashboard_bind is loopback"
        for listener in open_dashboards(listeners, processes, owner, dashboard_port, dashboard_bind)
    ]
    return problems


def stray_problems_from_output(
    macos: bool,
    ps_output: str,
    listeners_output: str,
    job_output: str,
    unit: str,
    user_unit: bool,
    data: NodeData,
    ignore_pids: Iterable[int] = (),
) -> list[str]:
    """:func:`stray_problems` from what a node printed when the verification ran (the facts' own
    parsers read it): on Linux ``PS_UNITS_COMMAND`` and ``SS_COMMAND``; on macOS ``PS_COMMAND``,
    ``LSOF_COMMAND`` and ``launchctl print <domain>/<label>`` of SAF's job (``job_output``).
    ``unit`` / ``user_unit``: SAF's unit on Linux (RayService.unit, not RayService.system);
    ``data``: the settings (ports, dashboard_port, dashboard_bind). Raises UnexpectedOutput on
    output the facts do not understand."""
    if macos:
        processes = RayProcesses().process(ps_output.splitlines())
        listeners = MacListeners().process(listeners_output.splitlines())
        job = LaunchdJob().process(job_output.splitlines())
        owner = Owner(job_pid=(job or {}).get("pid"))
    else:
        processes = RayProcessUnits().process(ps_output.splitlines())
        listeners = LinuxListeners().process(listeners_output.splitlines())
        owner = Owner(unit=unit, user_unit=user_unit)
    return stray_problems(
        processes, listeners, owner, unnamed_listener_ports(data), data.dashboard_port, data.dashboard_bind, ignore_pids
    )


# --- one node, from its facts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Launcher:
    """Something SAF did not write that starts Ray again: a systemd unit or a launchd job."""

    kind: str  # "system unit", "user unit", "launchd job"
    name: str  # the unit, or the job's label
    path: str = ""  # its file ("" for a running unit whose file SAF did not look for)
    program: str = ""  # what it runs
    domain: str = ""  # launchd: system or gui/<uid>

    @property
    def needs_sudo(self) -> bool:
        return self.kind == "system unit" or (self.kind == "launchd job" and self.path.startswith("/Library/"))

    def describe(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"{self.kind} {self.name}{where}"


@dataclass(frozen=True)
class ForeignRay:
    """The Ray on a node that is not SAF's service's, and what would start it again."""

    user: str  # the SSH user (SAF's service runs as this user)
    processes: list[dict] = field(default_factory=list)
    listeners: list[dict] = field(default_factory=list)
    launchers: list[Launcher] = field(default_factory=list)
    cron_lines: list[tuple[int, str]] = field(default_factory=list)
    cron_checksum: str = ""
    unreadable_jobs: list[str] = field(default_factory=list)  # plists mentioning ray that plutil could not read
    all_processes: list[dict] = field(default_factory=list)  # every Ray process, SAF's too
    owner: Owner = Owner()
    job_target: str = ""  # macOS: SAF's launchd job (domain/label), checked again when the stop runs

    @property
    def found(self) -> bool:
        return bool(self.processes or self.launchers or self.cron_lines)

    @property
    def others_processes(self) -> list[dict]:
        """Foreign processes of another user than the SSH user: stopping them needs sudo."""
        return [process for process in self.processes if process["user"] != self.user]

    @property
    def needs_sudo(self) -> bool:
        return bool(self.others_processes) or any(launcher.needs_sudo for launcher in self.launchers)

    @property
    def autoscalers(self) -> list[tuple[dict, str]]:
        """``ray up``'s autoscaler monitors here, with the cluster config each re-launches Ray from
        (a hand-started head runs a monitor too, but without an autoscaling config)."""
        found = []
        for process in self.processes:
            config = _AUTOSCALING_CONFIG.search(process["command"])
            if "ray/autoscaler/_private/monitor.py" in process["command"] and config:
                found.append((process, config.group(1)))
        return found


def node_owner(host: Host, service: RayService) -> Owner:
    """SAF's service on ``host``, as its service manager names it."""
    if is_macos(host):
        job = host.get_fact(LaunchdJob, target=f"{service.launchd_domain}/{service.label}")
        return Owner(job_pid=(job or {}).get("pid"))
    return Owner(unit=service.unit, user_unit=not service.system)


def node_processes(host: Host) -> list[dict]:
    """Every Ray process on ``host``; on Linux with its units."""
    return host.get_fact(RayProcesses) if is_macos(host) else host.get_fact(RayProcessUnits)


def node_listeners(host: Host) -> list[dict]:
    """Every listening TCP socket on ``host`` (with sudo when allowed: others' sockets are named)."""
    fact = MacListeners if is_macos(host) else LinuxListeners
    return host.get_fact(fact, _sudo=bool(host.data.use_sudo)) or []


def _unit_launchers(host: Host, home: str, foreign: list[dict]) -> list[Launcher]:
    """Unit files that run ``ray start`` (SAF's own aside), and the units foreign Ray runs in."""
    launchers = [
        Launcher("user unit" if unit["user"] else "system unit", unit["unit"], unit["path"], unit["exec"])
        for unit in host.get_fact(SystemdRayUnits, home=home) or []
        if not unit["unit"].startswith("saf-ray-")
    ]
    named = {launcher.name for launcher in launchers}
    for process in foreign:
        user_mode = bool(process.get("user_unit"))
        unit = process.get("user_unit") or process.get("unit")
        if unit and unit not in named and not _GENERIC_UNIT.match(unit) and not unit.startswith("saf-ray-"):
            launchers.append(Launcher("user unit" if user_mode else "system unit", unit))
            named.add(unit)
    return launchers


def _launchd_launchers(host: Host, home: str) -> tuple[list[Launcher], list[str]]:
    jobs = host.get_fact(LaunchdRayJobs, home=home) or []
    launchers, unreadable = [], []
    for job in jobs:
        if job["label"].startswith("org.saf."):
            continue  # SAF's own jobs (both roles': a node's role may have changed)
        if job["program"] is None:
            unreadable.append(job["path"])
            continue
        domain = "system" if job["path"].startswith("/Library/LaunchDaemons/") else "gui/" + _uid(host)
        launchers.append(Launcher("launchd job", job["label"], job["path"], job["program"], domain))
    return launchers, unreadable


def _uid(host: Host) -> str:
    return str(host.get_fact(Command, command="id -u")).strip()


def node_foreign_ray(host: Host) -> ForeignRay:
    """Everything about ``host``'s Ray that is not SAF's service's, from its facts."""
    service = node_ray_service(host)
    home = host.get_fact(Home)
    owner = node_owner(host, service)
    processes = node_processes(host)
    foreign = foreign_processes(processes, owner)
    listeners = foreign_listeners(node_listeners(host), processes, owner, unnamed_listener_ports(host.data))
    if is_macos(host):
        launchers, unreadable = _launchd_launchers(host, home)
    else:
        launchers, unreadable = _unit_launchers(host, home, foreign), []
    cron = host.get_fact(CrontabRayLines) or {"checksum": "", "lines": []}
    job_target = f"{service.launchd_domain}/{service.label}" if is_macos(host) else ""
    return ForeignRay(
        service.user,
        foreign,
        listeners,
        launchers,
        cron["lines"],
        cron["checksum"],
        unreadable,
        processes,
        owner,
        job_target,
    )


# --- what the deploy runs ---------------------------------------------------------------------------


def backup_dir(home: str) -> str:
    """Where this run sets aside what it takes out of service (never deleted)."""
    return on_node(f"{BACKUP_DIR}/{RUN_STAMP}", home)


def saved_path(backup: str, path: str) -> str:
    """Where a launcher's file is kept in ``backup``: its whole path under ``files/``, so that two
    files of the same name never meet and the path they go back to is the path they are kept at."""
    return f"{backup}/{SAVED_FILES}{path}"


def backup_folder_command(backup: str) -> str:
    """The run's backup folder and its manifest, the SSH user's (a sudo step appends to the
    manifest then, and the next step, the user's own, still can)."""
    folder = shlex.quote(backup)
    return f"mkdir -p {folder}/{SAVED_FILES} && touch {folder}/{MANIFEST}"


def manifest_command(backup: str, entry: dict) -> str:
    """Append ``entry`` (what was set aside, from where, and how) to the run's manifest."""
    line = json.dumps(entry, sort_keys=True)
    return f"printf '%s\\n' {shlex.quote(line)} >> {shlex.quote(backup)}/{MANIFEST}"


def _never_over(target: str, what: str) -> str:
    """A shell test that stops the step when ``target`` exists (a file or a link, even broken)."""
    quoted = shlex.quote(target)
    message = shlex.quote(
        f"SAF: {target} exists already, and {what} is never written over it; move one of them away and re-run"
    )
    return f"if [ -e {quoted} ] || [ -L {quoted} ]; then echo {message} >&2; exit 1; fi"


def move_aside_command(path: str, backup: str) -> str:
    """Move ``path`` to its place under ``backup`` (folders made), never over a file there."""
    target = saved_path(backup, path)
    return (
        f"{_never_over(target, path)}; mkdir -p {shlex.quote(target.rsplit('/', 1)[0])} && "
        f"mv -n -- {shlex.quote(path)} {shlex.quote(target)}"
    )


def launcher_entry(launcher: Launcher, backup: str) -> dict:
    """The manifest's record of ``launcher``: enough to put it back as it was."""
    return {
        "kind": launcher.kind,
        "name": launcher.name,
        "path": launcher.path,
        "saved": saved_path(backup, launcher.path) if launcher.path else "",
        "domain": launcher.domain,
        "sudo": launcher.needs_sudo,
        "program": launcher.program,
    }


def launcher_commands(launcher: Launcher, backup: str) -> list[str]:
    """Stop and disable ``launcher``, move its file under ``backup`` and record it in the manifest."""
    move = [move_aside_command(launcher.path, backup)] if launcher.path else []
    record = manifest_command(backup, launcher_entry(launcher, backup))
    if launcher.kind == "launchd job":
        target = shlex.quote(f"{launcher.domain}/{launcher.name}")
        return [f"launchctl bootout {target} 2>/dev/null || true", f"launchctl disable {target}", *move, record]
    systemctl = "systemctl --user" if launcher.kind == "user unit" else "systemctl"
    unit = shlex.quote(launcher.name)
    if not launcher.path:  # a running unit whose file is elsewhere (or none: a transient `systemd-run` unit)
        return [
            (
                f"if {systemctl} cat {unit} >/dev/null 2>&1; then "
                f"{systemctl} disable --now {unit} 2>/dev/null || {systemctl} stop {unit}; fi"
            ),
            record,
        ]
    return [f"{systemctl} disable --now {unit}", *move, f"{systemctl} daemon-reload", record]


def crontab_command(lines: list[tuple[int, str]], checksum: str, backup: str) -> str:
    """Comment out the crontab lines that run ``ray start`` (numbered as read), after saving the
    crontab in ``backup``; refused if the crontab changed since it was read (its checksum)."""
    selected = " || ".join(f"NR == {number}" for number, _ in lines)
    marker = CRON_MARKER.replace("\\", "\\\\").replace('"', '\\"')
    awk = shlex.quote(f'{selected} {{ print "{marker}" $0; next }} {{ print }}')
    return (
        "c=$(crontab -l 2>/dev/null); "
        f'if [ "$(printf \'%s\\n\' "$c" | cksum)" != {shlex.quote(checksum)} ]; then '
        "echo 'SAF: the crontab changed since it was read; re-run the deploy' >&2; exit 1; fi; "
        f"{_never_over(f'{backup}/crontab', 'the crontab')}; "
        f"printf '%s\\n' \"$c\" > {shlex.quote(backup)}/crontab && "
        f"printf '%s\\n' \"$c\" | awk {awk} | crontab -"
    )


def crontab_entry(user: str, lines: list[tuple[int, str]], backup: str) -> dict:
    """The manifest's record of the crontab lines commented out."""
    return {
        "kind": "crontab",
        "name": user,
        "lines": [[number, line] for number, line in lines],
        "marker": CRON_MARKER,
        "saved": f"{backup}/crontab",
        "sudo": False,
    }


_STOP_SCRIPT = """\
alive() {{ s=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$s" ] && case $s in Z*) false;; *) true;; esac; }}
same() {{ [ "$(ps -o user= -o args= -p "$1" 2>/dev/null | awk '{{print $1, $2}}')" = "$2" ]; }}
{guard}pids=''
for target in {targets}; do pid=${{target%%|*}}
  if same "$pid" "${{target#*|}}"{not_safs}; then kill -TERM "$pid" 2>/dev/null && pids="$pids $pid"; fi; done
i=0; while [ -n "$pids" ] && [ $i -lt {rounds} ]; do left=''
  for pid in $pids; do alive "$pid" && left="$left $pid"; done; pids=$left; [ -n "$pids" ] && sleep 0.2; i=$((i+1)); done
for pid in $pids; do kill -KILL "$pid" 2>/dev/null; done; [ -z "$pids" ] || sleep 1
for pid in $pids; do if alive "$pid"; then echo "SAF: pid $pid did not stop" >&2; exit 1; fi; done"""  # noqa: E501 (one line of the shell script)


def _job_guard(job_target: str, job_pid: int | None) -> str:
    """Refuse to stop anything if SAF's launchd job's pid changed since it was read (a restart in
    between: its new processes would not descend from the pid the judgement used)."""
    target = shlex.quote(job_target)
    return (
        f"now=$(launchctl print {target} 2>/dev/null | sed -n 's/^[[:space:]]*pid = \\([0-9]*\\)$/\\1/p' "
        f"| head -n 1); if [ \"$now\" != '{job_pid or ''}' ]; then echo 'SAF: its Ray job restarted since it was "
        "read; re-run the deploy' >&2; exit 1; fi\n"
    )


def stop_processes_command(
    processes: list[dict], wait_s: int = TERM_WAIT_S, owner: Owner = Owner(), job_target: str = ""
) -> str:
    """TERM each process, KILL what is left after ``wait_s``. Left alone: a pid whose user and
    program are no longer the ones read (it exited and the pid was reused), one in SAF's unit
    now (Linux: /proc/PID/cgroup); and nothing is stopped if SAF's launchd job (``job_target``)
    has another pid than the one read (macOS)."""
    targets = " ".join(shlex.quote(f"{p['pid']}|{p['user']} {p['command'].split()[0]}") for p in processes)
    not_safs = ""
    if owner.unit:
        pattern = shlex.quote("/" + owner.unit.replace(".", "\\.") + "$")
        not_safs = f' && ! grep -qsE {pattern} "/proc/$pid/cgroup"'
    guard = _job_guard(job_target, owner.job_pid) if job_target else ""
    return _STOP_SCRIPT.format(targets=targets, rounds=wait_s * 5, not_safs=not_safs, guard=guard)


# --- putting back what was set aside (`saf restore-launchers`) --------------------------------------


def backup_root(home: str) -> str:
    """The folder holding every run's backup folder on a node."""
    return on_node(BACKUP_DIR, home)


def latest_entries(entries: list[dict]) -> tuple[list[dict], list[dict]]:
    """The manifest entries to put back (the newest run's, where two runs set aside the same file
    or unit) and those left in their backup folders (older copies: nothing is written over one
    that is back)."""
    newest: dict[tuple, dict] = {}
    for entry in sorted(entries, key=lambda e: e["run"], reverse=True):
        key = ("crontab", entry["run"]) if entry["kind"] == "crontab" else (entry.get("path") or entry["name"],)
        newest.setdefault(key, entry)
    chosen = [entry for entry in entries if any(entry is kept for kept in newest.values())]
    return chosen, [entry for entry in entries if not any(entry is kept for kept in chosen)]


def put_back_command(saved: str, path: str) -> str:
    """Move ``saved`` back to ``path``, never over a file there; done already (``saved`` gone,
    ``path`` there) is fine, both gone stops the step."""
    q_saved, q_path = shlex.quote(saved), shlex.quote(path)
    gone = shlex.quote(f"SAF: neither {saved} nor {path} exists: nothing to put back")
    return (
        f"if [ -e {q_saved} ] || [ -L {q_saved} ]; then {_never_over(path, saved)}; "
        f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0] or '/')} && mv -n -- {q_saved} {q_path}; "
        f"elif [ ! -e {q_path} ] && [ ! -L {q_path} ]; then echo {gone} >&2; exit 1; fi"
    )


def restore_commands(entry: dict) -> list[str]:
    """Put a set-aside launcher back where it was and enable it again, without starting it."""
    if entry["kind"] == "launchd job":
        target = shlex.quote(f"{entry['domain']}/{entry['name']}")
        return [put_back_command(entry["saved"], entry["path"]), f"launchctl enable {target}"]
    systemctl = "systemctl --user" if entry["kind"] == "user unit" else "systemctl"
    unit = shlex.quote(entry["name"])
    if not entry.get("path"):  # disabled by name, its file never moved
        return [f"if {systemctl} cat {unit} >/dev/null 2>&1; then {systemctl} enable {unit}; fi"]
    return [put_back_command(entry["saved"], entry["path"]), f"{systemctl} daemon-reload", f"{systemctl} enable {unit}"]


def uncomment_crontab_command(lines: list[str]) -> str:
    """Take SAF's marker off exactly these crontab lines (as they were before it commented them out)."""
    program = shlex.quote(
        'BEGIN { m = ENVIRON["SAF_MARKER"]; n = split(ENVIRON["SAF_LINES"], l, "\\n"); '
        "for (i = 1; i <= n; i++) want[m l[i]] = 1 } "
        "($0 in want) { print substr($0, length(m) + 1); next } { print }"
    )
    return (
        f"c=$(crontab -l 2>/dev/null); printf '%s\\n' \"$c\" | SAF_MARKER={shlex.quote(CRON_MARKER)} "
        f"SAF_LINES={shlex.quote(chr(10).join(lines))} awk {program} | crontab -"
    )


def restore_describe(entry: dict) -> str:
    where = f" ({entry['path']})" if entry.get("path") else ""
    return f"{entry['kind']} {entry['name']}{where}"


def start_hint(entry: dict) -> str:
    """How a person starts a put-back launcher now (the restore enables it, never starts it)."""
    if entry["kind"] == "launchd job":
        return f"`launchctl bootstrap {entry['domain']} {entry['path']}`"
    if entry["kind"] == "crontab":
        return "cron runs the lines at their next time (@reboot: at the next boot)"
    user = "--user " if entry["kind"] == "user unit" else ""
    return f"`systemctl {user}start {entry['name']}`"


# --- what a person reads ------------------------------------------------------------------------------


def found_lines(found: ForeignRay) -> list[str]:
    """Each foreign thing on the node, one line each."""
    lines = [describe_process(process) for process in found.processes]
    lines += [f"listening: {describe_listener(listener)}" for listener in found.listeners]
    lines += [
        f"started again by the {launcher.describe()}: {short_command(launcher.program)}"
        if launcher.program
        else f"runs in the {launcher.describe()}"
        for launcher in found.launchers
    ]
    lines += [
        f"started again by crontab line {number} of {found.user}: {line.strip()}" for number, line in found.cron_lines
    ]
    lines += [f"launchd plist mentioning ray that plutil could not read: {path}" for path in found.unreadable_jobs]
    return lines


def autoscaler_fixes(host_name: str, found: ForeignRay) -> list[str]:
    """For each ``ray up`` autoscaler on the node: that it re-launches Ray, and how to end it."""
    return [
        f"{host_name} runs a `ray up` autoscaler (pid {process['pid']}, its copy of the cluster config: "
        f"{config}): it starts Ray again over SSH on the nodes of that cluster. Run `ray down <cluster config>` "
        "on the machine that ran `ray up`, so that nothing re-launches it."
        for process, config in found.autoscalers
    ]


def manual_fix(found: ForeignRay) -> str:
    """How a person stops it all by hand."""
    steps = []
    users = sorted({process["user"] for process in found.processes})
    if users:
        pids = " ".join(str(process["pid"]) for process in found.processes)
        steps.append(f"stop it (`ray stop` as {', '.join(users)}, or `kill {pids}`)")
    for launcher in found.launchers:
        if launcher.kind == "launchd job":
            steps.append(f"`launchctl bootout {launcher.domain}/{launcher.name}` and move {launcher.path} away")
        else:
            user = "--user " if launcher.kind == "user unit" else ""
            steps.append(f"`systemctl {user}disable --now {launcher.name}`")
    if found.cron_lines:
        steps.append(
            f"comment out crontab line{'s' if len(found.cron_lines) > 1 else ''} "
            f"{', '.join(str(number) for number, _ in found.cron_lines)} (`crontab -e`)"
        )
    return "; ".join(steps)


def refusal(host_name: str, found: ForeignRay) -> str:
    """The message that stops a node with foreign Ray under ``foreign_ray: refuse``."""
    return (
        f"{host_name} runs Ray outside SAF's service (foreign_ray: refuse): "
        + "; ".join(found_lines(found))
        + f". To go on: {manual_fix(found)}; or set foreign_ray: stop, and the deploy stops it and sets what "
        f"starts it aside in {BACKUP_DIR}/. " + " ".join(autoscaler_fixes(host_name, found))
    ).strip()


def sudo_refusal(host_name: str, found: ForeignRay) -> str:
    """The message that stops a node whose foreign Ray needs root to stop, without use_sudo."""
    what = [describe_process(p) for p in found.others_processes]
    what += [launcher.describe() for launcher in found.launchers if launcher.needs_sudo]
    return (
        f"{host_name} runs Ray outside SAF's service that only root can stop, and use_sudo is false: "
        f"{'; '.join(what)}. As an administrator: {manual_fix(found)}; then re-run."
    )
