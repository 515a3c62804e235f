"""Every SAF fact that reads macOS output, run on the raw text of every grounded fixture of its command.

The fixtures (tests/fixtures/macos/) hold what a Mac prints, each with the public source of its
shape in its header. A fact is run as pyinfra runs it: ``process()`` on the output's lines. A
command whose output SAF composes from several (the firewall facts) is composed here the same way
the fact's shell command does.
"""

from __future__ import annotations

import re

import pytest
from pyinfra.facts.brew import BrewPackages
from pyinfra.facts.server import Arch, Kernel, MacosVersion

from saf.facts.firewall import AppFirewall, PfRules
from saf.facts.gpu import AppleGPU
from saf.facts.launchd import LaunchdDomain, LaunchdJob
from saf.facts.macos import PmsetSettings
from saf.facts.network import MacHardwarePorts, MacInterfaces, MacMTU, MacValidMTURange, RawMaxDatagram
from saf.facts.ray import RayProcesses
from saf.facts.system import FreeDiskKiB, PasswordlessSudo, XcodeCommandLineTools
from saf.preflight import version_tuple
from saf.verify.node.transfer import speed_from_ifconfig
from tests.fixtures import load_fixture, macos_fixtures, macos_output
from tests.planning import Raw


def parsed(fact_cls, name: str, *args):
    """What ``fact_cls`` makes of the fixture ``name`` (pyinfra passes the output as lines)."""
    return fact_cls().process(load_fixture(name).lines)


def names(prefix: str) -> list[str]:
    return [fixture.name for fixture in macos_fixtures(prefix)]


def covered(prefix: str, expected: dict) -> None:
    """Each fixture of a command has an expectation here, and the other way round."""
    assert sorted(expected) == names(prefix), "a fixture without an expectation (or the reverse)"


# --- the fixtures themselves -----------------------------------------------------------------


def test_every_fixture_names_its_command_shape_and_a_source():
    fixtures = macos_fixtures()
    assert len(fixtures) >= 50
    for fixture in fixtures:
        assert fixture.field("command") and fixture.field("shape"), fixture.name
        assert fixture.header.get("source"), f"{fixture.name} cites no source"
        assert fixture.field("grounding") in ("captured", "documented", "reconstructed"), fixture.name
        assert not any(line.startswith("#") for line in fixture.lines[:1]), fixture.name


def test_loader_strips_only_the_header():
    text = macos_output("sw_vers.macos14")
    assert text == "ProductName:\t\tmacOS\nProductVersion:\t\t14.2.1\nBuildVersion:\t\t23C71\n"
    assert macos_output("xcode-select-p.missing.txt") == ""
    assert "launchctl-print.running.macos15.txt" in names("launchctl-print.")


# --- pyinfra's identity facts, as SAF reads them --------------------------------------------


def test_kernel_and_arch():
    assert parsed(Kernel, "uname-s.darwin") == "Darwin"
    assert parsed(Arch, "uname-m.arm64") == "arm64"
    assert parsed(Arch, "uname-m.x86_64-intel") == "x86_64"  # preflight refuses it: MLX needs arm64


MACOS_VERSIONS = {
    "sw_vers-productVersion.macos12.txt": ("12.7.6", False),
    "sw_vers-productVersion.macos13.txt": ("13.5", True),
    "sw_vers-productVersion.macos14.txt": ("14.2.1", True),
    "sw_vers-productVersion.macos15.txt": ("15.1", True),
    "sw_vers-productVersion.macos26.txt": ("26.5.1", True),
}


@pytest.mark.parametrize("name", sorted(MACOS_VERSIONS))
def test_macos_version_and_the_minimum(name):
    version, supported = MACOS_VERSIONS[name]
    assert parsed(MacosVersion, name) == version
    assert (version_tuple(version) >= version_tuple("13.5")) is supported  # min_macos_version


def test_macos_version_covers_every_fixture():
    covered("sw_vers-productVersion.", MACOS_VERSIONS)


