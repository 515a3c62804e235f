"""The verification's node-side measurements (saf/verify/node/: measure, netprobe, transfer, ring), without MLX or Ray.

Throughput runs against a stand-in for ``mlx.core`` whose products take simulated time on a
simulated clock: products are lazy, and only ``mx.eval`` advances the clock, as on a real device.
The path check runs for real over UDP on this machine's loopback.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from saf.verify.node import measure, netprobe, ring, transfer
from tests.unit.bounded import bounded  # noqa: F401 - autouse: every test here is time-bounded


class Clock:
    """Simulated seconds; every read is logged beside the stand-in's evals."""

    def __init__(self, log: list) -> None:
        self.now, self.log = 0.0, log

    def __call__(self) -> float:
        self.log.append(("clock",))
        return self.now


class Operand:
    def __init__(self, mx: "FakeMx", n: int) -> None:
        self.mx, self.n, self.dtype = mx, n, "float32"
        mx.pairs_made += 1
        self.pair = (mx.pairs_made + 1) // 2  # a and b of one _operands() call share a pair number
        mx.sizes_tried.append(n)

    def astype(self, dtype) -> "Operand":
        self.dtype = dtype
        self.mx.dtypes.add(dtype)
        return self

    def __matmul__(self, other: "Operand") -> "Product":
        assert isinstance(other, Operand) and other.pair == self.pair and other is not self
        return Product(self.n, self.pair)


class Product:
    def __init__(self, n: int, pair: int) -> None:
        self.n, self.pair = n, pair


class FakeMx:
    """``mlx.core`` as the probe uses it: random operands, lazy ``@``, and ``eval`` that costs
    2n^3 / rate(n) seconds per product, plus ``cold_s`` for each of a pair's first ``cold_evals``."""

    float32, float16 = "float32", "float16"

    def __init__(self, rate, cold_s: float = 0.0, cold_evals: int = 0) -> None:
        self.log: list = []
        self.clock = Clock(self.log)
        self.clock.now = 1000.0  # a clock that does not start at zero, as perf_counter does not
        self.sizes_tried: list[int] = []
        self.dtypes: set = set()
        self.rate, self.cold_s, self.cold_evals = rate, cold_s, cold_evals
        self.pairs_made, self.evals_per_pair = 0, {}
        self.random = SimpleNamespace(normal=lambda shape: Operand(self, shape[0]))

    def eval(self, *arrays) -> None:
        products = [array for array in arrays if isinstance(array, Product)]
        if not products:
            return  # the operands themselves: no product to time
        pair = products[0].pair
        earlier = self.evals_per_pair.get(pair, 0)
        self.evals_per_pair[pair] = earlier + 1
        self.clock.now += sum(2 * p.n ** 3 / self.rate(p.n) for p in products)
        self.clock.now += self.cold_s if earlier < self.cold_evals else 0.0
        self.log.append(("eval", pair, earlier, len(products)))


def timed_evals(log: list) -> list[tuple]:
    """The evals that a clock read comes right before and right after: the timed steps."""
    return [event for before, event, after in zip(log, log[1:], log[2:])
            if event[0] == "eval" and before == ("clock",) and after == ("clock",)]


def measure_on(mx: FakeMx, memory: int = 64 << 30, itemsize: int = 4, dtype: str = "float32") -> dict:
    started = mx.clock.now
    result = measure.measure_throughput(mx, dtype, itemsize, memory, clock=mx.clock)
    mx.elapsed = mx.clock.now - started
    return result


def timed_repeats(mx: FakeMx) -> int:
    """Timed steps of the final operands, less the one that sized the batch."""
    final_pair = max(event[1] for event in mx.log if event[0] == "eval")
    return len([event for event in timed_evals(mx.log) if event[1] == final_pair]) - 1


GPU = 4e14  # FLOP/s: an H200-class device


def test_the_figure_is_the_median_of_timed_steps_that_include_mx_eval():
    mx = FakeMx(rate=lambda n: GPU)
    result = measure_on(mx)
    assert result["gflops"] == pytest.approx(GPU / 1e9)  # eval outside the clock would read no time at all
    assert result["size"] == measure.MAX_SIZE


def test_no_timed_step_is_among_the_first_evals_of_its_operands():
    mx = FakeMx(rate=lambda n: GPU, cold_s=5.0, cold_evals=measure.WARMUP)
    result = measure_on(mx)
    final_pair = max(event[1] for event in mx.log if event[0] == "eval")
    timed = [event for event in timed_evals(mx.log) if event[1] == final_pair]
    assert len(timed) >= measure.MIN_REPEATS + 1  # the step that sizes the batch, then the repeats
    assert all(earlier >= measure.WARMUP for _, _, earlier, _ in timed)
    assert result["gflops"] == pytest.approx(GPU / 1e9)


