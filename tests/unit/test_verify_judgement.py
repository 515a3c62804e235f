"""The verification's judgement, end to end from the driver: saf/verify/node/driver.py's ``observe_cluster``
against a stand-in for Ray that answers each placed task with crafted node results, then
saf/verify/judgement.py on what it observed. What is asserted is what a user reads: which node
fails, why, and whether the cluster is verified.
"""

from __future__ import annotations

import signal
import time
from types import SimpleNamespace

import pytest

from saf.operations.stop import fail_host
from saf.spec import load_defaults
from saf.verify import judgement, strays
from saf.verify.fact import ClusterVerification
from saf.verify.node import census, driver, measure, ring
from saf.verify.operation import verdict_commands
from tests.conftest import PROJECT_DIR
from tests.fixtures import linux_output, macos_output
from tests.unit.bounded import bounded  # noqa: F401 - autouse: every test here is time-bounded

PINS = {"python": "3.11.2", "ray": "2.49.1", "mlx": "0.29.1"}
NODES = [{"name": "alpha", "role": "head", "ip": "10.0.0.1"}, {"name": "beta", "role": "worker", "ip": "10.0.0.2"},
         {"name": "gamma", "role": "worker", "ip": "10.0.0.3"}]


SETTINGS = SimpleNamespace(**load_defaults(PROJECT_DIR))


def expectation(slow_ratio: float = 0.5, nodes=NODES, collective: bool = True) -> dict:
    return {"nodes": [{**node, "census": strays.census_commands(node["role"], SETTINGS)} for node in nodes],
            "pins": dict(PINS), "mtu": 9000, "slow_ratio": slow_ratio,
            **({"collective": {"backend": "ring", "port": 6390}} if collective else {})}


def rank_result(rank: int, size: int = 3, seconds: float | dict = 0.01, **values) -> dict:
    """A rank's answer to collective_rank: joined a group of ``size``, all_sum right, each size in ``seconds``."""
    timed = seconds if isinstance(seconds, dict) else {str(mb): seconds * mb for mb in ring.COLLECTIVE_REPEATS}
    return {"rank": rank, "size": size, "sums": [size * (size + 1) / 2] * 4, "seconds": timed,
            "ends": {str(mb): [float(size)] * 2 for mb in ring.COLLECTIVE_REPEATS}, **values}


LATE = object()  # a task that never finishes: ray.wait leaves it pending


def probe(name: str, **values) -> dict:
    """A node's answer to node_probe: a sound Linux CPU node unless told otherwise."""
    return {"hostname": name, **PINS, "os": "linux", "nvidia_smi": False, "mlx_cuda": False, "device": "cpu",
            "device_name": "AMD EPYC", "hardware": "AMD EPYC / cpu", "mlx_correct": True,
            "gflops_f32": 100.0, "size_f32": 512, "batch_f32": 1, "gflops_f16": 50.0, "size_f16": 512,
            "batch_f16": 1, **values}


class Strategy:
    """Stands for ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy."""

    def __init__(self, node_id: str, soft: bool) -> None:
        self.node_id, self.soft = node_id, soft


class GetTimeoutError(Exception):
    pass


class FakeRay:
    """Ray as the driver uses it. Each node runs what is pinned to it: ``answers[name]`` may hold
    ``node_probe`` (a dict, or an exception to raise), ``paths`` and ``digest`` (of a received object)."""

    exceptions = SimpleNamespace(GetTimeoutError=GetTimeoutError)
    util = SimpleNamespace(scheduling_strategies=SimpleNamespace(NodeAffinitySchedulingStrategy=Strategy))

    def __init__(self, answers: dict, down: tuple = (), twice: dict | None = None) -> None:
        self.answers, self.down = answers, down
        self.twice = dict(twice or {})  # node name: how many more nodes() calls show a second id at its ip
        self.placed: list[tuple[str, str, bool]] = []  # (what, node name, soft)
        self.census_commands: dict[str, dict] = {}
        self.killed = 0
        self.killed_kinds: set = set()
        self.cancelled: list = []
        self.ranks: dict[str, tuple] = {}  # node name: the collective_rank arguments it got
        self.reach: dict[str, tuple] = {}  # node name: (its ip, its ring port, the peers it tried)
        self.options: list[dict] = []  # ray.remote's options, in order

    def init(self, **options) -> None:
        self.init_options = options

    def nodes(self) -> list[dict]:
        seen = [{"NodeManagerAddress": n["ip"], "NodeID": f"id-{n['name']}", "Alive": True}
                for n in NODES if n["name"] not in self.down]
        for name, calls in self.twice.items():  # listed after the live one, as a restarted raylet's
            self.twice[name] = calls - 1
            ip = next(n["ip"] for n in NODES if n["name"] == name)
            seen.append({"NodeManagerAddress": ip, "NodeID": f"id-{name}-dead", "Alive": calls > 0})
        return seen

    def remote(self, **options):
        def wrap(target):
            self.options.append({"target": target.__name__, **options})
            return Remote(self, target)
        return wrap

    def get(self, ref, timeout=None):
        if isinstance(ref.value, Exception):
            raise ref.value
        return ref.value

    def wait(self, refs: list, num_returns: int, timeout: float):
        return [r for r in refs if r.value is not LATE], [r for r in refs if r.value is LATE]

    def cancel(self, ref, force: bool = False) -> None:
        self.cancelled.append((ref, force))

    def kill(self, actor) -> None:
        self.killed += 1
        self.killed_kinds.add((actor.kind, actor.node))

    def run_on(self, node: str, what: str, args: tuple):
        answers = self.answers.get(node, {})
        if what == "node_probe":
            answer = answers.get("node_probe", probe(node))
            return answer.pop(0) if isinstance(answer, list) else answer  # a list: one answer per probe
        if what == "hardware_label":
            return answers.get("hardware_label")  # none said: each node finds its own sizes
        if what == "path_probe":
            peers, mtu = args
            return answers.get("paths", {ip: {"ok": True, "largest": mtu - 28, "headers": 28} for ip, _ in peers})
        if what == "make_payload":
            return "payload"
        if what == "checksum":
            return answers.get("digest", "d1gest")
        if what == "tcp_send":
            return {"bytes": 2_500_000_000, "seconds": 2.0}
        if what == "link_speed_gbit":
            return 10.0
        if what == "ray_census":
            (commands,) = args
            self.census_commands[node] = commands
            return answers.get("census", {"os": "linux", "ps": "", "listeners": ""})
        if what == "ring_reach":
            ip, port, peers = args
            self.reach[node] = (ip, port, [name for name, _, _ in peers])
            return {"taken": answers.get("ring_taken", ""),
                    "unreachable": [name for name, _, _ in peers if name in answers.get("unreachable", ())]}
        if what == "collective_rank":
            self.ranks[node] = args
            return answers.get("rank", rank_result(args[0], len(args[1])))
        raise AssertionError(f"unexpected task {what}")


