"""The verification's judgement and its report: versions, slow nodes, the table and the files."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from saf.operations.stop import fail_host
from saf.verify import judgement, report
from saf.verify.node import transfer
from saf.verify.fact import ClusterVerification
from saf.verify.operation import verdict_commands
from saf.verify.placement import expectation, verification_host


def node(name, **values):
    base = {"name": name, "role": "worker", "ip": "10.0.0.1", "problems": [], "python": "3.9.23", "ray": "2.49.1",
            "mlx": "0.29.1", "mlx_correct": True, "hardware": "Apple M3 Ultra / gpu", "gflops_f32": 100.0}
    return {**base, **values}


PINS = {"pins": {"python": "3.9.23", "ray": "2.49.1", "mlx": "0.29.1"}}


def test_a_patch_level_python_mismatch_is_named():
    nodes = {"beta": node("beta", python="3.9.6")}
    judgement.check_versions(nodes, PINS)
    assert nodes["beta"]["problems"] == ["beta runs python 3.9.6, not the pinned 3.9.23"]


def test_wrong_mlx_results_are_named():
    nodes = {"beta": node("beta", mlx_correct=False)}
    judgement.check_versions(nodes, PINS)
    assert nodes["beta"]["problems"] == ["beta: MLX's matmul disagrees with NumPy's"]


def test_the_seeds_slow_beta_is_flagged_against_same_hardware_peers_only():
    nodes = {"alpha": node("alpha", gflops_f32=110.0), "beta": node("beta", gflops_f32=21.5),
             "gamma": node("gamma", gflops_f32=118.0), "delta": node("delta", gflops_f32=20.0, hardware="Apple M1 / gpu")}
    judgement.check_speed(nodes, 0.5)
    assert "beta is slow: 21.5 GFLOPS (f32) against a median of 114.0" in nodes["beta"]["problems"][0]
    assert nodes["alpha"]["problems"] == [] and nodes["gamma"]["problems"] == []
    assert nodes["delta"]["problems"] == []  # no peer of its hardware: nothing to compare with


def test_table_and_files(tmp_path):
    result = {"ok": False, "problems": [], "nodes": [
        {"name": "alpha", "role": "head", "hostname": "alpha", "python": "3.9.23", "ray": "2.49.1", "mlx": "0.29.1",
         "device": "gpu", "device_name": "Apple M3 Ultra (80-core GPU)", "gflops_f32": 5210.4, "size_f32": 4096,
         "batch_f32": 1, "gflops_f16": 9800.1, "size_f16": 8192, "batch_f16": 4, "mtu_path_ok": True,
         "gbit_s": None, "ok": True, "problems": []},
        {"name": "beta", "role": "worker", "gbit_s": 9.41, "link_gbit_s": 10.0, "ok": True, "problems": []},
        {"name": "gamma", "role": "worker", "ok": False, "problems": ["gamma (10.0.0.3) is not alive in the Ray cluster"]},
    ]}
    text = report.table(result)
    assert " 9.41 (10) " in text  # measured, beside the link speed
    assert text.splitlines()[0].split() == ["node", "role", "hostname", "python", "ray", "mlx", "device", "size",
                                            "f32/f16", "GFLOPS", "f32", "GFLOPS", "f16", "MTU", "path", "Gbit/s",
                                            "(link)", "verdict"]
    assert text.splitlines()[1].split()[6:14] == ["gpu", "Apple", "M3", "Ultra", "(80-core", "GPU)", "4096/8192x4",
                                                  "5210.4"]
    assert "FAIL" in text and "- gamma (10.0.0.3) is not alive" in text
    assert text.endswith("cluster verification FAILED (1 problems)")
    assert report.table({**result, "ok": True, "nodes": result["nodes"][:2]}).endswith("cluster verified: OK")
    assert report.table({"ok": True, "nodes": [], "problems": ["x"]}).endswith("FAILED (1 problems)")
    path = report.write(result, tmp_path)
    assert json.loads(path.read_text())["nodes"][2]["name"] == "gamma"
    assert (tmp_path / "latest.json").read_text() == path.read_text()


@pytest.mark.parametrize(("ray_version", "ray_auth", "firewall", "trusted", "said"), [
    ("2.52.0", "auto", True, False, "token auth and firewall"),
    ("2.52.0", "token", False, False, "token auth"),
    ("2.52.0", "off", True, False, "firewall"),  # off means off: the firewall alone
    ("2.49.1", "auto", True, False, "firewall"),  # a Ray without token auth
    ("2.49.1", "auto", False, True, "none: trusted network"),
])
def test_the_report_says_which_protection_is_in_force_in_its_table_and_json(tmp_path, ray_version, ray_auth,
                                                                             firewall, trusted, said):
    class Data:
        cluster_nodes, mtu, manage_mtu, verify_slow_ratio = NODES[:1], 1500, False, 0.5
        python_version, mlx_version, use_sudo, macos_service = "3.11.2", "0.29.1", True, "daemon"
        mlx_backend, mlx_ring_port, trusted_network = "ring", 7100, trusted
    Data.ray_version, Data.ray_auth, Data.firewall = ray_version, ray_auth, firewall
    observed = {"address": "1:6380", "nodes": [{"name": "alpha", "role": "head", "ip": "1", "alive": True}]}
    result = judgement.judge(observed, expectation(Data))
    assert result["protection"] == said
    text = report.table(result)
    assert f"\nRay protection: {said}\n" in text  # before the problems and the verdict line
    assert json.loads(report.write(result, tmp_path).read_text())["protection"] == said
    assert result["ok"] == judgement.judge(observed, {**expectation(Data), "protection": None})["ok"]  # not judged


def test_a_report_without_the_protection_says_nothing_of_it():
    assert "protection" not in report.table({"ok": True, "nodes": [], "problems": []})


class FakeState:
    def __init__(self, limit):
        self.limit_hosts = limit


class Named:
    def __init__(self, name):
        self.name = name


NODES = [{"name": "alpha", "role": "head", "ip": "1"}, {"name": "beta", "role": "worker", "ip": "2"},
         {"name": "gamma", "role": "worker", "ip": "3"}]


def test_verification_host_is_the_head_unless_the_run_is_limited_without_it():
    assert verification_host(FakeState(None), NODES) == "alpha"
    assert verification_host(FakeState([Named("gamma")]), NODES) == "gamma"
    assert verification_host(FakeState([Named("gamma"), Named("alpha")]), NODES) == "alpha"
    head_listed_second = [NODES[1], NODES[0], NODES[2]]
    assert verification_host(FakeState(None), head_listed_second) == "alpha"
    assert verification_host(FakeState([Named("delta")]), NODES) == ""  # no node of this cluster in the run


def test_expectation_covers_the_whole_cluster():
    class Data:
        cluster_nodes = NODES
        python_version, ray_version, mlx_version = "3.9.23", "2.49.1", "0.29.1"
        mtu, manage_mtu, verify_slow_ratio = 9000, True, 0.5
        use_sudo, macos_service = True, "daemon"
        mlx_backend, mlx_ring_port = "ring", 7100
        ray_auth, firewall, trusted_network = "auto", True, False
    expected = expectation(Data)
    census = [node.pop("census") for node in expected["nodes"]]
    assert expected == {"nodes": NODES, "pins": {"python": "3.9.23", "ray": "2.49.1", "mlx": "0.29.1"},
                        "mtu": 9000, "slow_ratio": 0.5, "collective": {"backend": "ring", "port": 7100},
                        "protection": "firewall"}
    assert expectation(Data)["nodes"][0] is not NODES[0]  # a copy: the driver's JSON, not host data
    # each node is told what to print for the stray check, by its role: the head's launchd job is the head's
    assert census[0]["darwin"]["job"] == "launchctl print system/org.saf.ray-head 2>/dev/null || true"
    assert census[1]["darwin"]["job"] == "launchctl print system/org.saf.ray-worker 2>/dev/null || true"
    assert census[1]["linux"] == {"ps": "ps -A -ww -o user= -o pid= -o ppid= -o unit= -o uunit= -o args=",
                                  "listeners": "ss -Hltnp"}
    assert census[1]["darwin"] == {"ps": "ps -A -ww -o user= -o pid= -o ppid= -o args=",
                                   "listeners": "lsof -iTCP -sTCP:LISTEN -n -P",
                                   "job": "launchctl print system/org.saf.ray-worker 2>/dev/null || true"}

    class Agent(Data):
        macos_service = "agent"
    assert expectation(Agent)["nodes"][0]["census"]["darwin"]["job"].startswith("launchctl print gui/$(id -u)/")

    class Unmanaged(Data):
        manage_mtu = False
    assert expectation(Unmanaged)["mtu"] == 1500  # interfaces left alone: only standard frames are owed


IFCONFIG = """lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 16384
\tinet 127.0.0.1 netmask 0xff000000
en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 9000
\tether 3c:a6:f6:12:34:56
\tinet 192.168.1.172 netmask 0xffffff00 broadcast 192.168.1.255
\tmedia: autoselect (10Gbase-T <full-duplex>)
\tstatus: active
en2: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500
\tinet 192.168.2.5 netmask 0xffffff00 broadcast 192.168.2.255
\tmedia: autoselect (1000baseT <full-duplex>)
utun4: flags=8051<UP,POINTOPOINT,RUNNING,MULTICAST> mtu 1280
\tinet 100.106.170.128 --> 100.106.170.128 netmask 0xffffffff
"""


def test_link_speed_is_read_from_the_interface_carrying_the_ip():
    assert transfer.speed_from_ifconfig(IFCONFIG, "192.168.1.172") == 10.0
    assert transfer.speed_from_ifconfig(IFCONFIG, "192.168.2.5") == 1.0
    assert transfer.speed_from_ifconfig(IFCONFIG, "100.106.170.128") is None  # a tunnel has no media line
    assert transfer.speed_from_ifconfig(IFCONFIG, "192.168.1.17") is None  # a prefix of another address
    ip_json = '[{"ifname":"lo","addr_info":[{"local":"127.0.0.1"}]},{"ifname":"eth0","addr_info":[{"local":"10.77.0.12"}]}]'
    assert transfer.interface_of(ip_json, "10.77.0.12") == "eth0" and transfer.interface_of(ip_json, "10.77.0.1") is None


GOLDEN = """\
node   role    hostname  python  ray     mlx     device                            size f32/f16  GFLOPS f32  GFLOPS f16  MTU path  Gbit/s (link)  verdict
alpha  head    alpha     3.9.23  2.49.1  0.29.1  gpu Apple M3 Ultra (80-core GPU)  4096/8192x4   5210.4      9800.1      ok        -              OK
beta   worker  beta      3.9.23  2.49.1  0.29.1  cpu                               2048x2/2048   3.1         1.2         FAIL      9.41           FAIL
gamma  worker  -         -       -       -       -                                 -/-           -           -           -         -              FAIL
  - the head could not reach gamma
  - beta: slow
  - gamma (10.0.0.3) is not alive
