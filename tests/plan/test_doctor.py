"""`saf doctor` planned on fixture facts: each kind of Mac a user may point SAF at gets the verdict
they need, read-only (no operation but the failing step of a node the deploy would stop on)."""

from __future__ import annotations

import logging
import re

import pytest

from tests.facts import converged_mac, fresh_debian, fresh_mac
from tests.fixtures import macos_output
from tests.planning import Raw

PROTECTED = {"firewall": True}  # Ray 2.49.1 has no token auth: the cluster file must choose its protection
ONE_MAC = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"}],
           "settings": PROTECTED}
ONE_DEBIAN = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}], "settings": PROTECTED}
def rdma_output(status: str, devices: str = "") -> Raw:
    """The RDMA fact's output: ``rdma_ctl status`` (or ``absent``), then ``ibv_devices``."""
    return Raw(f"--- rdma_ctl status\n{status}\n--- ibv_devices\n{devices}")


DOCTOR_FACTS = {
    "rdma.RdmaThunderbolt": rdma_output("absent"),  # macOS 15: no rdma_ctl
    "ray.RayProcesses": Raw("root 1 0 /sbin/launchd\n"),
    "network.RawMaxDatagram": Raw(macos_output("sysctl-n-net.inet.raw.maxdgram.default.txt")),
}


def doctor(plan, caplog, facts, cluster=ONE_MAC):
    """The doctor's plan for alpha and its findings: {check: (found, verdict, fix)}."""
    with caplog.at_level(logging.INFO):
        alpha = plan({"alpha": {**DOCTOR_FACTS, **facts}}, cluster=cluster, deploy_file="tasks/doctor.py")["alpha"]
    table = caplog.text.rsplit("saf doctor: alpha:", 1)[1]  # the latest table
    rows = {}
    for line in table.splitlines()[2:]:
        cells = re.split(r"\s{2,}", line.strip(), maxsplit=3)
        if len(cells) < 3 or cells[2] not in ("OK", "would change", "attention", "cannot"):
            break
        rows[cells[0]] = (cells[1], cells[2], cells[3] if len(cells) > 3 else "")
    return alpha, rows


def verdicts(rows) -> dict[str, str]:
    return {check: verdict for check, (_, verdict, _) in rows.items()}


def test_a_converged_mac_is_all_ok_and_nothing_runs(plan, caplog):
    alpha, rows = doctor(plan, caplog, converged_mac(**{"macos.MacMTU:en0": {"active": 9000, "setting": 9000}}))
    assert alpha.ops == []
    assert set(verdicts(rows).values()) == {"OK"}, rows
    assert rows["Apple GPU"][0] == "Apple M3 Ultra, 80 GPU cores, Metal 3"
    assert rows["raw datagram cap"][0] == "8192 bytes (net.inet.raw.maxdgram)"
    assert {"processor", "macOS", "Command Line Tools", "launchd domain", "free disk", "sudo", "Homebrew", "Python",
            "venv", "MTU", "application firewall", "Ray processes", "Ray service"} <= set(rows)


def test_a_fresh_mac_would_change_what_the_deploy_builds(plan, caplog):
    alpha, rows = doctor(plan, caplog, fresh_mac())
    assert alpha.ops == []  # nothing stops it, and the doctor itself changes nothing
    changing = {check for check, verdict in verdicts(rows).items() if verdict != "OK"}
    assert changing == {"Homebrew", "Python", "venv", "MTU", "Ray service"}
    assert {verdicts(rows)[check] for check in changing} == {"would change"}
    assert rows["MTU"][2] == "networksetup -setMTU en0 9000"
    assert rows["Python"][2] == "builds Python 3.9.23 with pyenv"


def test_a_mac_with_the_seeds_hand_run_ray_is_named_as_what_the_deploy_stops(plan, caplog):
    leftovers = {"ray.RayProcesses": Raw(macos_output("ps-A.seed-leftovers.macos14.txt"))}
    alpha, rows = doctor(plan, caplog, {**fresh_mac(), **leftovers})
    found, verdict, fix = rows["Ray processes"]
    assert (found, verdict) == ("4 not started by SAF", "would change")  # foreign_ray: stop (the default)
    assert "pid 2231 (arthurdell): .../ray/core/src/ray/gcs/gcs_server --log_dir=" in fix
    assert "pid 2245 (arthurdell): .../ray/dashboard/dashboard.py --host=0.0.0.0 --port=8265" in fix
    assert alpha.ops == []  # the deploy goes on (adopting it is the deploy's job)


