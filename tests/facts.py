"""Fact fixtures for plan tests: a fresh Mac Studio, a converged one, a fresh Debian host.

Values wrapped in Raw are command outputs as ../shared/macos/README.md shows them, parsed by the
facts' own code; the rest are already-parsed values, as pyinfra's own tests give them.
"""

from __future__ import annotations

from typing import Any

import hashlib
from pathlib import Path
from types import SimpleNamespace

from pyinfra.api.util import get_template

from saf.venv_spec import current_venv_path, requirements, venv_name
from saf.service import RayService, ray_service
from tests.fixtures import macos_output
from tests.planning import FromHostData, Raw
from saf.build_deps import MAC_BUILD_DEPS
from saf.facts.roots import root_state
from saf.spec import load_defaults

PROJECT_DIR = Path(__file__).resolve().parent.parent

DF_MAC = """Filesystem     1024-blocks      Used  Available Capacity  Mounted on
/dev/disk3s5    1942700360 402534448 1498231504    22%    /System/Volumes/Data
"""
IFCONFIG = """lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 16384
\tinet 127.0.0.1 netmask 0xff000000
en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu {mtu}
\toptions=50b<RXCSUM,TXCSUM,VLAN_HWTAGGING,AV,CHANNEL_IO>
\tether 3c:a6:f6:12:34:56
\tinet6 fe80::1c2b:3d4e:5f60:7182%en0 prefixlen 64 secured scopeid 0xb
\tinet {ip} netmask 0xffffff00 broadcast 192.168.1.255
\tmedia: autoselect (10Gbase-T <full-duplex>)
\tstatus: active
en1: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500
\tether 3c:a6:f6:12:34:57
utun4: flags=8051<UP,POINTOPOINT,RUNNING,MULTICAST> mtu 1280
\tinet 100.106.170.128 --> 100.106.170.128 netmask 0xffffffff
"""
HARDWARE_PORTS = """
Hardware Port: Ethernet
Device: en0
Ethernet Address: 3c:a6:f6:12:34:56

Hardware Port: Thunderbolt Bridge
Device: bridge0
Ethernet Address: 36:1a:2b:3c:4d:50

Hardware Port: Wi-Fi
Device: en1
Ethernet Address: 3c:a6:f6:12:34:57

VLAN Configurations
===================
"""
IP_ADDR = (
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"mtu":65536,"link_type":"loopback",'
    '"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},'
    '{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP"],"mtu":MTU,"link_type":"ether",'
    '"addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":24}]}]'
)


# no served model staged (tasks/serve.py)
NO_MODELS = {"serve.StagedModels:*": {"current": None, "dirs": {}}}

# a fresh host has none of the files SAF writes (exact keys given in a fixture take precedence)
ABSENT_FILES = {"files.File:*": None, "files.Directory:*": None, "files.Link:*": None, "files.Sha1File:*": None}


PMSET_DEFAULTS = """AC Power:
 sleep                1
 disksleep            10
 womp                 1
 autorestart          0
 displaysleep         10
"""
PMSET_CONVERGED = "AC Power:\n sleep 0\n disksleep 0\n womp 1\n autorestart 1\n displaysleep 10\n"


# pf off with no SAF anchor, and the application firewall off (macOS's defaults)
MAC_NO_FIREWALLS = {
    "firewall.PfRules": Raw('Status: Disabled       Debug: Urgent\n-- main\nanchor "com.apple/*" all\n-- anchor\n'),
    "firewall.AppFirewall": Raw("Firewall is disabled. (State = 0)\nALF: total number of apps = 0\n"),
}


def mac_network(mtu: int = 1500, ip: str = "192.168.1.172") -> dict[str, Any]:
    """Network facts of a Mac whose cluster ip is on en0 (10GbE) at ``mtu``."""
    return {
        "network.MacInterfaces": Raw(IFCONFIG.format(mtu=mtu, ip=ip)),
        "network.MacHardwarePorts": Raw(HARDWARE_PORTS),
        "network.MacMTU:en0": Raw(f"Active MTU: {mtu} (Current Setting: {mtu})\n"),
        "network.MacValidMTURange:en0": Raw("Valid MTU Range: 1280-9000\n"),
    }