cluster verification FAILED (3 problems)"""


def test_the_table_reads_exactly_so():
    nodes = [
        {"name": "alpha", "role": "head", "hostname": "alpha", "python": "3.9.23", "ray": "2.49.1", "mlx": "0.29.1",
         "device": "gpu", "device_name": "Apple M3 Ultra (80-core GPU)", "size_f32": 4096, "batch_f32": 1,
         "gflops_f32": 5210.4, "size_f16": 8192, "batch_f16": 4, "gflops_f16": 9800.1, "mtu_path_ok": True,
         "ok": True, "problems": []},
        {"name": "beta", "role": "worker", "hostname": "beta", "python": "3.9.23", "ray": "2.49.1", "mlx": "0.29.1",
         "device": "cpu", "size_f32": 2048, "batch_f32": 2, "gflops_f32": 3.1, "size_f16": 2048, "gflops_f16": 1.2,
         "mtu_path_ok": False, "gbit_s": 9.41, "link_gbit_s": None, "ok": False, "problems": ["beta: slow"]},
        {"name": "gamma", "role": "worker", "ok": False, "problems": ["gamma (10.0.0.3) is not alive"]},
    ]
    assert report.table({"ok": False, "nodes": nodes, "problems": ["the head could not reach gamma"]}) == GOLDEN
    assert report.table({"ok": False}).splitlines()[1:] == ["cluster verification FAILED (0 problems)"]


def test_the_report_files_are_sorted_indented_json_named_by_utc_time(tmp_path):
    directory = tmp_path / "a" / "reports"
    first = report.write({"ok": True, "nodes": [], "problems": []}, directory)
    text = first.read_text()
    assert re.fullmatch(r"\d{8}T\d{6}Z\.json", first.name)
    stamp = datetime.strptime(first.stem, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 60  # UTC, not local time
    written = json.loads(text)
    assert written == {"ok": True, "nodes": [], "problems": [], "generated_at": first.stem}
    assert text == json.dumps(written, indent=2, sort_keys=True) + "\n"
    again = report.write({"ok": False, "nodes": [], "problems": ["x"]}, directory)  # the folder exists: fine
    assert (directory / "latest.json").read_text() == again.read_text()


def test_the_fact_keeps_the_end_of_what_the_driver_printed_when_there_is_no_report():
    lines = [f"line {n}" for n in range(1, 8)] + ["x" * 900]
    observed = ClusterVerification().process(lines)
    assert observed["nodes"] == []
    [problem] = observed["problems"]
    assert problem == "the verification printed no report: " + " | ".join(
        ["line 4", "line 5", "line 6", "line 7", "x" * 900])[:800]
    assert ClusterVerification.default() == {
        "nodes": [], "problems": ["the verification printed nothing (is the venv there?)"]}


def test_a_failed_cluster_fails_the_host_with_every_problem_in_order():
    failed = {"ok": False, "problems": ["c"], "nodes": [{"problems": ["a", "b"]}]}
    [command] = verdict_commands(failed)
    assert command.function is fail_host and command.kwargs == {}
    assert command.args == ("cluster verification failed: c; a; b",)
    assert verdict_commands({"ok": True, "problems": [], "nodes": [{"problems": []}]}) == []


def test_the_steps_line_follows_the_driver_s_order_and_is_left_out_without_steps():
    steps = {"connect": 2.04, "paths": 0.35, "transfers": 4.0, "probes": 7.96}
    lines = report.table({"ok": True, "nodes": [], "step_seconds": steps}).splitlines()
    assert lines[-2] == "steps: connect 2.0 s | paths 0.3 s | transfers 4.0 s | probes 8.0 s"
    assert not any(line.startswith("steps:") for line in report.table({"ok": True, "nodes": []}).splitlines())