class Ref:
    def __init__(self, value) -> None:
        self.value = value


class Remote:
    def __init__(self, ray: FakeRay, target, strategy: Strategy | None = None) -> None:
        self.ray, self.target, self.strategy = ray, target, strategy

    def options(self, scheduling_strategy: Strategy) -> "Remote":
        return Remote(self.ray, self.target, scheduling_strategy)

    def remote(self, *args):
        node = self.strategy.node_id.removeprefix("id-")
        self.ray.placed.append((self.target.__name__, node, self.strategy.soft))
        if isinstance(self.target, type):
            return Actor(self.ray, node, self.target.__name__)
        return Ref(self.ray.run_on(node, self.target.__name__, args))


class Actor:
    """An actor on a node: a NodeAgent listens on a port and counts what a sender pushed; any other
    method (the agent's node_probe, its collective_rank) runs like that task there."""

    def __init__(self, ray: FakeRay, node: str, kind: str = "") -> None:
        self.ray, self.node, self.kind = ray, node, kind
        self.udp_listen = self.tcp_listen = SimpleNamespace(remote=lambda ip: Ref(40000))
        self.received_bytes = SimpleNamespace(remote=lambda: Ref(2_500_000_000))

    def __getattr__(self, name: str):
        def remote(*args):
            self.ray.placed.append((name, self.node, False))  # on its actor's node, pinned hard
            return Ref(self.ray.run_on(self.node, name, args))
        return SimpleNamespace(remote=remote)


def verify(answers: dict | None = None, down: tuple = (), timeout: float = 30, twice: dict | None = None,
           driver_pids: tuple | None = None, **expect) -> tuple[dict, FakeRay]:
    ray = FakeRay(answers or {}, down, twice)
    observed = driver.observe_cluster("10.0.0.1:6380", expectation(**expect), timeout, ray=ray)
    if driver_pids is not None:
        observed["driver_pids"] = list(driver_pids)
    check = strays.stray_check(SETTINGS, "alpha", observed["driver_pids"])  # alpha drives, as the head does
    return judgement.judge(observed, expectation(**expect), check), ray


def problems_of(report: dict, name: str) -> list[str]:
    return next(node["problems"] for node in report["nodes"] if node["name"] == name)


def test_a_sound_cluster_is_verified_and_every_task_is_pinned_hard_to_its_node():
    report, ray = verify()
    assert report["ok"] is True and judgement.passed(report) and judgement.problems(report) == []
    assert all(node["ok"] and node["mtu_path_ok"] for node in report["nodes"])
    assert {(what, node) for what, node, _ in ray.placed if what == "node_probe"} == {
        ("node_probe", "alpha"), ("node_probe", "beta"), ("node_probe", "gamma")}
    assert ray.placed and all(soft is False for _, _, soft in ray.placed)  # a soft affinity may run it elsewhere
    assert ray.init_options == {"address": "10.0.0.1:6380", "logging_level": "ERROR", "log_to_driver": False}
    assert ray.killed_kinds == {("NodeAgent", node) for node in ("alpha", "beta", "gamma")}  # every actor started
    assert [t["to"] for t in report["transfer"]] == ["beta", "gamma"] and all(t["intact"] for t in report["transfer"])
    beta = report["nodes"][1]
    assert beta["gbit_s"] == 10.0 and beta["link_gbit_s"] == 10.0


def test_an_object_that_arrives_altered_fails_its_node():
    report, _ = verify({"gamma": {"digest": "0ther"}})
    assert problems_of(report, "gamma") == ["an object sent from alpha to gamma arrived altered"]
    assert report["transfer"][1]["intact"] is False
    assert report["ok"] is False and not judgement.passed(report)