DF_LINUX = """Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         263174212 23036548 227301400      10% /
"""


# `system_profiler SPDisplaysDataType` on a Mac Studio (M3 Ultra), macOS 15
SYSTEM_PROFILER_M3_ULTRA = """Graphics/Displays:

    Apple M3 Ultra:

      Chipset Model: Apple M3 Ultra
      Type: GPU
      Bus: Built-In
      Total Number of Cores: 80
      Vendor: Apple (0x106b)
      Metal Support: Metal 3
"""


# no Ray, no listener on its ports, nothing that would start it (the facts tasks/foreign_ray.py reads)
NO_RAY_MAC = {"ray.RayProcesses": Raw(""), "ray.MacListeners": Raw(""), "ray.LaunchdRayJobs:*": Raw(""),
              "ray.CrontabRayLines": Raw("")}
NO_RAY_LINUX = {"ray.RayProcessUnits": Raw(""), "ray.LinuxListeners": Raw(""), "ray.SystemdRayUnits:*": Raw(""),
                "ray.CrontabRayLines": Raw("")}


def saf_roots(venv: str = "absent", pyenv: str = "absent", marked: bool = False,
              entry: str | None = None) -> dict[str, Any]:
    """roots.SafRoots: whose venv_root and pyenv_root are (``entry``: the foreign one's, where one is)."""
    return {"roots.SafRoots:*": {"venv_root": root_state(venv, entry if venv == "foreign" else None, marked),
                                 "pyenv_root": root_state(pyenv, entry if pyenv == "foreign" else None)}}


def fresh_mac(**overrides: Any) -> dict[str, Any]:
    """A new Mac Studio (macOS 15.1, M3 Ultra) with the Command Line Tools and nothing of ours."""
    facts: dict[str, Any] = {
        "server.Kernel": "Darwin",
        "server.Arch": "arm64",
        "server.MacosVersion": "15.1",
        "system.XcodeCommandLineTools": Raw("/Library/Developer/CommandLineTools\n"),
        "system.FreeDiskKiB": Raw(DF_MAC),
        "system.PasswordlessSudo": Raw("yes\n"),
        "server.Home": "/Users/arthurdell",
        "server.User": "arthurdell",
        "server.TmpDir": "/tmp",
        "files.File:/opt/homebrew/bin/brew": None,
        "launchd.LaunchdJob:*": None,
        "macos.PmsetSettings": Raw(PMSET_DEFAULTS),
        "gpu.AppleGPU": Raw(SYSTEM_PROFILER_M3_ULTRA),
        "launchd.LaunchdDomain:*": Raw("reachable\n"),
        **MAC_NO_FIREWALLS,
        "files.Directory:/Library/LaunchDaemons": {"mode": 755, "user": "root", "group": "wheel"},
        **ABSENT_FILES,
        "brew.BrewPackages": {},
        "brew.BrewVersion": (4, 4, 0),
        "server.Which:nvidia-smi": None,
        "python.PythonInterpreter:*": None,
        "python.SafVenvs:*": {"venvs": {}, "current": None, "previous": None},
        **saf_roots(),
        **mac_network(),
        **NO_RAY_MAC,
        "service.RayServiceRun:*": ray_service_run("launchd", "/Users/arthurdell/saf/venv"),
        **NO_MODELS,
    }
    facts.update(overrides)
    return facts


def venv_for(python: str = "3.9.23", ray: str = "2.49.1", mlx: str = "0.29.1", extra: str = "",
             extra_packages: tuple[str, ...] = ("numpy==2.0.2",)) -> tuple[str, tuple[str, ...]]:
    """The venv name and requirements SAF derives from these pins (as saf.venv_spec computes them)."""
    reqs = requirements(ray, mlx, extra, list(extra_packages))
    return venv_name(python, reqs), reqs