# --- system facts ----------------------------------------------------------------------------

XCODE = {
    "xcode-select-p.clt.txt": "/Library/Developer/CommandLineTools",
    "xcode-select-p.xcode.txt": "/Applications/Xcode.app/Contents/Developer",
    "xcode-select-p.missing.txt": None,
    "xcode-select-p.missing.stderr.txt": None,  # had stderr reached the fact, still not a path
    # known limit: deleted tools behind a still-selected path print the path (Homebrew/install#36);
    # the text cannot tell, so the fact says present (saf doctor must look at the directory)
    "xcode-select-p.stale-path.txt": "/Library/Developer/CommandLineTools",
}


@pytest.mark.parametrize("name", sorted(XCODE))
def test_xcode_command_line_tools(name):
    assert parsed(XcodeCommandLineTools, name) == XCODE[name]


def test_xcode_covers_every_fixture():
    covered("xcode-select-p.", XCODE)


def test_free_disk_in_kib():
    assert parsed(FreeDiskKiB, "df-Pk.apfs-data.macos15") == 1498231504
    assert names("df-Pk.") == ["df-Pk.apfs-data.macos15.txt"]


def test_passwordless_sudo():
    assert parsed(PasswordlessSudo, "sudo-n.passwordless") is True
    assert parsed(PasswordlessSudo, "sudo-n.password-required") is False
    assert parsed(PasswordlessSudo, "sudo-n.password-required.stderr") is False


# --- power -----------------------------------------------------------------------------------

PMSET = {
    "pmset-g-custom.desktop.macos13.txt": {
        "standbydelayhigh": 86400, "proximitywake": 1, "standby": 1, "standbydelaylow": 86400,
        "ttyskeepawake": 1, "hibernatemode": 3, "powernap": 0, "gpuswitch": 2, "highstandbythreshold": 50,
        "displaysleep": 10, "womp": 0, "networkoversleep": 0, "sleep": 1, "tcpkeepalive": 0,
        "autorestart": 0, "disksleep": 10,
    },
    "pmset-g-custom.laptop.macos14.txt": {  # the AC block only: the Battery block comes first
        "lowpowermode": 0, "standby": 1, "ttyskeepawake": 1, "hibernatemode": 3, "powernap": 1,
        "displaysleep": 10, "womp": 1, "networkoversleep": 0, "sleep": 1, "tcpkeepalive": 1, "disksleep": 10,
    },
    "pmset-g-custom.converged.macos15.txt": {
        "powernap": 1, "networkoversleep": 0, "disksleep": 0, "sleep": 0, "autorestart": 1, "hibernatemode": 0,
        "ttyskeepawake": 1, "displaysleep": 10, "tcpkeepalive": 1, "powermode": 0, "womp": 1,
    },
}


@pytest.mark.parametrize("name", sorted(PMSET))
def test_pmset_ac_power_settings(name):
    settings = parsed(PmsetSettings, name)
    assert settings == PMSET[name]
    assert "Sleep" not in settings and "hibernatefile" not in settings  # a key with spaces, a path value


def test_pmset_covers_every_fixture():
    covered("pmset-g-custom.", PMSET)


# --- network ---------------------------------------------------------------------------------

HARDWARE_PORTS = {
    "networksetup-listallhardwareports.macbook.txt": {
        "HUAWEIMobile-Modem": "HUAWEIMobile-", "Bluetooth-Modem": "Bluetooth DUN", "en0": "Ethernet",
        "en5": "MBBEthernet", "en1": "Wi-Fi", "en4": "Bluetooth PAN", "en2": "Thunderbolt 1",
    },
    "networksetup-listallhardwareports.macstudio.macos15.txt": {
        "en0": "Ethernet", "en1": "Wi-Fi", "en2": "Thunderbolt 1", "en3": "Thunderbolt 2", "bridge0": "Thunderbolt Bridge",
    },
}