def test_a_node_that_is_not_alive_fails_by_name_and_so_does_the_cluster():
    report, ray = verify(down=("gamma",), timeout=2)  # the driver waits timeout/2 for it to join
    assert problems_of(report, "gamma")[0].startswith("gamma (10.0.0.3) is not alive in the Ray cluster at 10.0.0.1:6380")
    assert report["ok"] is False and problems_of(report, "beta") == []
    assert ("node_probe", "gamma") not in {(what, node) for what, node, _ in ray.placed}


def test_without_its_head_the_cluster_fails_with_a_cluster_problem():
    report, _ = verify(down=("alpha",), timeout=2)
    assert "the head is not alive: no transfer or throughput check" in report["problems"]
    assert report["ok"] is False


def test_a_job_that_times_out_or_fails_is_named():
    report, _ = verify({"beta": {"node_probe": GetTimeoutError()}, "gamma": {"node_probe": RuntimeError("no mlx\nmore")}})
    assert problems_of(report, "beta") == ["beta: did not run its MLX job within 30 s"]
    assert problems_of(report, "gamma") == ["gamma: the MLX job failed: no mlx"]


def test_the_slow_ratio_of_the_cluster_file_is_used():
    answers = {"gamma": {"node_probe": probe("gamma", gflops_f32=80.0)}}
    assert verify(answers, slow_ratio=0.5)[0]["ok"] is True
    report, _ = verify(answers, slow_ratio=0.9)
    assert problems_of(report, "gamma") == ["gamma is slow: 80.0 GFLOPS (f32) against a median of 100.0 on its peers "
                                            "of the same hardware (thermals, background load, power settings?)"]


def test_slowness_is_measured_against_the_median_of_peers_not_the_slowest():
    nodes = {name: {"name": name, "problems": [], "hardware": "M3 Ultra / gpu", "gflops_f32": figure}
             for name, figure in (("a", 100.0), ("b", 100.0), ("c", 30.0), ("d", 45.0))}
    judgement.check_speed(nodes, 0.5)
    assert [p.split(":")[0] for p in nodes["d"]["problems"]] == ["d is slow"]  # 45 < 0.5 x 100, not < 0.5 x 30
    assert nodes["a"]["problems"] == [] and nodes["b"]["problems"] == []


def test_float16_is_judged_too():
    report, _ = verify({"beta": {"node_probe": probe("beta", gflops_f16=10.0)}})
    assert problems_of(report, "beta") == ["beta is slow: 10.0 GFLOPS (f16) against a median of 50.0 on its peers of "
                                           "the same hardware (thermals, background load, power settings?)"]


@pytest.mark.parametrize("dtype, figure", [("f32", 0.04), ("f16", 0.0), ("f16", None)])
def test_a_figure_that_rounds_to_zero_fails(dtype, figure):
    report, _ = verify({"beta": {"node_probe": probe("beta", **{f"gflops_{dtype}": figure})}})
    assert any(p.startswith(f"beta measured {figure} GFLOPS in {dtype}") for p in problems_of(report, "beta"))
    assert report["ok"] is False


def test_a_mac_that_computed_on_its_cpu_fails_by_name_with_the_cause():
    mac = dict(os="darwin", device_name="Apple M3 Ultra", hardware="Apple M3 Ultra / cpu")
    report, _ = verify({"beta": {"node_probe": probe("beta", device="cpu", **mac)},
                        "gamma": {"node_probe": probe("gamma", device="gpu", **mac)}})
    [problem] = problems_of(report, "beta")
    assert problem.startswith("beta: MLX computed on the CPU, not the Mac's GPU: Metal was not available")
    assert "mx.metal.is_available()" in problem
    assert problems_of(report, "gamma") == [] and report["nodes"][2]["expected_device"] == "gpu"


def test_a_cuda_node_on_its_cpu_fails_and_a_plain_linux_cpu_does_not():
    cuda = dict(nvidia_smi=True, mlx_cuda=True)
    report, _ = verify({"beta": {"node_probe": probe("beta", **cuda)},
                        "gamma": {"node_probe": probe("gamma", nvidia_smi=True, mlx_cuda=False)}})
    assert problems_of(report, "beta")[0].startswith("beta: MLX computed on the CPU although the node has an NVIDIA GPU")
    assert problems_of(report, "gamma") == [] and report["nodes"][2]["expected_device"] == "cpu"


def test_a_path_that_drops_jumbo_frames_names_the_pair_and_the_largest_payload():
    paths = {"10.0.0.2": {"ok": False, "largest": 1472, "headers": 28}, "10.0.0.3": {"ok": True, "largest": 8972,
                                                                                      "headers": 28}}
    report, _ = verify({"alpha": {"paths": paths}})
    assert problems_of(report, "alpha") == [
        "9000-byte frames do not pass from alpha to beta (10.0.0.2): the largest don't-fragment payload that passes "
        "is 1472 bytes (an MTU of 1500 on the way); check the MTU of both nodes' interfaces and of the switch ports "
        "between them"]
    assert report["nodes"][0]["mtu_path_ok"] is False and report["nodes"][1]["mtu_path_ok"] is True


def test_a_path_with_no_datagram_at_all_says_so():
    report, _ = verify({"beta": {"paths": {"10.0.0.1": {"ok": False, "largest": None, "headers": 28}}}})
    assert "no UDP datagram passes at all" in problems_of(report, "beta")[0]