def installed(reqs: tuple[str, ...]) -> dict[str, str]:
    """What VenvDistributions reports for a venv holding exactly ``reqs`` (plus their deps)."""
    dists = {req.split("==")[0].split("[")[0]: req.split("==")[1] for req in reqs}
    return {**dists, "pip": "23.0.1", "aiohttp": "3.12.15"}


def rendered_plist(role: str, ip: str, head_ip: str, home: str = "/Users/arthurdell",
                   user: str = "arthurdell", **overrides: Any) -> bytes:
    """The plist SAF renders for a node with default settings (or ``overrides`` of them), by SAF's own code."""
    service = mac_ray_service(role, ip, head_ip, home, user, **overrides)
    template = get_template(str(PROJECT_DIR / "templates/ray.plist.j2"))
    return template.render(service=service, daemon=True, logs=service.logs).encode()


def mac_ray_service(role: str, ip: str, head_ip: str, home: str = "/Users/arthurdell", user: str = "arthurdell",
                    **overrides: Any) -> RayService:
    """The Ray service (a LaunchDaemon) of a Mac with default settings (or ``overrides``), by SAF's own code."""
    settings = {**load_defaults(PROJECT_DIR), **overrides}
    data = SimpleNamespace(**settings, role=role, cluster_ip=ip, head_ip=head_ip)
    return ray_service(SimpleNamespace(data=data), user, home, current_venv_path(settings["venv_root"], home))


def converged_service(role: str, ip: str, head_ip: str, home: str = "/Users/arthurdell") -> dict[str, Any]:
    """Facts of a Mac whose Ray launchd job is in place and running."""
    service = mac_ray_service(role, ip, head_ip, home)
    label, path = service.label, service.plist_path
    return {
        f"files.File:{path}": {"mode": 644, "user": "root", "group": "wheel"},
        f"files.Sha1File:{path}": hashlib.sha1(rendered_plist(role, ip, head_ip, home)).hexdigest(),
        f"files.Directory:{home}/Library/Logs/saf": {"mode": 755},
        f"launchd.LaunchdJob:system/{label}": {"state": "running", "pid": 4127, "path": path},
        "service.RayServiceRun:*": ray_service_run("launchd", f"{home}/saf/venv", venv_for()[0], watched=(path,)),
    }


# --- the Ray service's running state, as saf.facts.service.RayServiceRun's command prints it ---
SERVICE_NOW = 1_765_000_000  # the node's `date +%s` in these fixtures: Ray started an hour before
MAC_PS_VENV = "py3.9.23-ray2.49.1-mlx0.29.1-0a1b2c3d"  # the venv the macOS ps fixture names


def ray_service_run(manager: str, venv_root: str, running: str | None = None, current: str | None = None,
                    watched: tuple[str, ...] = (), changed: tuple[str, ...] = (),
                    need_daemon_reload: bool = False) -> Raw:
    """Ray's service (``launchd``: the raw launchctl print and ps fixtures; ``systemd``: as the lab
    prints it) running for an hour from venv ``running`` (None: not running), ``current`` resolving
    to ``current`` (default: the same); of the ``watched`` files, those in ``changed`` were modified a
    minute ago, the others two hours ago."""
    current = current or running
    if manager == "launchd":
        service = macos_output("launchctl-print.running.macos15.txt") if running else ""
        process = (macos_output("ps-A-pid-ppid-etime.ray-head.macos15").replace(MAC_PS_VENV, running)
                   .replace("/Users/arthurdell/saf/venv", venv_root)) if running else ""
    else:
        service = f"MainPID={4127 if running else 0}\nNeedDaemonReload={'yes' if need_daemon_reload else 'no'}\n"
        process = (f" 4127     1    01:00:00 {venv_root}/{running}/bin/python {venv_root}/current/bin/ray start --block\n"
                   f" 4152  4127    59:57 {venv_root}/{running}/lib/python3.11/site-packages/ray/core/src/ray/raylet/"
                   "raylet --node_manager_port=6381\n") if running else ""
    mtimes = "".join(f"{SERVICE_NOW - (60 if path in changed else 7200)} {path}\n" for path in watched)
    return Raw(f"== service\n{manager}\n{service}== root\n{venv_root}\n== process\n{process}== current\n"
               + (f"{venv_root}/{current}\n" if current else "") + f"== now\n{SERVICE_NOW}\n== mtime\n{mtimes}")