def test_a_fast_device_is_measured_at_a_size_long_enough_to_time_with_several_products_per_eval():
    mx = FakeMx(rate=lambda n: GPU)
    result = measure_on(mx)
    step = 2 * measure.MAX_SIZE ** 3 * result["batch"] / GPU
    assert result["batch"] == 4 and step >= measure.LONG_ENOUGH_S > step / 2  # the fewest that make a long step
    assert mx.elapsed <= measure.GROWTH_BUDGET_S + measure.MEASURE_BUDGET_S + 1.0
    assert timed_repeats(mx) == measure.REPEATS  # the budget allows all of them, and no more are taken


def test_products_are_computed_in_the_dtype_asked_for():
    mx = FakeMx(rate=lambda n: GPU)
    measure_on(mx, dtype="float16", itemsize=2)
    assert mx.dtypes == {"float16"}


def test_a_device_too_slow_for_the_budget_still_gets_the_fewest_repeats():
    mx = FakeMx(rate=lambda n: 2 * 256 ** 3 / 1.0)  # one second per 256 product
    result = measure_on(mx)
    assert result["size"] == 256 and result["batch"] == 1 and timed_repeats(mx) == measure.MIN_REPEATS


def test_growth_stops_at_a_size_long_enough_once_the_rate_is_flat(monkeypatch):
    monkeypatch.setattr(measure, "GROWTH_BUDGET_S", 1000.0)  # the budget is not what stops it here
    mx = FakeMx(rate=lambda n: 1e12)  # 4096: 0.14 s a step, the first long enough
    assert measure_on(mx)["size"] == 4096
    assert max(mx.sizes_tried) == 4096


def test_the_size_with_the_best_rate_is_chosen():
    peak = {256: 1e9, 512: 2e9, 1024: 3e9, 2048: 2e9, 4096: 1e9}  # a CPU: caches favour one size
    mx = FakeMx(rate=lambda n: peak.get(n, 1e9) * 100)
    assert measure_on(mx)["size"] == 1024


def test_growth_stops_at_the_memory_bound():
    mx = FakeMx(rate=lambda n: GPU)
    itemsize = 4
    bound = 3 * 4096 * 4096 * itemsize  # two operands and one product of 4096
    result = measure_on(mx, memory=bound, itemsize=itemsize)
    assert result["size"] == 4096 and result["batch"] == 1  # no room for a second product either
    room_for_two = 4 * 4096 * 4096 * itemsize
    assert measure_on(FakeMx(rate=lambda n: GPU), memory=room_for_two, itemsize=itemsize)["batch"] == 2


def test_a_slow_cpu_stays_within_a_few_seconds():
    mx = FakeMx(rate=lambda n: 2e9)  # the lab's CPU with a reference BLAS
    result = measure_on(mx)
    assert result["gflops"] == pytest.approx(2.0)
    assert result["size"] <= 512
    assert mx.elapsed <= measure.GROWTH_BUDGET_S + measure.MEASURE_BUDGET_S + 1.0


def test_growth_goes_on_while_the_rate_rises_even_when_steps_are_long():
    mx = FakeMx(rate=lambda n: n * 1e7)  # rate doubling with each size: each step 4x the last
    assert measure_on(mx)["size"] == 1024  # 2048 would cost more than the growth budget


@pytest.mark.parametrize("fails_above, expected", [(1472, 1472), (8971, 8971), (8, 8), (0, None)])
def test_bisection_reports_the_largest_payload_that_passes(fails_above, expected):
    asked = []

    def passes(size: int) -> bool:
        asked.append(size)
        return size <= fails_above

    assert netprobe.largest_passing(passes, netprobe.TOKEN_BYTES, 8972) == expected
    assert len(asked) <= 15  # bisection, not a walk


def test_the_path_check_passes_a_full_frame_over_loopback_with_dont_fragment_set():
    echo = netprobe.UdpEcho()
    port = echo.listen("127.0.0.1")
    try:
        assert netprobe.path_probe([("127.0.0.1", port)], 9000) == {
            "127.0.0.1": {"ok": True, "largest": 8972, "headers": 28}}
        too_big = netprobe.path_probe([("127.0.0.1", port)], 70000)["127.0.0.1"]  # beyond UDP's 65507
        assert too_big == {"ok": False, "largest": 65507, "headers": 28}
    finally:
        echo.close()
    assert not echo.thread.is_alive()  # no thread outlives the probe (pyinfra's gevent patches threading later)