def test_versions_other_than_the_pins_are_named():
    report, _ = verify({"beta": {"node_probe": probe("beta", python="3.11.9", mlx_correct=False)}})
    assert problems_of(report, "beta") == ["beta runs python 3.11.9, not the pinned 3.11.2",
                                           "beta: MLX's matmul disagrees with NumPy's"]


def test_a_missing_or_unreadable_report_is_a_failure():
    fact = ClusterVerification()
    for observed in (fact.default(), fact.process(["Traceback (most recent call last):", "ImportError: ray"])):
        report = judgement.judge(observed, expectation())
        assert report["ok"] is False and not judgement.passed(report) and judgement.problems(report)
    assert "ImportError: ray" in judgement.problems(judgement.judge(fact.process(["ImportError: ray"]),
                                                                     expectation()))[0]
    assert not judgement.passed({})
    assert not judgement.passed({"ok": True, "problems": ["x"], "nodes": []})
    assert not judgement.passed({"ok": True, "nodes": [{"problems": ["y"]}]})
    assert judgement.passed({"ok": True, "nodes": [{"problems": []}], "problems": []})


def test_a_report_that_fails_always_says_why():
    silent = judgement.judge({"nodes": [], "problems": []}, expectation())  # a driver that observed nothing
    assert not judgement.passed(silent) and judgement.problems(silent) == [judgement.NOTHING_OBSERVED]
    assert judgement.failure_reasons(silent) == [judgement.NOTHING_OBSERVED]
    for unnamed in ({}, {"ok": False, "nodes": [], "problems": []}, {"ok": False, "nodes": [{"problems": []}]}):
        assert judgement.failure_reasons(unnamed) == [judgement.UNNAMED_FAILURE]
    named = {"ok": False, "problems": ["c1"], "nodes": [{"problems": ["a1"]}]}
    assert judgement.failure_reasons(named) == ["c1", "a1"]
    assert judgement.failure_reasons({"ok": True, "nodes": [{"problems": []}], "problems": []}) == []


def test_problems_are_listed_cluster_first_then_node_by_node():
    report = {"problems": ["c1"], "nodes": [{"problems": ["a1", "a2"]}, {"problems": []}, {"problems": ["g1"]}]}
    assert judgement.problems(report) == ["c1", "a1", "a2", "g1"]


def test_a_report_that_fails_without_a_problem_fails_the_host_with_a_reason():
    for unnamed in ({"ok": False, "nodes": [], "problems": []}, {"ok": False, "nodes": [{"name": "a", "problems": []}]}):
        [command] = verdict_commands(unnamed)
        assert command.function is fail_host
        assert command.args == ("cluster verification failed: " + judgement.UNNAMED_FAILURE,)
    assert verdict_commands({"ok": True, "nodes": [{"name": "a", "problems": []}], "problems": []}) == []


def driver_main(monkeypatch, capsys, run, *timeout: str) -> dict:
    """driver.main() with ``run`` in place of ``observe_cluster``; what the fact reads from its output."""
    monkeypatch.setattr(driver, "observe_cluster", run)
    monkeypatch.setattr("sys.argv", ["driver.py", "--address", "10.0.0.1:6380", "--expect", '{"mtu": 9000}', *timeout])
    driver.main()
    return ClusterVerification().process(capsys.readouterr().out.splitlines())


def test_the_driver_prints_its_observations_for_the_fact(capsys, monkeypatch):
    seen = {}

    def run(address, expect, timeout):
        seen.update(expect=expect, timeout=timeout, alarm=signal.getitimer(signal.ITIMER_REAL)[0])
        return {"address": address, "nodes": [], "problems": []}

    assert driver_main(monkeypatch, capsys, run, "--timeout", "10") == {
        "address": "10.0.0.1:6380", "nodes": [], "problems": []}
    assert seen["expect"] == {"mtu": 9000} and seen["timeout"] == 10.0
    assert 80 < seen["alarm"] <= 90  # the whole run is bounded: three timeouts and a minute
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # and the bound is lifted once it is done
    driver_main(monkeypatch, capsys, run)
    assert seen["timeout"] == 120.0


def test_a_driver_out_of_time_or_failing_still_prints_why(capsys, monkeypatch):
    def hangs(address, expect, timeout):
        signal.getsignal(signal.SIGALRM)(signal.SIGALRM, None)  # as if the alarm rang

    observed = driver_main(monkeypatch, capsys, hangs, "--timeout", "10")
    assert observed == {"nodes": [], "problems": ["the verification did not finish within 90 s"]}

    def breaks(address, expect, timeout):
        raise RuntimeError("cannot reach the GCS\nsecond line")

    observed = driver_main(monkeypatch, capsys, breaks, "--timeout", "10")
    assert observed == {"nodes": [], "problems": [
        "the verification driver failed: RuntimeError: cannot reach the GCS\nsecond line"]}


def observed(*nodes: dict) -> dict:
    return {"address": "10.0.0.1:6380", "nodes": list(nodes), "problems": []}


def seen(name: str, **values) -> dict:
    """A node as the driver reports it after a sound run, with ``values`` changed."""
    [node] = [n for n in NODES if n["name"] == name]
    peers = [n["ip"] for n in NODES if n["name"] != name]
    return {**node, "alive": True, **probe(name),
            "paths": {ip: {"ok": True, "largest": 8972, "headers": 28} for ip in peers}, **values}


