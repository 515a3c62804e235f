"""Where the verification runs (the head in a full run, the limited node in a --limit run), and
what its operation does when the run executes: nothing on a sound cluster, the host failed with
every problem named otherwise."""

from __future__ import annotations

import json

from pyinfra.api import Config, FunctionCommand, Inventory, State
from pyinfra.context import ctx_host, ctx_state

from saf.operations.stop import fail_host
from saf.verify.fact import MARKER, ClusterVerification
from saf.verify.judgement import NOTHING_OBSERVED
from saf.verify.operation import cluster_verified
from tests.facts import converged_mac

THREE = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"},
                   {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"},
                   {"name": "gamma", "role": "worker", "address": "192.168.1.43", "ssh_user": "arthurdell"}]}


def mac(name: str):
    ip = {"alpha": "192.168.1.172", "beta": "192.168.1.42", "gamma": "192.168.1.43"}[name]
    return converged_mac(role="head" if name == "alpha" else "worker", ip=ip)


def verify_ops(host_plan):
    return [op for op in host_plan.ops if op.name.startswith("tasks/verify.py")]


def test_full_run_verifies_from_the_head_only_and_changes_nothing(plan):
    plans = plan({name: mac(name) for name in ("alpha", "beta", "gamma")}, cluster=THREE)
    [op] = verify_ops(plans["alpha"])
    assert op.name == "tasks/verify.py | Verify the cluster (MLX on every node, versions, network)"
    assert verify_ops(plans["beta"]) == [] and verify_ops(plans["gamma"]) == []
    assert all(host_plan.changing_ops == [] for host_plan in plans.values())


def test_verify_after_deploy_false_leaves_the_verification_out_and_nothing_else(plan):
    without = {**THREE, "settings": {"verify_after_deploy": False}}
    plans = plan({name: mac(name) for name in ("alpha", "beta", "gamma")}, cluster=without)
    assert verify_ops(plans["alpha"]) == []
    full = plan({name: mac(name) for name in ("alpha", "beta", "gamma")}, cluster=THREE)
    assert [op.name for op in plans["alpha"].ops] == [op.name for op in full["alpha"].ops if op not in verify_ops(full["alpha"])]


def test_limited_run_verifies_from_the_limited_node(plan):
    plans = plan({"gamma": mac("gamma")}, cluster=THREE, limit=["gamma"])
    assert list(plans) == ["gamma"]
    assert len(verify_ops(plans["gamma"])) == 1


EXPECT = {"nodes": [{"name": n["name"], "role": n["role"], "ip": n["address"]} for n in THREE["nodes"]],
          "pins": {"python": "3.9.23", "ray": "2.49.1", "mlx": "0.29.1"}, "mtu": 9000, "slow_ratio": 0.5}


def mac_probe(name: str, device: str = "gpu") -> dict:
    """What the driver observes on a Mac Studio whose MLX computed on ``device``."""
    [node] = [n for n in EXPECT["nodes"] if n["name"] == name]
    peers = [n["ip"] for n in EXPECT["nodes"] if n["name"] != name]
    return {**node, "alive": True, "hostname": name, **EXPECT["pins"], "os": "darwin", "nvidia_smi": False,
            "mlx_cuda": False, "device": device, "device_name": "Apple M3 Ultra (80-core GPU)",
            "hardware": f"Apple M3 Ultra (80-core GPU) / {device}", "mlx_correct": True,
            "gflops_f32": 26000.0 if device == "gpu" else 900.0, "size_f32": 8192, "batch_f32": 1,
            "gflops_f16": 30000.0 if device == "gpu" else 500.0, "size_f16": 8192, "batch_f16": 1,
            "paths": {ip: {"ok": True, "largest": 8972, "headers": 28} for ip in peers},
            "transfer": {"mb": 64, "seconds": 0.1, "sent": "d", "received": "d"}, "gbit_s": 9.4, "link_gbit_s": 10.0}


def executed(driver_output: list[str], tmp_path) -> list:
    """The verification operation run as pyinfra runs it once every host is ready, its fact
    answered by the driver's output (parsed by the fact itself); the commands it yields."""
    inventory = Inventory((["alpha"], {}))
    state = State(inventory, Config())
    state.is_executing = True
    host = inventory.get_host("alpha")
    host.get_fact = lambda fact, **arguments: fact().process(driver_output)
    with ctx_state.use(state), ctx_host.use(host):
        return list(cluster_verified._inner(python="/Users/arthurdell/saf/venv/current/bin/python",
                                            address="192.168.1.172:6380", expect=EXPECT, timeout=120,
                                            reports_dir=str(tmp_path)))


def driver_output(nodes: list[dict]) -> list[str]:
    return ["some ray warning", MARKER + json.dumps({"address": "192.168.1.172:6380", "nodes": nodes, "problems": []})]


def test_executed_on_a_sound_cluster_it_runs_nothing_and_writes_the_report(tmp_path):
    assert executed(driver_output([mac_probe(n) for n in ("alpha", "beta", "gamma")]), tmp_path) == []
    assert json.loads((tmp_path / "latest.json").read_text())["ok"] is True


def test_executed_with_a_mac_on_its_cpu_it_fails_the_host_naming_that_node(tmp_path):
    nodes = [mac_probe("alpha"), mac_probe("beta", device="cpu"), mac_probe("gamma")]
    [command] = executed(driver_output(nodes), tmp_path)
    assert isinstance(command, FunctionCommand) and command.function is fail_host
    [reason] = command.args
    assert reason.startswith("cluster verification failed: beta: MLX computed on the CPU, not the Mac's GPU")
    report = json.loads((tmp_path / "latest.json").read_text())
    assert report["ok"] is False and [n["ok"] for n in report["nodes"]] == [True, False, True]


def test_executed_with_a_report_of_nothing_it_fails_the_host_saying_so(tmp_path):
    [command] = executed(driver_output([]), tmp_path)
    assert command.function is fail_host
    assert command.args == ("cluster verification failed: " + NOTHING_OBSERVED,)
    assert json.loads((tmp_path / "latest.json").read_text())["problems"] == [NOTHING_OBSERVED]


def test_executed_without_a_report_it_fails_the_host(tmp_path):
    [command] = executed(["Traceback (most recent call last):", "ModuleNotFoundError: No module named 'ray'"],
                         tmp_path)
    assert "the verification printed no report" in command.args[0] and "No module named 'ray'" in command.args[0]
    assert ClusterVerification.default()["nodes"] == []