def test_a_peer_without_an_echo_has_no_passing_payload(monkeypatch):
    monkeypatch.setattr(netprobe, "PROBE_WAIT_S", 0.05)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        assert netprobe.path_probe([("127.0.0.1", port)], 1500)["127.0.0.1"] == {
            "ok": False, "largest": None, "headers": 28}


def test_dont_fragment_is_asked_the_way_each_os_understands():
    assert netprobe.dont_fragment("linux", socket.AF_INET) == (socket.IPPROTO_IP, 10, 2)  # IP_PMTUDISC_DO
    assert netprobe.dont_fragment("darwin", socket.AF_INET) == (socket.IPPROTO_IP, 28, 1)  # IP_DONTFRAG
    assert netprobe.dont_fragment("darwin", socket.AF_INET6) == (socket.IPPROTO_IPV6, 62, 1)
    if hasattr(socket, "IP_MTU_DISCOVER"):
        assert netprobe.dont_fragment("linux", socket.AF_INET)[1:] == (socket.IP_MTU_DISCOVER, socket.IP_PMTUDISC_DO)


def test_a_macos_probe_never_uses_icmp_and_fits_udp_s_own_limit():
    payload = 9000 - netprobe.HEADERS[socket.AF_INET]  # the largest MTU SAF sets
    assert payload <= 9216  # net.inet.udp.maxdgram's default in xnu
    assert "ping" not in (netprobe.path_probe.__code__.co_names + netprobe._echoed.__code__.co_names)


def test_gpu_cores_are_read_from_ioreg():
    ioreg = '+-o AGXAcceleratorG15X  <class AGXAcceleratorG15X>\n    "gpu-core-count" = 80\n    "model" = "Apple M3 Ultra"'
    assert measure.gpu_cores_from_ioreg(ioreg) == 80
    assert measure.gpu_cores_from_ioreg("") is None


def test_device_memory_comes_from_mlx_else_a_default():
    assert measure.device_memory({"memory_size": 192 << 30}) == 192 << 30  # Metal
    assert measure.device_memory({"total_memory": 150754820096}) == 150754820096  # CUDA
    assert measure.device_memory({}) == measure.DEFAULT_MEMORY


def test_mlx_describes_the_device_through_whichever_api_it_has():
    info = {"device_name": "NVIDIA H200", "total_memory": 150754820096}
    assert measure.mlx_device_info(SimpleNamespace(device_info=lambda: info)) == info  # MLX 0.30+
    older = SimpleNamespace(metal=SimpleNamespace(device_info=lambda: {"device_name": "Apple M3 Ultra"}))
    assert measure.mlx_device_info(older) == {"device_name": "Apple M3 Ultra"}  # MLX 0.29 on a Mac

    def no_gpu():
        raise RuntimeError("[metal::Device] Unable to load device")

    assert measure.mlx_device_info(SimpleNamespace(device_info=no_gpu, metal=SimpleNamespace(device_info=no_gpu))) == {}


def test_the_device_is_named_by_its_kind():
    assert measure.device_name("gpu", {"device_name": "NVIDIA H200"}, "linux") == "NVIDIA H200"
    assert measure.device_name("gpu", {"device_name": "Apple M3 Ultra"}, "darwin").startswith("Apple M3 Ultra")
    cpu = measure.device_name("cpu", {"device_name": "ignored"}, "linux")
    assert cpu == measure._cpu_model() and cpu and cpu != "ignored"


def test_tcp_throughput_is_counted_on_the_receiving_side():
    sink = transfer.TcpSink()
    port = sink.listen("127.0.0.1")
    sent = transfer.tcp_send("127.0.0.1", port, 0.2)
    assert sent["seconds"] >= 0.2 and sent["bytes"] >= 1 << 20
    assert sink.received_bytes() == sent["bytes"]


def interfaces_by_address() -> dict[str, str]:
    """This machine's interfaces by their addresses, from the real ``ip -j addr`` (Linux)."""
    shown = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, timeout=5).stdout
    return {address["local"]: link["ifname"] for link in json.loads(shown or "[]")
            for address in link.get("addr_info", []) if "local" in address}


@pytest.mark.skipif(sys.platform != "linux" or not shutil.which("ip"), reason="Linux's ip command and sysfs")
@pytest.mark.parametrize("written, gbit", [("10000\n", 10.0), ("2500", 2.5), ("-1\n", None), ("unknown", None)])
def test_the_link_speed_is_the_sysfs_speed_of_the_interface_carrying_the_address(tmp_path, written, gbit):
    """The real ``ip -j addr`` names loopback's interface; its speed file is this test's to write."""
    name = interfaces_by_address()["127.0.0.1"]
    (tmp_path / name).mkdir()
    (tmp_path / name / "speed").write_text(written)
    assert transfer.link_speed_gbit("127.0.0.1", sys_class_net=str(tmp_path)) == gbit
    assert transfer.link_speed_gbit("192.0.2.201", sys_class_net=str(tmp_path)) is None  # no interface carries it