@pytest.mark.parametrize("name", sorted(HARDWARE_PORTS))
def test_hardware_ports(name):
    assert parsed(MacHardwarePorts, name) == HARDWARE_PORTS[name]


def test_hardware_ports_cover_every_fixture():
    covered("networksetup-listallhardwareports.", HARDWARE_PORTS)


INTERFACES = {
    "ifconfig.highsierra.macos10-13.txt": {
        "lo0": (16384, ["127.0.0.1"], False), "gif0": (1280, [], True), "stf0": (1280, [], False),
        "EHC29": (0, [], False), "XHC20": (0, [], False), "en0": (1500, [], False),
        "en1": (1500, ["192.168.2.17"], False), "en2": (1500, [], False), "bridge0": (1500, [], False),
        "utun0": (2000, [], True),
    },
    "ifconfig.macstudio.macos15.txt": {
        "lo0": (16384, ["127.0.0.1"], False), "gif0": (1280, [], True), "stf0": (1280, [], False),
        "anpi0": (1500, [], False), "en0": (1500, ["192.168.1.172"], False), "en1": (1500, [], False),
        "en2": (1500, [], False), "bridge0": (1500, ["169.254.61.12"], False), "awdl0": (1500, [], False),
        "llw0": (1500, [], False), "utun4": (1280, ["100.106.170.128"], True),
    },
}


@pytest.mark.parametrize("name", sorted(INTERFACES))
def test_interfaces(name):
    interfaces = parsed(MacInterfaces, name)
    assert {device: (info["mtu"], info["inet"], info["pointtopoint"]) for device, info in interfaces.items()} \
        == INTERFACES[name]


def test_interfaces_cover_every_fixture():
    covered("ifconfig.", INTERFACES)


def test_link_speed_from_ifconfig_media():
    """The verification job reads the negotiated speed from the media line of the cluster interface."""
    mac_studio = macos_output("ifconfig.macstudio.macos15")
    assert speed_from_ifconfig(mac_studio, "192.168.1.172") == 10.0  # autoselect (10Gbase-T <full-duplex>)
    assert speed_from_ifconfig(mac_studio, "100.106.170.128") is None  # a tunnel has no media line
    assert speed_from_ifconfig(mac_studio, "169.254.61.12") is None  # media: <unknown type>
    assert speed_from_ifconfig(macos_output("ifconfig.highsierra.macos10-13"), "192.168.2.17") is None  # autoselect only


MTU = {
    "networksetup-getMTU.en0-1500.txt": {"active": 1500, "setting": 1500},
    "networksetup-getMTU.en0-9000.txt": {"active": 9000, "setting": 9000},
    "networksetup-getMTU.en0-pending.txt": {"active": 1500, "setting": 9000},
}
MTU_RANGES = {
    "networksetup-listValidMTURange.ethernet-10g.txt": (1280, 9000),
    "networksetup-listValidMTURange.wifi.txt": (1280, 1500),
    "networksetup-listValidMTURange.usb-5g-driver.txt": (1280, 16334),
}


@pytest.mark.parametrize("name", sorted(MTU))
def test_mtu(name):
    assert parsed(MacMTU, name) == MTU[name]


@pytest.mark.parametrize("name", sorted(MTU_RANGES))
def test_valid_mtu_range(name):
    assert parsed(MacValidMTURange, name) == MTU_RANGES[name]


def test_mtu_facts_cover_every_fixture():
    covered("networksetup-getMTU.", MTU)
    covered("networksetup-listValidMTURange.", MTU_RANGES)


# --- launchd ---------------------------------------------------------------------------------