def test_a_path_check_or_transfer_that_broke_off_is_named():
    report = judgement.judge(observed(seen("alpha"), seen("beta", transfer_error="ObjectLostError: gone"),
                                      seen("gamma", path_error="GetTimeoutError")), expectation())
    assert problems_of(report, "beta") == ["transfer alpha -> beta failed: ObjectLostError: gone"]
    assert problems_of(report, "gamma") == ["gamma: the path check did not finish (GetTimeoutError)"]
    assert [n.get("mtu_path_ok") for n in report["nodes"]] == [True, True, False]


def test_the_transfer_record_says_what_moved_and_how_fast():
    moved = {"mb": 64, "seconds": 0.31, "sent": "d", "received": "d"}
    report = judgement.judge(observed(seen("alpha"), seen("beta", transfer=moved)), expectation(nodes=NODES[:2]))
    assert report["transfer"] == [{"from": "alpha", "to": "beta", "mb": 64, "seconds": 0.31, "intact": True}]


def test_a_node_that_ran_nothing_does_not_stop_the_others_being_judged():
    mac_on_cpu = dict(os="darwin", device="cpu", python="3.9.6")
    down = {**NODES[0], "alive": False}
    report = judgement.judge(observed(down, seen("beta", path_error="X"), seen("gamma", **mac_on_cpu)),
                             expectation())
    gamma = problems_of(report, "gamma")
    assert gamma[0] == "gamma runs python 3.9.6, not the pinned 3.11.2"
    assert gamma[1].startswith("gamma: MLX computed on the CPU, not the Mac's GPU")
    report = judgement.judge(observed(down, seen("beta", paths={}), seen("gamma", gflops_f16=0.0)), expectation())
    assert problems_of(report, "gamma") == [
        "gamma measured 0.0 GFLOPS in f16: MLX's matmul gave no throughput (see the node's MLX installation)"]


def test_a_small_but_real_figure_is_not_zero():
    report, _ = verify({name: {"node_probe": probe(name, gflops_f32=0.4, gflops_f16=0.9)} for name in ("alpha", "beta", "gamma")})
    assert report["ok"] is True


def test_a_path_with_no_datagram_at_all_reads_so():
    report = judgement.judge(observed(seen("alpha", paths={"10.0.0.9": {"ok": False, "largest": None, "headers": 28}})),
                             expectation(nodes=NODES[:1]))
    assert problems_of(report, "alpha") == [
        "9000-byte frames do not pass from alpha to 10.0.0.9 (10.0.0.9): no UDP datagram passes at all (a firewall "
        "between them?); check the MTU of both nodes' interfaces and of the switch ports between them"]