def test_a_mac_with_the_seeds_hand_run_ray_cannot_under_foreign_ray_refuse(plan, caplog):
    leftovers = {"ray.RayProcesses": Raw(macos_output("ps-A.seed-leftovers.macos14.txt"))}
    cluster = {**ONE_MAC, "settings": {**PROTECTED, "foreign_ray": "refuse"}}
    alpha, rows = doctor(plan, caplog, {**fresh_mac(), **leftovers}, cluster=cluster)
    found, verdict, fix = rows["Ray processes"]
    assert (found, verdict) == ("4 not started by SAF", "cannot")
    assert "alpha runs Ray outside SAF's service (foreign_ray: refuse)" in fix and "`kill 2231 2245 2251 2262`" in fix
    assert "the deploy would stop on alpha" in alpha.op("Doctor").commands[0]


def test_saf_s_own_ray_is_not_foreign(plan, caplog):
    own = Raw("arthurdell 4127 1 /Users/arthurdell/saf/venv/current/bin/python /Users/arthurdell/saf/venv/"
              "current/bin/ray start --head --block\n"
              "arthurdell 4140 4127 /Users/arthurdell/saf/venv/py3.9.23-ray2.49.1-mlx0.29.1-0a1b2c3d/lib/python3.9/"
              "site-packages/ray/core/src/ray/raylet/raylet --node_manager_port=6381\n"
              "arthurdell 4188 4140 ray::IDLE\n")  # a worker renames itself; its raylet is SAF's
    _, rows = doctor(plan, caplog, {**converged_mac(), "ray.RayProcesses": own})
    assert rows["Ray processes"][:2] == ("3, all SAF's service", "OK")
    stray = Raw("someone 5000 1 ray::IDLE\n")
    _, rows = doctor(plan, caplog, {**converged_mac(), "ray.RayProcesses": stray})
    assert rows["Ray processes"][:2] == ("1 not started by SAF", "would change")


def test_a_mac_without_the_command_line_tools_cannot(plan, caplog):
    missing = Raw(macos_output("xcode-select-p.missing.txt"))
    alpha, rows = doctor(plan, caplog, fresh_mac(**{"system.XcodeCommandLineTools": missing}))
    assert rows["Command Line Tools"][1] == "cannot" and "xcode-select --install" in rows["Command Line Tools"][2]
    assert "the deploy would stop on alpha" in alpha.op("Doctor").commands[0]


def test_an_intel_mac_cannot_and_nothing_further_is_checked(plan, caplog):
    alpha, rows = doctor(plan, caplog, fresh_mac(**{"server.Arch": "x86_64"}))
    assert rows["processor"][1] == "cannot" and "Apple Silicon" in rows["processor"][2]
    assert "Python" not in rows and "Apple GPU" not in rows
    assert "Apple Silicon" in alpha.op("Doctor").commands[0]


def test_a_mac_on_macos_12_cannot_and_its_gpu_still_reads(plan, caplog):
    old = fresh_mac(**{"server.MacosVersion": macos_output("sw_vers-productVersion.macos12.txt").strip(),
                       "gpu.AppleGPU": Raw(macos_output("system_profiler-SPDisplaysDataType.m1.macos12.txt"))})
    alpha, rows = doctor(plan, caplog, old)
    assert rows["macOS"][1] == "cannot" and "older than 13.5" in rows["macOS"][2]
    assert rows["Apple GPU"] == ("Apple M1, 8 GPU cores, Supported, Metal GPUFamily Apple 7", "OK", "")
    assert alpha.op("Doctor").commands


def test_output_the_doctor_does_not_understand_is_named_not_guessed(plan, caplog):
    strange = Raw("Graphics/Displays:\n\n    Something else entirely\n")
    alpha, rows = doctor(plan, caplog, fresh_mac(**{"gpu.AppleGPU": strange}))
    found, verdict, fix = rows["system_profiler SPDisplaysDataType"]
    assert (found, verdict) == ("output not understood", "cannot")
    assert "Graphics/Displays: | Something else entirely" in fix
    assert alpha.op("Doctor").commands


def test_a_lost_passwordless_sudo_is_a_cannot_naming_the_fix(plan, caplog):
    alpha, rows = doctor(plan, caplog, converged_mac(**{"system.PasswordlessSudo": Raw(
        macos_output("sudo-n.password-required.txt"))}))
    assert rows["sudo"][1] == "cannot" and "/etc/sudoers.d" in rows["sudo"][2]
    assert "Ray processes" not in rows  # nothing read with sudo once sudo asks for a password
    assert "sudoers" in alpha.op("Doctor").commands[0]


@pytest.mark.parametrize("gpus, found", [("", "no NVIDIA GPU (MLX on the CPU)"),
                                         ("NVIDIA H200\n", "NVIDIA H200 (MLX's CUDA backend)")])