JOBS = {
    "launchctl-print.running.macos10-14.txt":
        {"state": "running", "pid": 1486, "path": "/Library/LaunchDaemons/com.wazuh.agent.plist"},
    "launchctl-print.spawn-scheduled.macos13.txt":
        {"state": "spawn scheduled", "pid": None, "path": "/Library/LaunchDaemons/com.tailscale.tailscaled.plist"},
    "launchctl-print.not-running.macos13.txt": {
        "state": "not running", "pid": None,
        "path": "/System/Library/PrivateFrameworks/AOSKit.framework/Versions/A/XPCServices/com.apple.iCloudHelper.xpc",
    },
    # the nested `state = active` (event channel) and the trailing `job state = running` do not count
    "launchctl-print.running.macos15.txt":
        {"state": "running", "pid": 4127, "path": "/Library/LaunchDaemons/org.saf.ray-head.plist"},
    "launchctl-print.agent-running.macos15.txt":
        {"state": "running", "pid": 4127, "path": "/Users/arthurdell/Library/LaunchAgents/org.saf.ray-head.plist"},
    "launchctl-print.oneshot-exited.macos15.txt":  # tests/plan/test_firewall.py's parsed value for the boot job
        {"state": "not running", "pid": None, "path": "/Library/LaunchDaemons/org.saf.firewall.plist"},
    "launchctl-print.not-found.txt": None,  # stdout empty, exit 113 (stderr discarded)
    "launchctl-print.not-found.stderr.txt": None,  # had stderr reached the fact: not a job
}


@pytest.mark.parametrize("name", sorted(JOBS))
def test_launchd_job(name):
    assert parsed(LaunchdJob, name) == JOBS[name]


def test_launchd_job_covers_every_fixture():
    covered("launchctl-print.", JOBS)


# --- application firewall (--getglobalstate, --getblockall, --listapps, as the fact's command runs them) ---

GLOBAL_STATES = {
    "socketfilterfw-getglobalstate.off.txt": 0,
    "socketfilterfw-getglobalstate.on.txt": 1,
    "socketfilterfw-getglobalstate.block-all.macos11.txt": 2,
    "socketfilterfw-getglobalstate.block-all.macos15.txt": 2,
    "socketfilterfw-getglobalstate.stealth.2024.txt": 2,  # the line alone: see the --getblockall tests
}
LISTED_APPS = {
    "socketfilterfw-listapps.macos10.txt": {
        "/Users/abanks/Library/Application Support/Dropbox/Dropbox.app": True,
        "/System/Library/CoreServices/RemoteManagement/ARDAgent.app": True,
        "/Library/Application Support/Citrix/NetScaler Gateway.app": True,
    },
    "socketfilterfw-listapps.macos15.txt": {
        "/usr/libexec/sshd-session": False, "/usr/libexec/sshd-auth": False, "/usr/libexec/remoted": True,
        "/usr/bin/python3": True, "/usr/bin/ruby": True, "/usr/sbin/cupsd": True, "/usr/libexec/sharingd": True,
        "/usr/libexec/sshd-keygen-wrapper": True, "/usr/sbin/smbd": True,
    },
    "socketfilterfw-listapps.names-state.2024.txt": {  # names only; state 1 allows, 4 blocks
        "replicatord": True, "Pop Helper.app": False, "Google Chrome": False, "rtadvd": True,
        "com.docker.backend": True, "sshd-keygen-wrapper": True,
    },
}


def app_firewall(*fixtures: str) -> dict:
    return AppFirewall().process("".join(macos_output(name) for name in fixtures).splitlines())


@pytest.mark.parametrize("state_name", sorted(GLOBAL_STATES))
@pytest.mark.parametrize("apps_name", sorted(LISTED_APPS))
def test_app_firewall(state_name, apps_name):
    assert app_firewall(state_name, apps_name) == {"state": GLOBAL_STATES[state_name], "apps": LISTED_APPS[apps_name]}