def converged_mlx_hostfile(home: str, user: str) -> dict[str, Any]:
    """Facts of a node that holds the MLX hostfile this cluster file gives (whichever that is)."""
    path = f"{home}/.saf/mlx/hostfile.json"
    return {
        f"files.Directory:{home}/.saf/mlx": {"mode": 755, "user": user},
        f"files.File:{path}": {"mode": 644, "user": user},
        f"files.Sha1File:{path}": FromHostData(lambda data: hashlib.sha1(data.mlx_hostfile.encode()).hexdigest()),
    }


def converged_mac(home: str = "/Users/arthurdell", role: str = "head", ip: str = "192.168.1.172",
                  head_ip: str = "192.168.1.172", **overrides: Any) -> dict[str, Any]:
    """A Mac on which a previous run already converged everything (default pins and settings)."""
    name, reqs = venv_for()
    facts = fresh_mac(**{
        "server.Home": home,
        "files.File:/opt/homebrew/bin/brew": {"mode": 755, "size": 1000},
        "brew.BrewPackages": {package: {"1.0"} for package in MAC_BUILD_DEPS},
        "python.PythonInterpreter:*": {"version": "3.9.23", "missing": []},
        "python.SafVenvs:*": {"venvs": {name: True}, "current": name, "previous": None},
        **saf_roots(venv="ours", pyenv="ours", marked=True),
        f"python.VenvDistributions:{home}/saf/venv/{name}": installed(reqs),
        **mac_network(mtu=9000, ip=ip),
        **converged_service(role, ip, head_ip, home),
        **converged_mlx_hostfile(home, "arthurdell"),
        "macos.PmsetSettings": Raw(PMSET_CONVERGED),
    })
    facts.update(overrides)
    return facts


def fresh_debian(**overrides: Any) -> dict[str, Any]:
    """A Debian 12 x86_64 box with passwordless sudo and nothing of ours."""
    facts: dict[str, Any] = {
        "server.Kernel": "Linux",
        "server.Arch": "x86_64",
        "system.FreeDiskKiB": Raw(DF_LINUX),
        "system.PasswordlessSudo": Raw("yes\n"),
        "server.Home": "/home/saf",
        "server.User": "saf",
        "server.Which:apt-get": "/usr/bin/apt-get",
        "python.GlibcVersion": "2.36",
        "server.Which:nvidia-smi": None,
        "deb.DebPackages": {},
        "files.Directory:/home/saf/.pyenv/.git": None,
        "files.Directory:/home/saf/.pyenv": None,
        "python.PythonInterpreter:*": None,
        "python.SafVenvs:*": {"venvs": {}, "current": None, "previous": None},
        **saf_roots(),
        "network.LinuxInterfaces": Raw(IP_ADDR.replace("MTU", "1500")),
        "server.Which:ip": "/usr/sbin/ip",
        "server.TmpDir": "/tmp",
        **ABSENT_FILES,
        "files.Directory:/etc/systemd/system": {"mode": 755},
        "systemd.SystemdStatus:*": {},
        "systemd.SystemdEnabled:*": {},
        "firewall.NftRules": None,  # no table inet saf
        **NO_RAY_LINUX,
        "service.RayServiceRun:*": ray_service_run("systemd", "/home/saf/saf/venv"),
        **NO_MODELS,
    }
    facts.update(overrides)
    return facts


def venv_listing(venvs: dict[str, bool], current: str | None = None, previous: str | None = None) -> Raw:
    """A venv root as the node prints it for python.SafVenvs (``venv complete|partial NAME``, then
    ``link current|previous TARGET``), for plan fixtures that the fact's own parser reads."""
    lines = [f"venv {'complete' if complete else 'partial'} {name}" for name, complete in venvs.items()]
    lines += [f"link {at} {target}" for at, target in (("current", current), ("previous", previous)) if target]
    return Raw("\n".join(lines) + "\n")