def test_a_raylet_that_died_beside_its_successor_is_waited_out_and_never_probed(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    report, ray = verify(twice={"beta": 3})
    assert report["ok"], judgement.problems(report)
    assert {node for what, node, _ in ray.placed} == {"alpha", "beta", "gamma"}  # never "beta-dead"
    assert ray.twice["beta"] < 0  # asked again until the dead one was gone


def test_two_ray_nodes_on_one_address_fail_that_node_by_name_and_run_nothing_there(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    clock = iter(range(0, 10_000, 5))
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    report, ray = verify(twice={"beta": 10_000}, timeout=30)
    assert not report["ok"]
    assert problems_of(report, "beta") == [
        "beta (10.0.0.2) has 2 Ray nodes alive at its address: a second Ray runs there beside SAF's service "
        "(one started by hand?); find it with `ps -ef | grep -e raylet -e 'ray start'`, stop it, and re-run the "
        "deploy"]
    assert problems_of(report, "alpha") == [] and problems_of(report, "gamma") == []
    assert not any(node.startswith("beta") for what, node, _ in ray.placed)


HAND_RUN_HEAD = {"os": "linux", "ps": linux_output("ps-A-units.worker-and-hand-run-head.debian12.txt"),
                 "listeners": linux_output("ss-Hltnp.worker-and-hand-run-head.debian12.txt")}


def test_ray_beside_saf_s_service_fails_that_node_by_name_with_each_process():
    report, ray = verify({"gamma": {"census": HAND_RUN_HEAD}})
    assert not report["ok"] and problems_of(report, "alpha") == [] and problems_of(report, "beta") == []
    gamma = problems_of(report, "gamma")
    assert len(gamma) == 12 and all(p.startswith("gamma: ") for p in gamma)
    assert ("gamma: listener on a Ray port not SAF's service's: 0.0.0.0:8265 (python3.11 pid 33); stop it (the "
            "next deploy does, with foreign_ray: stop)") in gamma
    assert not any("pid 24)" in p or "pid 24 " in p for p in gamma)  # SAF's raylet, in its unit
    assert all("census" not in node for node in report["nodes"])  # raw output stays out of the report


def test_every_node_is_told_what_to_print_for_its_role_and_os():
    _, ray = verify()
    assert ray.census_commands["alpha"]["darwin"]["job"] == "launchctl print system/org.saf.ray-head 2>/dev/null || true"
    assert ray.census_commands["beta"]["darwin"]["job"] == "launchctl print system/org.saf.ray-worker 2>/dev/null || true"
    assert ray.census_commands["gamma"]["linux"]["ps"].startswith("ps -A -ww -o user= -o pid= -o ppid= -o unit=")
    assert ("ray_census", "gamma", False) in ray.placed


def test_the_driver_s_own_processes_are_not_strays_on_its_own_node_only():
    driver = "saf 4242 4241 session-9.scope - /home/saf/saf/venv/current/bin/python -c ray.util ray/_private/x\n"
    census = {"os": "linux", "ps": driver, "listeners": ""}
    report, _ = verify({"alpha": {"census": census}, "beta": {"census": census}}, driver_pids=(4242, 4241))
    assert problems_of(report, "alpha") == []
    assert [p.split(": ", 1)[1][:40] for p in problems_of(report, "beta")] == ["Ray process not started by SAF's service"]


def test_a_mac_s_census_is_judged_by_its_launchd_job_s_process_tree():
    census = {"os": "darwin", "ps": macos_output("ps-A.seed-leftovers.macos14.txt"),
              "listeners": macos_output("lsof-iTCP-LISTEN.seed-leftovers.txt"),
              "job": macos_output("launchctl-print.running.macos15.txt")}
    report, _ = verify({"beta": {"census": census}})
    assert len(problems_of(report, "beta")) == 8
    converged = dict(census, ps=macos_output("ps-A.converged.macos15.txt"), listeners="")
    assert verify({"beta": {"census": converged}})[0]["ok"]


@pytest.mark.parametrize("census, why", [
    ({"error": "GetTimeoutError"}, "GetTimeoutError"),
    ({"os": "linux", "ps": "this is not ps\n", "listeners": ""}, "ps -A -ww -o user="),
])
def test_a_census_that_cannot_be_read_fails_its_node(census, why):
    report, _ = verify({"beta": {"census": census}})
    assert problems_of(report, "beta")[0].startswith("beta: its Ray processes could not be read (")
    assert why in problems_of(report, "beta")[0]


@pytest.mark.parametrize("ps, pid, chain", [
    ("1 0\n10 1\n20 10\n30 20\n", 30, [30, 20, 10]),
    ("  30   20\n  20   30\n", 30, [30, 20]),  # a loop (pid reuse mid-read) ends
    ("", 30, [30]),
])
def test_the_driver_s_ancestry_stops_at_init(ps, pid, chain):
    assert census.ancestry(ps, pid) == chain


DROPS_TO_ALPHA = {"10.0.0.1": {"ok": False, "largest": 1472, "headers": 28},
                  "10.0.0.2": {"ok": True, "largest": 8972, "headers": 28}}


@pytest.mark.parametrize("before_gamma", [
    {"down": ("beta",)},  # beta has no path results at all
    {"answers": {"beta": {"paths": RuntimeError("the probe broke off")}}},  # beta's check broke off
])
def test_a_node_without_path_results_does_not_stop_the_next_node_s_being_judged(before_gamma):
    answers = {**before_gamma.get("answers", {}), "gamma": {"paths": DROPS_TO_ALPHA}}
    report, _ = verify(answers, down=before_gamma.get("down", ()))
    assert any(p.startswith("9000-byte frames do not pass from gamma to alpha") for p in problems_of(report, "gamma"))


def test_a_node_exactly_at_the_slow_ratio_is_not_slow():
    report, _ = verify({"gamma": {"node_probe": probe("gamma", gflops_f32=50.0)}}, slow_ratio=0.5)
    assert report["ok"], judgement.problems(report)


def test_a_node_under_one_gflops_is_judged_slow_not_skipped():
    report, _ = verify({"gamma": {"node_probe": probe("gamma", gflops_f32=0.8)}})
    assert problems_of(report, "gamma") == ["gamma is slow: 0.8 GFLOPS (f32) against a median of 100.0 on its peers "
                                            "of the same hardware (thermals, background load, power settings?)"]


def test_observations_without_nodes_or_problems_are_judged_not_a_crash():
    assert judgement.judge({"problems": ["the driver failed"]}, expectation())["problems"] == ["the driver failed"]
    empty = judgement.judge({"nodes": []}, expectation())
    assert empty["ok"] is False and empty["problems"] == [judgement.NOTHING_OBSERVED]  # never failed for no reason
    assert judgement.problems({"problems": ["x"], "nodes": [{"name": "alpha"}]}) == ["x"]


def test_a_user_unit_is_saf_s_only_when_the_settings_say_so():
    census = {"os": "linux", "ps": linux_output("ps-A-units.saf-user-unit.debian12.txt"), "listeners": ""}
    user_units = SimpleNamespace(**{**vars(SETTINGS), "use_sudo": False})
    assert strays.node_strays({"name": "beta", "role": "worker", "census": census}, user_units) == []
    system_units = strays.node_strays({"name": "beta", "role": "worker", "census": census}, SETTINGS)
    assert system_units and all(p.startswith("beta: Ray process not started by SAF's service") for p in system_units)


# --- the MLX collective ------------------------------------------------------------------------


def test_the_collective_runs_one_rank_per_node_on_its_ring_port_and_reports_bus_bandwidth():
    report, ray = verify()
    hosts = [["10.0.0.1:6390"], ["10.0.0.2:6391"], ["10.0.0.3:6392"]]
    assert ray.reach == {"alpha": ("10.0.0.1", 6390, ["beta", "gamma"]), "beta": ("10.0.0.2", 6391, ["alpha", "gamma"]),
                         "gamma": ("10.0.0.3", 6392, ["alpha", "beta"])}  # every pair, both ways
    assert ray.ranks == {"alpha": (0, hosts, ring.COLLECTIVE_REPEATS, "ring"), "beta": (1, hosts, ring.COLLECTIVE_REPEATS,
                         "ring"), "gamma": (2, hosts, ring.COLLECTIVE_REPEATS, "ring")}
    assert {"target": "NodeAgent", "num_cpus": 0, "max_concurrency": 2} in ray.options
    assert {("NodeAgent", n) for n in ("alpha", "beta", "gamma")} <= ray.killed_kinds  # the process ends, its sockets with it
    collective = report["collective"]
    # each size took 0.01 s per MB on every rank: 2**20 / 0.01 B/s, times 2(n-1)/n = 4/3
    assert collective["busbw_gbyte_s"] == {"1": 0.14, "16": 0.14, "64": 0.14, "256": 0.14}
    assert {key: collective[key] for key in ("backend", "ranks", "ok", "problems")} == {
        "backend": "ring", "ranks": 3, "ok": True, "problems": []}
    assert report["ok"] is True


def test_bus_bandwidth_is_bytes_over_the_slowest_rank_s_time_times_two_n_minus_one_over_n():
    slow = {str(mb): 0.04 * mb for mb in ring.COLLECTIVE_REPEATS}
    report, _ = verify({"beta": {"rank": rank_result(1, seconds=slow)}})
    assert report["collective"]["busbw_gbyte_s"]["256"] == round(256 * 2 ** 20 / (0.04 * 256) * 4 / 3 / 1e9, 3)
    assert judgement.bus_bandwidth({"a": {"seconds": {"2": 1.0}}, "b": {"seconds": {"2": 0.5}}}, 2) == {
        "2": round(2 * 2 ** 20 / 1e9, 3)}  # two ranks: 2(n-1)/n = 1


def test_a_node_that_cannot_reach_a_peer_s_ring_port_fails_by_name_and_no_rank_runs():
    report, ray = verify({"gamma": {"unreachable": ("beta",)}})
    assert problems_of(report, "gamma") == [
        f"gamma cannot reach beta's MLX ring port (10.0.0.2:6391): {judgement.RING_FIX}"]
    assert problems_of(report, "beta") == [] and ray.ranks == {}
    assert report["collective"]["ok"] is False and report["collective"]["busbw_gbyte_s"] == {}
    assert report["collective"]["problems"] == problems_of(report, "gamma") and report["ok"] is False


def test_a_ring_port_taken_on_a_node_fails_that_node_alone_and_no_rank_runs():
    taken = "its ring port 10.0.0.2:6391 is taken (Address already in use)"
    report, ray = verify({"beta": {"ring_taken": taken}, "alpha": {"unreachable": ("beta",)},
                          "gamma": {"unreachable": ("beta",)}})  # nobody listens there: no peer reaches it either
    assert problems_of(report, "beta") == [f"beta: the MLX collective could not start: {taken}; free it, or move "
                                           "mlx_ring_port"]
    assert problems_of(report, "alpha") == problems_of(report, "gamma") == []  # the cause is named once
    assert ray.ranks == {} and report["ok"] is False


def test_a_rank_that_fails_or_never_finishes_is_named_and_the_late_one_is_stopped():
    report, ray = verify({"beta": {"rank": RuntimeError("[ring] Couldn't connect (error: 111)")},
                          "gamma": {"rank": LATE}})
    assert problems_of(report, "beta") == [
        "beta: its MLX rank failed in the collective: [ring] Couldn't connect (error: 111)"]
    assert problems_of(report, "gamma") == [
        "gamma: not probed: its agent was stopped, stuck in the collective",
        f"gamma: its MLX rank failed in the collective: did not finish within {ring.COLLECTIVE_S:.0f} s"]
    assert ("NodeAgent", "gamma") in ray.killed_kinds and ray.cancelled == []  # the late rank's process is killed
    assert [node for what, node, _ in ray.placed if what == "node_probe"] == ["alpha", "beta"]
    assert report["collective"]["ok"] is False and problems_of(report, "alpha") == []


@pytest.mark.parametrize(("answer", "why"), [
    (rank_result(1, sums=[6.0, 6.0, 6.0, 5.0]), "all_sum gave [6.0, 6.0, 6.0, 5.0], not 6 everywhere"),
    (rank_result(1, sums=[]), "all_sum gave [], not 6 everywhere"),
    (rank_result(1, ends={"256": [3.0, 2.0]}), "all_sum of 256 MB of ones gave [3.0, 2.0], not 3"),
])
def test_a_wrong_all_sum_fails_the_node_that_saw_it(answer, why):
    report, _ = verify({"beta": {"rank": answer}})
    assert problems_of(report, "beta") == [f"beta: the MLX collective is wrong: {why}"]
    assert report["collective"]["ok"] is False and report["collective"]["busbw_gbyte_s"] == {}


def test_a_rank_in_a_group_of_the_wrong_size_fails():
    report, _ = verify({"gamma": {"rank": rank_result(2, size=1)}})
    assert problems_of(report, "gamma") == ["gamma: its MLX rank joined a group of 1, not the 3 ranks of the cluster"]


def test_a_node_that_is_down_leaves_the_ring_to_the_others_renumbered():
    report, ray = verify(down=("beta",), timeout=2)  # a short wait for the node that never comes
    hosts = [["10.0.0.1:6390"], ["10.0.0.3:6391"]]
    assert ray.ranks == {"alpha": (0, hosts, ring.COLLECTIVE_REPEATS, "ring"),
                         "gamma": (1, hosts, ring.COLLECTIVE_REPEATS, "ring")}
    assert report["collective"]["ranks"] == 2 and report["collective"]["ok"] is True


def test_a_single_node_has_no_collective_to_fail():
    report, ray = verify(down=("beta", "gamma"), timeout=2)
    assert ray.ranks == {} and report["collective"]["ok"] is True and report["collective"]["ranks"] == 1


def test_a_node_lost_during_the_collective_is_a_cluster_problem_not_a_crash(monkeypatch):
    def lost(*args):
        raise RuntimeError("node died")
    monkeypatch.setattr(ring, "_ring_ports_reachable", lost)
    report, _ = verify()
    assert report["problems"] == ["the MLX collective did not run: RuntimeError: node died"]
    assert report["ok"] is False and report["collective"]["ok"] is False


def test_without_a_collective_expected_there_is_none():
    ray = FakeRay({})
    observed = driver.observe_cluster("10.0.0.1:6380", expectation(collective=False), 30, ray=ray)
    assert "collective" not in observed and ray.ranks == {}


def test_a_collective_observation_missing_its_parts_is_judged_not_a_crash():
    nodes = {"alpha": {"name": "alpha", "ip": "10.0.0.1", "problems": []}}
    report = {"problems": []}
    assert judgement.check_collective({}, nodes, expectation(), report)["ok"] is True  # no ranks: nothing to fail
    collective = judgement.check_collective(
        {"ranks": ["alpha", "beta"], "results": {"alpha": {"rank": 0, "size": 2, "sums": [3.0] * 4},
                                                 "beta": rank_result(1, size=2)}}, nodes, expectation(), report)
    assert collective["ok"] is True  # a rank without "ends" has no end to be wrong
    assert collective["busbw_gbyte_s"] == {}  # nor a figure for a size one rank did not time
    assert judgement.bus_bandwidth({}, 2) == {}


def test_every_wrong_sum_a_rank_saw_is_named_in_one_problem():
    report, _ = verify({"beta": {"rank": rank_result(1, sums=[5.0] * 4, ends={"1": [2.0, 3.0]})}})
    assert problems_of(report, "beta") == ["beta: the MLX collective is wrong: all_sum gave [5.0, 5.0, 5.0, 5.0], not "
                                           "6 everywhere; all_sum of 1 MB of ones gave [2.0, 3.0], not 3"]


def test_a_node_below_the_slow_ratio_is_measured_once_more_and_a_passing_moment_is_forgiven():
    report, ray = verify({"gamma": {"node_probe": [probe("gamma", gflops_f16=20.0, size_f16=256),
                                                   probe("gamma", gflops_f16=48.0, size_f16=1024)]}})
    assert [node for what, node, _ in ray.placed if what == "node_probe"] == ["alpha", "beta", "gamma", "gamma"]
    gamma = next(node for node in report["nodes"] if node["name"] == "gamma")
    assert (gamma["gflops_f16"], gamma["size_f16"], gamma["reprobed"]) == (48.0, 1024, True) and report["ok"]


def test_a_node_slow_twice_is_slow_with_the_better_of_its_two_figures():
    report, ray = verify({"gamma": {"node_probe": [probe("gamma", gflops_f16=20.0, size_f16=512),
                                                   probe("gamma", gflops_f16=10.0, size_f16=256)]}})
    assert problems_of(report, "gamma") == ["gamma is slow: 20.0 GFLOPS (f16) against a median of 50.0 on its peers "
                                            "of the same hardware (thermals, background load, power settings?)"]
    gamma = next(node for node in report["nodes"] if node["name"] == "gamma")
    assert (gamma["gflops_f16"], gamma["size_f16"], gamma["gflops_f32"]) == (20.0, 512, 100.0)


def test_nodes_at_or_above_the_ratio_are_measured_once():
    _, ray = verify({"gamma": {"node_probe": probe("gamma", gflops_f32=50.0, gflops_f16=25.0)}})  # exactly half
    assert [node for what, node, _ in ray.placed if what == "node_probe"] == ["alpha", "beta", "gamma"]
    assert measure.outliers({"a": {"hardware": "x", "gflops_f32": 1.0}, "b": {"hardware": "y", "gflops_f32": 9.0}},
                        0.5) == []  # no peer of the same hardware: nothing to compare with


def test_the_driver_s_step_seconds_reach_the_report_as_they_are():
    from saf.verify.judgement import judge as judge_observed
    steps = {"connect": 1.5, "probes": 7.0}
    observed = {"nodes": [{"name": "alpha", "role": "head", "ip": "10.0.0.1", "alive": False, "ray_nodes": 0}],
                "step_seconds": steps}
    expected = {"nodes": [{"name": "alpha", "role": "head", "ip": "10.0.0.1"}], "mtu": 9000, "slow_ratio": 0.5,
                "pins": {"python": "3.9.23", "ray": "2.49.1", "mlx": "0.29.1"}}
    assert judge_observed(observed, expected)["step_seconds"] == steps
    assert "step_seconds" not in judge_observed({**observed, "step_seconds": {}}, expected)