@pytest.mark.parametrize("state_name,block_all,state", [
    ("socketfilterfw-getglobalstate.stealth.2024", "socketfilterfw-getblockall.off", 1),  # stealth, not block all
    ("socketfilterfw-getglobalstate.block-all.macos11", "socketfilterfw-getblockall.on", 2),
    ("socketfilterfw-getglobalstate.block-all.macos15", "socketfilterfw-getblockall.on", 2),
    ("socketfilterfw-getglobalstate.on", "socketfilterfw-getblockall.off", 1),
    ("socketfilterfw-getglobalstate.off", "socketfilterfw-getblockall.off", 0),
])
def test_block_all_is_read_from_getblockall(state_name, block_all, state):
    """State = 2 means block all on some macOS versions and stealth mode on others: --getblockall decides."""
    assert app_firewall(state_name, block_all, "socketfilterfw-listapps.macos15")["state"] == state
    assert "--getblockall" in AppFirewall().command()


def test_app_firewall_covers_every_fixture():
    covered("socketfilterfw-getglobalstate.", GLOBAL_STATES)
    covered("socketfilterfw-listapps.", LISTED_APPS)
    assert names("socketfilterfw-getblockall.") == ["socketfilterfw-getblockall.off.txt",
                                                    "socketfilterfw-getblockall.on.txt"]


# --- pf (the fact's command: the Status line, the main ruleset's com.apple anchor, SAF's anchor) ---


def pf_output(info: str, main: str, anchor: str | None) -> list[str]:
    status = [line for line in macos_output(info).splitlines() if re.match(r"(?i)^status", line)]
    stock = [line for line in macos_output(main).splitlines() if 'anchor "com.apple/*"' in line]  # grep -F
    rules = macos_output(anchor).splitlines() if anchor else []
    return [*status, "-- main", *stock, "-- anchor", *rules]


@pytest.mark.parametrize("info,enabled", [("pfctl-s-info.enabled", True), ("pfctl-s-info.disabled", False)])
def test_pf_rules(info, enabled):
    fresh = PfRules().process(pf_output(info, "pfctl-s-rules.stock", None))
    assert fresh == {"enabled": enabled, "anchor_point": True, "loaded": False, "digest": None}
    loaded = PfRules().process(pf_output(info, "pfctl-s-rules.stock", "pfctl-anchor-rules.saf"))
    assert loaded == {"enabled": enabled, "anchor_point": True, "loaded": True, "digest": "0123456789ab"}


def test_pf_main_ruleset_without_apples_anchor():
    """A pf.conf edited without `anchor "com.apple/*"`: the scrub-anchor line alone is no anchor point."""
    lines = ["Status: Enabled for 0 days 00:01:02     Debug: Urgent", "-- main",
             'scrub-anchor "com.apple/*" all fragment reassemble', "-- anchor"]
    assert PfRules().process(lines)["anchor_point"] is False


# --- Homebrew (pyinfra's fact) ----------------------------------------------------------------


def test_brew_packages():
    assert parsed(BrewPackages, "brew-list-versions.build-deps") == {
        "openssl@3": {"3.4.0"}, "pyenv": {"2.4.22"}, "readline": {"8.2.13"}, "sqlite": {"3.47.2"},
        "tcl-tk": {"9.0.1"}, "xz": {"5.6.3"}, "zlib": {"1.3.1"},
        "python@3.13": {"3.13.0"},  # pyinfra keeps the first of several installed versions
    }
    # known limit of pyinfra's BREW_REGEX: an upper-case HEAD-<commit> version is not matched, so a
    # pyenv installed with --HEAD reads as missing and SAF would ask brew to install it again
    assert parsed(BrewPackages, "brew-list-versions.head") == {"openssl@3": {"3.4.0"}}


# --- first contact (saf doctor's facts) -------------------------------------------------------

GPUS = {
    "system_profiler-SPDisplaysDataType.m3.macos14.txt": {"model": "Apple M3", "cores": 10, "metal": "Metal 3"},
    "system_profiler-SPDisplaysDataType.m1.macos12.txt":
        {"model": "Apple M1", "cores": 8, "metal": "Supported, Metal GPUFamily Apple 7"},
    # an Intel Mac on macOS 10.15 words it `Metal: Supported, feature set ...`
    "system_profiler-SPDisplaysDataType.intel-imacpro.txt":
        {"model": "Radeon Pro Vega 64", "cores": None, "metal": "Supported, feature set macOS GPUFamily2 v1"},
}