def test_a_debian_node_without_its_cluster_interface_cannot(plan, caplog, gpus, found):
    facts = fresh_debian(**{"gpu.NvidiaGPUs": Raw(gpus), "network.LinuxInterfaces": Raw("[]"),
                            "server.Command:systemctl is-active saf-ray-head.service 2>/dev/null || true": "inactive"})
    alpha, rows = doctor(plan, caplog, facts, cluster=ONE_DEBIAN)
    assert rows["GPU"][:2] == (found, "OK")
    assert rows["cluster interface"][1] == "cannot" and "cluster ip 10.0.0.1" in rows["cluster interface"][2]
    assert rows["Ray service"][:2] == ("saf-ray-head.service inactive", "would change")
    assert "no interface on alpha has the cluster ip 10.0.0.1" in alpha.op("Doctor").commands[0]


@pytest.mark.parametrize(("status", "devices", "expected"), [
    ("absent", "", ("not on this Mac (it needs macOS 26.2+ and Thunderbolt 5)", "OK",
                    "MLX's ring backend over TCP is used")),
    (macos_output("rdma_ctl-status.disabled.macos26-2.txt"), "", (
        "available, disabled", "OK",
        "not needed for the ring backend; to have it, run `rdma_ctl enable` in macOS Recovery's Terminal, then restart")),
    (macos_output("rdma_ctl-status.enabled.macos26-2.txt"), macos_output("ibv_devices.m4-pro-mini.macos26-2.txt"), (
        "enabled: rdma_en2, rdma_en3, rdma_en4", "OK", "ready for jaccl, which SAF does not offer yet (mlx_backend: ring)")),
    (macos_output("rdma_ctl-status.enabled.macos26-2.txt"), "", ("enabled, no RDMA device listed", "OK",
                                                                 "ready for jaccl, which SAF does not offer yet "
                                                                 "(mlx_backend: ring)")),
    ("rdma_ctl: operation not permitted", "", ("rdma_ctl status says 'rdma_ctl: operation not permitted'",
                                              "attention", "SAF does not know this answer; the ring backend does not "
                                              "depend on it")),
])
def test_rdma_over_thunderbolt_is_reported_and_never_stops_the_deploy(plan, caplog, status, devices, expected):
    alpha, rows = doctor(plan, caplog, {**converged_mac(**{"macos.MacMTU:en0": {"active": 9000, "setting": 9000}}),
                                        "rdma.RdmaThunderbolt": rdma_output(status.strip(), devices)})
    assert rows["RDMA over Thunderbolt"] == expected
    assert alpha.ops == []


def test_the_rdma_fact_asks_both_tools_and_reads_only_device_rows():
    from saf.facts.rdma import RdmaThunderbolt
    fact = RdmaThunderbolt()
    assert "rdma_ctl status" in fact.command() and "ibv_devices" in fact.command()
    text = rdma_output("enabled", macos_output("ibv_devices.m4-pro-mini.macos26-2.txt")).output
    assert fact.process(text.splitlines()) == {"rdma_ctl": "enabled", "devices": ["rdma_en2", "rdma_en3", "rdma_en4"]}
    assert fact.process([]) == {"rdma_ctl": "absent", "devices": []}


@pytest.mark.parametrize(("settings", "said"), [
    ({"ray_version": "2.52.0", "python_version": "3.11.2", "firewall": True}, "token auth and firewall"),
    ({"ray_version": "2.52.0", "python_version": "3.11.2"}, "token auth"),
    ({"firewall": True}, "firewall"),  # the default Ray (2.49.1) has no token auth
    ({"trusted_network": True}, "none: trusted network"),
])
def test_every_node_s_table_says_which_protection_is_in_force(plan, caplog, settings, said):
    converged = converged_mac(**{"macos.MacMTU:en0": {"active": 9000, "setting": 9000}})
    _, rows = doctor(plan, caplog, converged, cluster={**ONE_MAC, "settings": settings})
    found, verdict, fix = rows["Ray protection"]
    assert (found, verdict) == (said, "OK")  # the cluster file's own choice, shown; its validation judged it
    if said.startswith("none"):
        assert fix.startswith("nothing keeps others from Ray's job API, which runs any code sent to it: "
                              "trusted_network: true says no one else is on this network")


def test_a_debian_node_s_table_says_it_too(plan, caplog):
    facts = fresh_debian(**{"gpu.NvidiaGPUs": Raw(""), "network.LinuxInterfaces": Raw("[]"),
                            "server.Command:systemctl is-active saf-ray-head.service 2>/dev/null || true": "inactive"})
    _, rows = doctor(plan, caplog, facts, cluster=ONE_DEBIAN)
    assert rows["Ray protection"][:2] == ("firewall", "OK")
