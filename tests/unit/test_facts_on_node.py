"""SAF's facts read the way pyinfra reads them on a node: the fact's own command run by ``sh``, its
stdout handed to ``process()`` as lines (none: the fact's default).

Where the command can run here for real it does (the venv listing over a real venv root, the
interpreter and venv probes with this machine's Python, ``getconf``, ``ip``, ``df``). A macOS tool
that cannot run here is a stand-in executable on PATH that prints the reference output of
tests/fixtures/macos/ (each file names its public source) for exactly the arguments the real tool
is given, and fails like the real one otherwise; so a fact that asked the wrong question, or
parsed the answer wrongly, fails here.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api import StringCommand

from saf.facts.firewall import NftRules, PfRules
from saf.facts.launchd import LaunchdDomain, LaunchdJob
from saf.facts.macos import PmsetSettings
from saf.facts.network import (
    LinuxInterfaces,
    MacHardwarePorts,
    MacInterfaces,
    MacMTU,
    MacValidMTURange,
    RawMaxDatagram,
)
from saf.facts.python import (
    COMPLETE_MARKER,
    REQUIRED_MODULES,
    GlibcVersion,
    PythonInterpreter,
    SafVenvs,
    VenvDistributions,
)
from saf.facts.system import FreeDiskKiB, PasswordlessSudo, XcodeCommandLineTools
from tests.fixtures import macos_output

MISSING_COMMAND = "##PYINFRA_NOCMD##"  # what pyinfra's guard prints when requires_command is absent
NOT_INSTALLED = "the fact's command is not installed (pyinfra skips the fact)"
FAILED = "the fact's command failed (pyinfra fails the host: could not load fact)"


def as_sent(fact, kwargs: dict) -> str:
    """The shell command pyinfra sends for this fact (with its requires_command guard)."""
    command = fact.command(**kwargs)
    text = command.get_raw_value() if isinstance(command, StringCommand) else command
    requires = fact.requires_command(**kwargs)
    if requires:
        text = f"if command -v {requires} >/dev/null 2>&1; then ( {text} ); else echo '{MISSING_COMMAND}'; fi"
    return text


def read_fact(fact_cls, stand_ins: Path | None = None, env: dict | None = None, **kwargs):
    """The fact as pyinfra would have it from this machine, stand-ins first on PATH."""
    fact = fact_cls()
    path = os.pathsep.join([str(stand_ins)] if stand_ins else []) or None
    environment = {**os.environ, **(env or {})}
    if path:
        environment["PATH"] = f"{path}{os.pathsep}/usr/bin:/bin"
    result = subprocess.run(["sh", "-c", as_sent(fact, kwargs)], check=False, capture_output=True, text=True,
                            env=environment, timeout=60)
    lines = result.stdout.splitlines()
    if result.returncode != 0:
        return FAILED
    if lines == [MISSING_COMMAND]:
        return NOT_INSTALLED
    return fact.process(lines) if lines else fact.default()


@pytest.fixture
def stand_ins(tmp_path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    return directory


def stand_in(directory: Path, tool: str, answers: dict[str, str], failure: str = "exit 1") -> None:
    """An executable ``tool`` that prints the output of fixture ``answers[<its arguments>]`` (without
    the fixture's header), or else runs ``failure``."""
    cases = ""
    for number, (args, fixture) in enumerate(answers.items()):
        output = directory / f".{tool}.{number}.out"
        output.write_text(macos_output(fixture))
        cases += f"    {shlex.quote(args)}) cat {shlex.quote(str(output))}; exit 0 ;;\n"
    script = directory / tool
    script.write_text(f'#!/bin/sh\ncase "$*" in\n{cases}esac\n{failure}\n')
    script.chmod(0o755)


# --- the venv listing (SafVenvs), over a real venv root --------------------------------------

OLD, NEW, HALF = ("py3.9.23-ray2.49.1-mlx0.29.0-aaaaaaaa", "py3.9.23-ray2.49.1-mlx0.29.1-bbbbbbbb",
                  "py3.9.23-ray2.49.2-mlx0.29.1-cccccccc")


def complete_venv(root: Path, name: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / COMPLETE_MARKER).write_text("ray[default]==2.49.1\n")


def test_venv_listing_names_complete_and_partial_venvs_and_both_links(tmp_path):
    root = tmp_path / "venv"
    complete_venv(root, OLD)
    complete_venv(root, NEW)
    (root / HALF).mkdir()  # a build that stopped before its marker
    os.symlink(NEW, root / "current")
    os.symlink(f"{root}/{OLD}/", root / "previous")  # absolute, with a trailing slash: still its name
    assert read_fact(SafVenvs, root=str(root)) == {
        "venvs": {OLD: True, NEW: True, HALF: False}, "current": NEW, "previous": OLD}


def test_venv_listing_ignores_what_is_not_a_saf_venv(tmp_path):
    root = tmp_path / "venv"
    complete_venv(root, NEW)
    (root / "projects").mkdir()
    (root / "py-notes").mkdir()
    os.symlink(root / NEW, root / OLD)  # a link named like a venv is not one
    (root / HALF).write_text("a file named like a venv")
    assert read_fact(SafVenvs, root=str(root)) == {"venvs": {NEW: True}, "current": None, "previous": None}


def test_venv_listing_of_a_missing_or_empty_root_is_empty(tmp_path):
    nothing = {"venvs": {}, "current": None, "previous": None}
    assert read_fact(SafVenvs, root=str(tmp_path / "absent")) == nothing
    (tmp_path / "empty").mkdir()
    assert read_fact(SafVenvs, root=str(tmp_path / "empty")) == nothing
    assert SafVenvs.default() == nothing and SafVenvs.default() is not SafVenvs.default()


def test_venv_listing_root_with_a_space_is_one_argument(tmp_path):
    root = tmp_path / "my venvs"
    complete_venv(root, NEW)
    complete_venv(root, OLD)
    os.symlink(NEW, root / "current")
    os.symlink(root / OLD, root / "previous")  # an absolute target with a space in it
    assert read_fact(SafVenvs, root=str(root)) == {"venvs": {NEW: True, OLD: True}, "current": NEW, "previous": OLD}


def test_venv_listing_ignores_what_a_login_script_prints():
    noisy = ["Welcome to alpha", f"venv complete {NEW}", "last login: today", f"link current {NEW}"]
    assert SafVenvs().process(noisy) == {"venvs": {NEW: True}, "current": NEW, "previous": None}


# --- interpreter and venv probes, with this machine's Python ---------------------------------


def test_interpreter_probe_reports_the_version_and_no_missing_module():
    assert read_fact(PythonInterpreter, python=sys.executable) == {
        "version": platform.python_version(), "missing": []}


def test_interpreter_probe_of_an_absent_path_is_none(tmp_path):
    assert read_fact(PythonInterpreter, python=str(tmp_path / "bin" / "python")) is None


def test_an_interpreter_that_does_not_start_is_broken_with_every_module_missing(tmp_path):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'dyld: Library not loaded' >&2\nexit 134\n")
    broken.chmod(0o755)
    assert read_fact(PythonInterpreter, python=str(broken)) == {"version": None, "missing": list(REQUIRED_MODULES)}


def test_interpreter_probe_names_a_module_that_does_not_import(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "lzma.py").write_text("raise ImportError('built without liblzma')\n")
    found = read_fact(PythonInterpreter, env={"PYTHONPATH": str(shadow)}, python=sys.executable)
    assert found == {"version": platform.python_version(), "missing": ["lzma"]}


def test_venv_distributions_lists_normalised_names_and_versions():
    venv = Path(sys.prefix)  # this test's own venv
    found = read_fact(VenvDistributions, venv=str(venv))
    import importlib.metadata as md
    assert found["pyinfra"] == md.version("pyinfra") and found["pytest"] == md.version("pytest")
    assert all(name == name.lower() and "_" not in name and "." not in name for name in found)


def test_venv_distributions_of_a_missing_venv_is_none(tmp_path):
    assert read_fact(VenvDistributions, venv=str(tmp_path / "nothing")) is None


# --- Linux: glibc, interfaces ----------------------------------------------------------------


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs a glibc system")
def test_glibc_version_is_this_systems():
    assert read_fact(GlibcVersion) == platform.libc_ver()[1]


def test_glibc_version_from_getconfs_line_and_none_without_glibc(stand_ins):
    assert GlibcVersion().process(["glibc 2.36"]) == "2.36"
    assert GlibcVersion().process(["Welcome home", "glibc 2.36"]) == "2.36"  # a login script's line first
    (stand_ins / "getconf").write_text("#!/bin/sh\necho 'getconf: Unrecognized variable' >&2\nexit 1\n")
    (stand_ins / "getconf").chmod(0o755)
    assert read_fact(GlibcVersion, stand_ins) is None  # macOS's getconf has no GNU_LIBC_VERSION


@pytest.mark.skipif(not (Path("/sys/class/net/lo").exists() and shutil.which("ip")), reason="needs Linux and ip")
def test_linux_interfaces_of_this_machine_include_loopback():
    lo = read_fact(LinuxInterfaces)["lo"]
    assert lo["inet"] == ["127.0.0.1"] and lo["link_type"] == "loopback" and lo["wireless"] is False
    assert lo["mtu"] == int(Path("/sys/class/net/lo/mtu").read_text())


def test_linux_interfaces_read_ip_json_and_the_wireless_list():
    ip_json = json.dumps([
        {"ifname": "eth0", "mtu": 9000, "link_type": "ether",
         "addr_info": [{"family": "inet", "local": "10.0.0.1"}, {"family": "inet6", "local": "fe80::1"},
                       {"family": "inet", "local": "10.0.1.1"}]},
        {"ifname": "wlan0", "mtu": 1500, "link_type": "ether", "addr_info": [{"family": "inet", "local": "192.168.1.9"}]},
        {"ifname": "tun0", "mtu": 1280},  # no addresses, no link_type (as ip prints a bare tunnel)
    ])
    assert LinuxInterfaces().process([ip_json, "", "wireless wlan0"]) == {
        "eth0": {"mtu": 9000, "inet": ["10.0.0.1", "10.0.1.1"], "link_type": "ether", "wireless": False},
        "wlan0": {"mtu": 1500, "inet": ["192.168.1.9"], "link_type": "ether", "wireless": True},
        "tun0": {"mtu": 1280, "inet": [], "link_type": "", "wireless": False},
    }


# --- system facts ----------------------------------------------------------------------------


def test_free_disk_is_the_available_column_of_df_for_home(tmp_path):
    free = read_fact(FreeDiskKiB, env={"HOME": str(tmp_path)})
    stat = os.statvfs(tmp_path)
    assert abs(free - stat.f_bavail * stat.f_frsize // 1024) < 1024 * 1024  # within 1 GiB of a moving target


def test_free_disk_from_a_macs_df(stand_ins):
    stand_in(stand_ins, "df", {f"-Pk {Path.home()}": "df-Pk.apfs-data.macos15.txt"})
    assert read_fact(FreeDiskKiB, stand_ins, env={"HOME": str(Path.home())}) == 1498231504


def test_passwordless_sudo(stand_ins):
    (stand_ins / "sudo").write_text('#!/bin/sh\n[ "$*" = "-n true" ] && exit 0\nexit 1\n')
    (stand_ins / "sudo").chmod(0o755)
    assert read_fact(PasswordlessSudo, stand_ins) is True
    (stand_ins / "sudo").write_text("#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n")
    assert read_fact(PasswordlessSudo, stand_ins) is False


def test_command_line_tools_present_missing_and_xcode_select_absent(stand_ins, tmp_path):
    developer = tmp_path / "CommandLineTools"
    (developer / "usr" / "bin").mkdir(parents=True)
    (stand_ins / "xcode-select").write_text(f'#!/bin/sh\n[ "$*" = "-p" ] && echo {developer}\n')
    (stand_ins / "xcode-select").chmod(0o755)
    assert read_fact(XcodeCommandLineTools, stand_ins) == str(developer)
    # a selected directory whose tools were deleted (Homebrew/install#36) is no tools at all
    stand_in(stand_ins, "xcode-select", {"-p": "xcode-select-p.stale-path.txt"})
    assert not Path("/Library/Developer/CommandLineTools/usr/bin").exists()
    assert read_fact(XcodeCommandLineTools, stand_ins) is None
    stand_in(stand_ins, "xcode-select", {}, failure=f"echo {shlex.quote(macos_output('xcode-select-p.missing.stderr'))} >&2; exit 2")
    assert read_fact(XcodeCommandLineTools, stand_ins) is None
    (stand_ins / "xcode-select").unlink()
    assert read_fact(XcodeCommandLineTools, stand_ins) == NOT_INSTALLED  # not a Mac: pyinfra skips the fact


# --- launchd ---------------------------------------------------------------------------------

NOT_LOADED = 'echo "Could not find service \\"${2##*/}\\" in domain for system" >&2; exit 113'


@pytest.mark.parametrize("fixture,state,pid", [
    ("launchctl-print.running.macos15.txt", "running", 4127),
    ("launchctl-print.spawn-scheduled.macos13.txt", "spawn scheduled", None),
    ("launchctl-print.not-running.macos13.txt", "not running", None),
])
def test_launchd_job_state_and_pid_as_launchctl_prints_them(stand_ins, fixture, state, pid):
    stand_in(stand_ins, "launchctl", {"print system/org.saf.ray-head": fixture}, failure=NOT_LOADED)
    job = read_fact(LaunchdJob, stand_ins, target="system/org.saf.ray-head")
    assert (job["state"], job["pid"]) == (state, pid)


def test_launchd_job_reads_the_path_of_the_job_not_of_its_logs(stand_ins):
    stand_in(stand_ins, "launchctl", {"print system/org.saf.ray-head": "launchctl-print.running.macos15.txt"})
    job = read_fact(LaunchdJob, stand_ins, target="system/org.saf.ray-head")
    assert job == {"state": "running", "pid": 4127, "path": "/Library/LaunchDaemons/org.saf.ray-head.plist"}


def test_a_job_that_is_not_loaded_is_none(stand_ins):
    stand_in(stand_ins, "launchctl", {"print system/org.saf.ray-head": "launchctl-print.running.macos15.txt"},
             failure=NOT_LOADED)
    assert read_fact(LaunchdJob, stand_ins, target="system/org.saf.ray-worker") is None
    assert LaunchdJob().process(macos_output("launchctl-print.not-found.stderr").splitlines()) is None


def test_launchd_domain_reachable_or_not(stand_ins):
    stand_in(stand_ins, "launchctl", {"print system": "launchctl-print-domain.system.txt"}, failure=NOT_LOADED)
    assert read_fact(LaunchdDomain, stand_ins, domain="system") is True
    assert read_fact(LaunchdDomain, stand_ins, domain="gui/501") is False  # no GUI session: nothing to reach
    (stand_ins / "launchctl").unlink()
    assert read_fact(LaunchdDomain, stand_ins, domain="system") == NOT_INSTALLED


def test_a_job_whose_pid_is_not_a_number_keeps_it_as_text():
    job = LaunchdJob().process(["system/x = {", "\tstate = running", "\tpid = (unknown)", "}"])
    assert job == {"state": "running", "pid": "(unknown)", "path": None}


# --- power and network -----------------------------------------------------------------------


def test_pmset_reads_ac_power_only(stand_ins):
    stand_in(stand_ins, "pmset", {"-g custom": "pmset-g-custom.laptop.macos14.txt"})
    laptop = read_fact(PmsetSettings, stand_ins)
    on_battery = PmsetSettings().process(macos_output("pmset-g-custom.laptop.macos14").split("AC Power:")[0].splitlines())
    assert laptop and on_battery == {}  # the Battery Power section alone gives nothing
    assert all(isinstance(value, int) for value in laptop.values())


def test_mtu_of_a_device(stand_ins):
    stand_in(stand_ins, "networksetup", {"-getMTU en0": "networksetup-getMTU.en0-pending.txt",
                                         "-listValidMTURange en0": "networksetup-listValidMTURange.ethernet-10g.txt"})
    assert read_fact(MacMTU, stand_ins, device="en0") == {"active": 1500, "setting": 9000}
    assert read_fact(MacValidMTURange, stand_ins, device="en0") == (1280, 9000)
    assert read_fact(MacValidMTURange, stand_ins, device="en7") is None  # networksetup fails: no range
    # the MTU is asked only of the interface carrying the cluster ip: one networksetup does not know is an error
    assert read_fact(MacMTU, stand_ins, device="en7") == FAILED


def test_raw_datagram_cap(stand_ins):
    stand_in(stand_ins, "sysctl", {"-n net.inet.raw.maxdgram": "sysctl-n-net.inet.raw.maxdgram.default.txt"})
    assert read_fact(RawMaxDatagram, stand_ins) == 8192
    stand_in(stand_ins, "sysctl", {}, failure="echo 'sysctl: unknown oid' >&2; exit 1")
    assert read_fact(RawMaxDatagram, stand_ins) is None  # Linux has no such key
    assert RawMaxDatagram().process(["unknown"]) is None


def test_mtu_without_a_separate_setting_is_the_active_one():
    assert MacMTU().process(["Active MTU: 1500"]) == {"active": 1500, "setting": 1500}


def test_interfaces_and_hardware_ports(stand_ins):
    stand_in(stand_ins, "ifconfig", {"": "ifconfig.macstudio.macos15.txt"})
    stand_in(stand_ins, "networksetup", {"-listallhardwareports": "networksetup-listallhardwareports.macstudio.macos15.txt"})
    interfaces = read_fact(MacInterfaces, stand_ins)
    ports = read_fact(MacHardwarePorts, stand_ins)
    assert "192.168.1.172" in interfaces["en0"]["inet"] and interfaces["en0"]["pointtopoint"] is False
    assert ports["en0"] == "Ethernet"


# --- firewall --------------------------------------------------------------------------------


def test_pf_rules_as_the_fact_composes_pfctls_three_answers(stand_ins):
    stand_in(stand_ins, "pfctl", {"-s info": "pfctl-s-info.enabled.txt", "-s rules": "pfctl-s-rules.stock.txt",
                                  "-a com.apple/org.saf.ray -s rules": "pfctl-anchor-rules.saf.txt"})
    assert read_fact(PfRules, stand_ins) == {"enabled": True, "anchor_point": True, "loaded": True,
                                             "digest": "0123456789ab"}


def test_pf_rules_without_saf_anchor_or_pf(stand_ins):
    stand_in(stand_ins, "pfctl", {"-s info": "pfctl-s-info.disabled.txt"})
    assert read_fact(PfRules, stand_ins) == {"enabled": False, "anchor_point": False, "loaded": False, "digest": None}


NFT_TABLE = """table inet saf {
\tset peers {
\t\ttype ipv4_addr
\t\telements = { 10.77.0.11, 10.77.0.12 }
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\ttcp dport 6380 ip saddr != @peers reject with tcp reset comment "saf-ray-0123456789ab"
\t}
}
"""


def test_nft_rules_read_the_digest_of_the_loaded_table(stand_ins):
    nft = stand_ins / "nft"
    nft.write_text(f"#!/bin/sh\n[ \"$*\" = 'list table inet saf' ] && cat <<'EOF'\n{NFT_TABLE}EOF\n"
                   "[ \"$*\" = 'list table inet saf' ] && exit 0\n"
                   "echo 'Error: No such file or directory' >&2; exit 1\n")
    nft.chmod(0o755)
    assert read_fact(NftRules, stand_ins) == {"digest": "0123456789ab"}
    nft.write_text("#!/bin/sh\necho 'Error: No such file or directory; did you mean table saf in family inet?' >&2\n"
                   "exit 1\n")
    assert read_fact(NftRules, stand_ins) is None


@pytest.mark.parametrize("lines,state", [
    # the wordings without their "(State = N)" (older shapes)
    (["Firewall is disabled."], 0),
    (["Firewall is on."], 1),
    (["Firewall is blocking all incoming connections."], 2),
    (["ALF: total number of apps = 0"], 0),  # no global state line at all: not known to be on
    # --getblockall decides block all (State = 2 is stealth mode on some versions)
    (["Firewall is enabled.", "Firewall has block all state set to enabled."], 2),
    (["Firewall is enabled. (State = 1)", macos_output("socketfilterfw-getblockall.on")], 2),
    (["Firewall is enabled. (State = 1)", "Firewall has block all state set to disabled."], 1),
    # the global line's own "blocking all" wording is not --getblockall's answer
    ([macos_output("socketfilterfw-getglobalstate.block-all.macos15"), macos_output("socketfilterfw-getblockall.off")], 1),
    (["Welcome to alpha", "Firewall is enabled. (State = 1)"], 1),  # a login script's line first
])
def test_application_firewall_state_from_its_wordings(lines, state):
    from saf.facts.firewall import AppFirewall

    assert AppFirewall().process("\n".join(lines).splitlines())["state"] == state