@pytest.mark.parametrize("name", sorted(GPUS))
def test_apple_gpu(name):
    assert parsed(AppleGPU, name) == GPUS[name]


def test_apple_gpu_covers_every_fixture():
    covered("system_profiler-SPDisplaysDataType.", GPUS)


def test_raw_datagram_cap():
    assert parsed(RawMaxDatagram, "sysctl-n-net.inet.raw.maxdgram.default") == 8192


def test_launchd_domain():
    assert parsed(LaunchdDomain, "launchctl-domain.reachable") is True
    assert parsed(LaunchdDomain, "launchctl-domain.unreachable") is False


def test_ray_processes_started_by_hand():
    """The seeds' hand-run head (`ray start` has returned): its daemons, left with launchd, and nothing else."""
    found = parsed(RayProcesses, "ps-A.seed-leftovers.macos14")
    assert [(p["user"], p["pid"], p["ppid"]) for p in found] == [
        ("arthurdell", 2231, 1), ("arthurdell", 2245, 1), ("arthurdell", 2251, 1), ("arthurdell", 2262, 1)]
    dashboard = found[1]["command"]
    assert "/ray/dashboard/dashboard.py --host=0.0.0.0 --port=8265" in dashboard  # open to the network
    assert dashboard.startswith("/Library/Developer/CommandLineTools/Library/Frameworks/Python3.framework/Versions/3.9/")
    assert "--gcs_server_port=6380" in found[0]["command"]


def test_ray_processes_of_a_converged_mac():
    found = parsed(RayProcesses, "ps-A.converged.macos15")
    assert [(p["pid"], p["ppid"]) for p in found] == [(4127, 1), (4139, 4127), (4152, 4127), (4160, 4152)]
    assert found[-1]["command"] == "ray::IDLE"
    assert names("ps-A.") == ["ps-A.converged.macos15.txt", "ps-A.seed-leftovers.macos14.txt"]


# --- the raw text where plan fixtures give a macOS fact already parsed ------------------------


def test_converged_mac_plans_nothing_from_raw_launchctl_and_brew_output(plan):
    """tests/facts.py gives the Ray job and Homebrew as parsed values; the raw text must plan the same."""
    from saf.build_deps import MAC_BUILD_DEPS
    from tests.facts import converged_mac

    assert set(MAC_BUILD_DEPS) <= set(parsed(BrewPackages, "brew-list-versions.build-deps"))
    raw = converged_mac(**{
        "launchd.LaunchdJob:system/org.saf.ray-head": Raw(macos_output("launchctl-print.running.macos15")),
        "brew.BrewPackages": Raw(macos_output("brew-list-versions.build-deps")),
        "macos.PmsetSettings": Raw(macos_output("pmset-g-custom.converged.macos15")),
        "network.MacInterfaces": Raw(macos_output("ifconfig.macstudio.macos15").replace(
            "en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500",
            "en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 9000")),
        "network.MacHardwarePorts": Raw(macos_output("networksetup-listallhardwareports.macstudio.macos15")),
        "network.MacMTU:en0": Raw(macos_output("networksetup-getMTU.en0-9000")),
        "network.MacValidMTURange:en0": Raw(macos_output("networksetup-listValidMTURange.ethernet-10g")),
        "system.XcodeCommandLineTools": Raw(macos_output("xcode-select-p.clt")),
        "system.FreeDiskKiB": Raw(macos_output("df-Pk.apfs-data.macos15")),
        "system.PasswordlessSudo": Raw(macos_output("sudo-n.passwordless")),
        "server.Kernel": Raw(macos_output("uname-s.darwin")),
        "server.Arch": Raw(macos_output("uname-m.arm64")),
        "server.MacosVersion": Raw(macos_output("sw_vers-productVersion.macos15")),
    })
    one_mac = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}]}
    alpha = plan({"alpha": raw}, cluster=one_mac)["alpha"]
    assert alpha.op("Ray head (launchd)") and alpha.changing_ops == []