@pytest.mark.skipif(sys.platform != "linux" or not shutil.which("ip"), reason="Linux's ip command and sysfs")
def test_this_machine_s_links_report_the_speeds_the_kernel_gives():
    """Every address here against the kernel's own speed file: loopback has none (EINVAL), an
    Ethernet or bridge interface its negotiated Mbit/s."""
    checked = 0
    for address, name in interfaces_by_address().items():
        try:
            megabits = int(Path(f"/sys/class/net/{name}/speed").read_text())
        except (OSError, ValueError):
            megabits = -1
        assert transfer.link_speed_gbit(address) == (megabits / 1000 if megabits > 0 else None), (address, name)
        checked += 1
    assert checked and transfer.link_speed_gbit("127.0.0.1") is None


def test_a_lost_datagram_is_sent_again(monkeypatch):
    monkeypatch.setattr(netprobe, "PROBE_WAIT_S", 0.2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as lossy:
        lossy.bind(("127.0.0.1", 0))
        lossy.settimeout(5)

        def drop_the_first_datagram_answer_the_second() -> None:
            lossy.recvfrom(1 << 16)
            data, sender = lossy.recvfrom(1 << 16)
            lossy.sendto(data[:netprobe.TOKEN_BYTES] + len(data).to_bytes(4, "big"), sender)

        answering = threading.Thread(target=drop_the_first_datagram_answer_the_second, daemon=True)
        answering.start()
        assert netprobe.path_probe([("127.0.0.1", lossy.getsockname()[1])], 1500)["127.0.0.1"]["ok"] is True
        answering.join(timeout=5)
        assert not answering.is_alive()


def test_ipv6_peers_are_probed_over_ipv6_with_its_headers():
    assert netprobe.address_family("fd00::12") == socket.AF_INET6 and netprobe.address_family("10.0.0.2") == socket.AF_INET
    echo = netprobe.UdpEcho()
    try:
        port = echo.listen("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert netprobe.path_probe([("::1", port)], 9000) == {"::1": {"ok": True, "largest": 8952, "headers": 48}}
    finally:
        echo.close()


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_ring_ports_are_checked_both_ways_at_once_and_then_left_free_for_mlx():
    a, b = free_ports(2)
    answers = {}
    threads = [threading.Thread(target=lambda name, mine, peer: answers.update(
        {name: ring.ring_reach("127.0.0.1", mine, [("other", "127.0.0.1", peer)])}), args=args)
        for args in (("alpha", a, b), ("beta", b, a))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {"alpha": {"taken": "", "unreachable": []}, "beta": {"taken": "", "unreachable": []}}
    for port in (a, b):
        with socket.socket() as mlx_s:  # no SO_REUSEADDR, as MLX might bind: no TIME_WAIT left on the port
            mlx_s.bind(("127.0.0.1", port))


def test_a_peer_that_never_listens_is_unreachable_within_the_patience():
    mine, silent = free_ports(2)
    started = time.monotonic()
    assert ring.ring_reach("127.0.0.1", mine, [("beta", "127.0.0.1", silent)], patience=0.5) == {
        "taken": "", "unreachable": ["beta"]}
    assert 0.5 <= time.monotonic() - started < 1.5


def test_a_ring_port_already_taken_is_said():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        answer = ring.ring_reach("127.0.0.1", port, [], patience=0.1)
    assert answer["taken"].startswith(f"its ring port 127.0.0.1:{port} is taken (") and answer["unreachable"] == []


def test_the_ring_hostfile_gives_rank_r_the_port_base_plus_r():
    assert ring.ring_hosts(["10.0.0.1", "10.0.0.3"], 6390) == [["10.0.0.1:6390"], ["10.0.0.3:6391"]]


def test_a_size_given_is_measured_without_a_search_after_the_same_warmup():
    mx = FakeMx(rate=lambda n: GPU, cold_s=5.0, cold_evals=measure.WARMUP)
    started = mx.clock.now
    result = measure.measure_throughput(mx, "float32", 4, 64 << 30, clock=mx.clock, size=2048)
    assert result["size"] == 2048 and result["gflops"] == pytest.approx(GPU / 1e9)
    assert {event[1] for event in mx.log if event[0] == "eval"} == {1}  # one pair of operands: no sizes tried
    timed = timed_evals(mx.log)
    assert all(earlier >= measure.WARMUP for _, _, earlier, _ in timed)  # still warmed up before any timed step
    assert mx.clock.now - started <= 2 * measure.WARMUP * 5.0 + measure.MEASURE_BUDGET_S + 1.0