def test_stopped_ray_job_from_raw_output_is_started(plan):
    """The same converged Mac whose Ray job launchd reports waiting to respawn: the deploy restarts it."""
    from tests.facts import converged_mac

    waiting = macos_output("launchctl-print.spawn-scheduled.macos13").replace(
        "com.tailscale.tailscaled", "org.saf.ray-head")
    assert parsed_text(LaunchdJob, waiting)["state"] == "spawn scheduled"
    one_mac = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}]}
    facts = converged_mac(**{"launchd.LaunchdJob:system/org.saf.ray-head": Raw(waiting)})
    alpha = plan({"alpha": facts}, cluster=one_mac)["alpha"]
    [restart] = alpha.changing_ops
    assert "Ray head (launchd)" in restart.name and restart.sudo
    assert any("launchctl" in command for command in restart.commands)


def parsed_text(fact_cls, text: str):
    return fact_cls().process(text.splitlines())


def test_missing_command_line_tools_from_raw_output_stops_the_node(plan):
    from tests.facts import fresh_mac

    one_mac = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}]}
    facts = fresh_mac(**{"system.XcodeCommandLineTools": Raw(macos_output("xcode-select-p.missing")),
                         "server.Arch": Raw(macos_output("uname-m.x86_64-intel")),
                         "server.MacosVersion": Raw(macos_output("sw_vers-productVersion.macos12"))})
    alpha = plan({"alpha": facts}, cluster=one_mac)["alpha"]
    stop = " ".join(command for op in alpha.ops for command in op.commands)
    assert "xcode-select --install" in stop and "x86_64" in stop and "12.7.6" in stop


def test_launch_agent_teardown_from_raw_output(plan):
    """tests/plan/test_rollback_teardown.py gives the LaunchAgent's job parsed; the raw text plans the same."""
    from tests.facts import converged_mac

    path = "/Users/arthurdell/Library/LaunchAgents/org.saf.ray-head.plist"
    one_mac = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}],
               "settings": {"macos_service": "agent"}}
    facts = converged_mac(**{"server.Command:id -u": "501", f"files.File:{path}": {"mode": 644},
                             "launchd.LaunchdJob:gui/501/org.saf.ray-head":
                                 Raw(macos_output("launchctl-print.agent-running.macos15"))})
    alpha = plan({"alpha": facts}, cluster=one_mac, deploy_file="tasks/teardown.py")["alpha"]
    stop = alpha.op("Stop Ray head (launchd)")
    assert stop.commands == ["launchctl bootout gui/501/org.saf.ray-head"] and not stop.sudo


def test_converged_venv_from_raw_output(plan):
    """The venv listing, the interpreter probe and the installed distributions as the node prints them."""
    import json

    from tests.facts import converged_mac, installed, venv_for

    home = "/Users/arthurdell"
    name, reqs = venv_for()
    listing = f"venv complete {name}\nlink current {home}/saf/venv/{name}\n"  # readlink prints the target
    raw = converged_mac(**{
        "python.SafVenvs:*": Raw(listing),
        "python.PythonInterpreter:*": Raw('{"version": "3.9.23", "missing": []}\n'),
        f"python.VenvDistributions:{home}/saf/venv/{name}": Raw("SAF-VENV\n" + "".join(
            f"{dist.replace('-', '_')}-{version}.dist-info\n{dist.replace('-', '_')}\n"
            for dist, version in installed(reqs).items())),
    })
    one_mac = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}]}
    assert plan({"alpha": raw}, cluster=one_mac)["alpha"].changing_ops == []
