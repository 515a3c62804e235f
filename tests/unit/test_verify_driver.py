"""The verification driver and its jobs (saf/verify/node/) piece by piece, without MLX, NumPy or Ray here.

What a node runs is run here for real where it can be: the path check and the TCP throughput over
loopback sockets, the commands that name a device or a link as scripts of the same name put first on
PATH (each checks the arguments it was given), the census through the shell. MLX, NumPy and Ray are
small stand-ins; the driver's ``observe_cluster`` works against a stand-in for Ray that places each task on its
node and answers it, tolerant of tasks it does not know. Every wait asserted is a bound a user relies
on: a node that does not answer is reported, never a hang.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from saf.verify.node import agent, census, driver, measure, netprobe, ring, scheduling, system, transfer
from tests.unit.bounded import bounded  # noqa: F401 - autouse: every test here is time-bounded
from tests.unit.test_verify_probe import FakeMx, measure_on, timed_repeats

NODE_MODULES = (agent, census, driver, measure, netprobe, ring, scheduling, system, transfer)

# --- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def commands(tmp_path, monkeypatch):
    """PATH holds only the commands that a test adds: ``add(name, args, output)`` writes a script
    that prints ``output`` when called with exactly ``args`` and fails silently otherwise."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))

    def add(name: str, args: str, output: str) -> None:
        data = tmp_path / f"{name}.out"
        data.write_text(output)
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\n[ "$*" = "{args}" ] || exit 64\nexec /bin/cat {data}\n')
        script.chmod(0o755)

    return add


@pytest.fixture
def runs(monkeypatch):
    """Every subprocess.run of the module under test, recorded (argv and keyword arguments), then run."""
    calls = []
    real = subprocess.run

    def run(*args, **kwargs):
        calls.append((args[0] if args else kwargs.get("args"), kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    return calls


def on(monkeypatch, platform_name: str) -> None:
    """The node-side modules believe they run on ``platform_name`` ("darwin" or "linux")."""
    for module in NODE_MODULES:
        if hasattr(module, "sys"):
            monkeypatch.setattr(module, "sys", SimpleNamespace(platform=platform_name))


def files(monkeypatch, contents: dict) -> list:
    """``open`` in the node-side modules reads ``contents`` (path: text, or an exception to raise)."""
    opened = []

    def fake_open(path, *args, **kwargs):
        opened.append(str(path))
        content = contents.get(str(path), FileNotFoundError(path))
        if isinstance(content, BaseException):
            raise content
        return io.StringIO(content)

    for module in NODE_MODULES:
        monkeypatch.setattr(module, "open", fake_open, raising=False)
    return opened


@pytest.fixture
def recording(monkeypatch) -> list:
    """Every socket's options and timeouts, logged; options of another OS are logged, not set. The
    methods of whichever class ``socket.socket`` is now are wrapped (pyinfra's gevent may have
    replaced it by the time this runs, and its create_connection makes its own class)."""
    log: list = []
    cls = socket.socket
    setsockopt, settimeout = cls.setsockopt, cls.settimeout

    def logged_setsockopt(self, level, option, value, *rest):
        log.append(("setsockopt", level, option, value))
        if (level, option) != (socket.IPPROTO_IP, 28):  # darwin's IP_DONTFRAG means nothing here
            setsockopt(self, level, option, value, *rest)

    def logged_settimeout(self, value):
        log.append(("settimeout", self.type, value))
        settimeout(self, value)

    monkeypatch.setattr(cls, "setsockopt", logged_setsockopt)
    monkeypatch.setattr(cls, "settimeout", logged_settimeout)
    return log


class Peer:
    """A UDP peer on loopback that answers datagram number i with ``answer(i, data)`` (None: no answer)."""

    def __init__(self, answer, ip: str = "127.0.0.1", delay: float = 0.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()
        self.answer, self.delay, self.sizes, self.done = answer, delay, [], False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done:
            try:
                data, sender = self.sock.recvfrom(1 << 16)
            except OSError:
                continue
            self.sizes.append(len(data))
            reply = self.answer(len(self.sizes) - 1, data)
            if reply is not None:
                time.sleep(self.delay)
                self.sock.sendto(reply, sender)

    def close(self) -> None:
        self.done = True
        self.thread.join(timeout=2)
        self.sock.close()


def echo_reply(data: bytes) -> bytes:
    return data[:netprobe.TOKEN_BYTES] + len(data).to_bytes(4, "big")


@pytest.fixture
def short_waits(monkeypatch):
    monkeypatch.setattr(netprobe, "PROBE_WAIT_S", 0.05)


def prober() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(*netprobe.dont_fragment("linux", socket.AF_INET))
    return sock


# --- the device and its name -------------------------------------------------------------------


CPUINFO = ("processor\t: 0\nvendor_id\t: ARM\nmodel name\t: Ampere: Altra Q80-30 \nflags\t: fp asimd\n\n"
           "processor\t: 1\nmodel name\t: Second CPU\n")


def test_a_linux_cpu_is_named_by_the_first_model_name_of_proc_cpuinfo(monkeypatch):
    on(monkeypatch, "linux")
    opened = files(monkeypatch, {"/proc/cpuinfo": CPUINFO})
    assert measure._cpu_model() == "Ampere: Altra Q80-30"  # everything after the first colon, stripped
    assert opened == ["/proc/cpuinfo"]


@pytest.mark.parametrize("cpuinfo", [OSError("no /proc"), "processor\t: 0\nBogoMIPS\t: 50.00\n"])
def test_a_cpu_without_a_model_name_is_named_by_the_platform(monkeypatch, cpuinfo):
    on(monkeypatch, "linux")
    files(monkeypatch, {"/proc/cpuinfo": cpuinfo})
    monkeypatch.setattr(measure.platform, "processor", lambda: "")
    monkeypatch.setattr(measure.platform, "machine", lambda: "aarch64")
    assert measure._cpu_model() == "aarch64"
    monkeypatch.setattr(measure.platform, "processor", lambda: "x86_64-proc")
    assert measure._cpu_model() == "x86_64-proc"


def test_a_mac_s_cpu_is_named_by_sysctl_within_a_few_seconds(monkeypatch, commands, runs):
    on(monkeypatch, "darwin")
    commands("sysctl", "-n machdep.cpu.brand_string", "Apple M3 Ultra\n")
    assert measure._cpu_model() == "Apple M3 Ultra"
    [(argv, options)] = runs
    assert argv == ["sysctl", "-n", "machdep.cpu.brand_string"] and 0 < options["timeout"] <= 5


def test_the_device_kind_is_mlx_s_own_word():
    assert measure.device_kind(SimpleNamespace(type=SimpleNamespace(name="gpu"))) == "gpu"

    class Unnamed:
        type = "DeviceType.cpu"

        def __str__(self) -> str:
            return "Device(cpu, 0)"

    assert measure.device_kind(Unnamed()) == "Device(cpu, 0)"

    class Bare:
        def __str__(self) -> str:
            return "Device(gpu, 0)"

    assert measure.device_kind(Bare()) == "Device(gpu, 0)"  # no type attribute at all: still named


def test_mlx_s_device_info_is_taken_from_the_first_api_that_tells_something():
    metal = SimpleNamespace(device_info=lambda: {"device_name": "Apple M3 Ultra"})
    assert measure.mlx_device_info(SimpleNamespace(device_info=lambda: {}, metal=metal)) == {"device_name": "Apple M3 Ultra"}
    assert measure.mlx_device_info(SimpleNamespace(device_info=None, metal=metal)) == {"device_name": "Apple M3 Ultra"}
    assert measure.mlx_device_info(SimpleNamespace()) == {}

    def no_device_info():
        raise RuntimeError("mx.device_info is not available on this backend")

    assert measure.mlx_device_info(SimpleNamespace(device_info=no_device_info, metal=metal)) == {
        "device_name": "Apple M3 Ultra"}


def test_gpu_cores_are_read_from_ioreg_however_it_spaces_them():
    assert measure.gpu_cores_from_ioreg('"gpu-core-count"=10') == 10
    assert measure.gpu_cores_from_ioreg('  "model" = "M4"\n  "gpu-core-count"   =   40\n') == 40
    assert measure.gpu_cores_from_ioreg('"gpu-core-count" = "many"') is None


def test_a_command_s_output_is_read_within_a_few_seconds_and_a_missing_one_reads_empty(commands, runs):
    commands("nvidia-smi", "-L", "GPU 0: NVIDIA H200\n")
    assert system.command_output(["nvidia-smi", "-L"]) == "GPU 0: NVIDIA H200\n"
    assert 0 < runs[0][1]["timeout"] <= 5
    assert system.command_output(["ioreg", "-l"]) == ""  # not on PATH: no output, no error


IOREG = '+-o AGXAcceleratorG15X  <class AGXAcceleratorG15X>\n    "gpu-core-count" = 80\n'


def test_a_mac_gpu_is_named_with_its_cores_from_ioreg(monkeypatch, commands):
    commands("ioreg", "-r -c AGXAccelerator -d 1", IOREG)
    assert measure.device_name("gpu", {"device_name": "Apple M3 Ultra"}, "darwin") == "Apple M3 Ultra (80-core GPU)"
    assert measure.device_name("gpu", {}, "darwin") == "Apple GPU (80-core GPU)"


def test_a_mac_gpu_without_ioreg_s_cores_is_named_by_mlx_or_plainly(commands):
    assert measure.device_name("gpu", {"device_name": "Apple M3 Ultra"}, "darwin") == "Apple M3 Ultra"
    assert measure.device_name("gpu", {}, "darwin") == "Apple GPU"


def test_a_cuda_gpu_is_named_by_mlx_else_by_nvidia_smi_else_plainly(commands):
    assert measure.device_name("gpu", {}, "linux") == "GPU"  # no nvidia-smi
    commands("nvidia-smi", "--query-gpu=name --format=csv,noheader", " NVIDIA H200 \nNVIDIA H100\n")
    assert measure.device_name("gpu", {}, "linux") == "NVIDIA H200"
    assert measure.device_name("gpu", {"device_name": "NVIDIA GH200"}, "linux") == "NVIDIA GH200"


def test_a_cpu_device_is_named_by_the_cpu_model_whatever_mlx_says(monkeypatch):
    on(monkeypatch, "linux")
    files(monkeypatch, {"/proc/cpuinfo": CPUINFO})
    assert measure.device_name("cpu", {"device_name": "NVIDIA H200"}, "linux") == "Ampere: Altra Q80-30"


@pytest.mark.parametrize("names, found", [
    (["numpy", "mlx"], False),
    (["mlx", "mlx-cuda"], True),
    (["MLX_CUDA_12"], True),
    ([None, "mlx-metal"], False),
])
def test_mlx_s_cuda_backend_is_found_among_the_installed_distributions(monkeypatch, names, found):
    import importlib.metadata

    dists = [SimpleNamespace(metadata={"Name": name}) for name in names]
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: iter(dists))
    assert measure._has_mlx_cuda() is found


def test_device_memory_takes_only_a_positive_count_metal_s_first():
    assert measure.device_memory({"memory_size": 1, "total_memory": 5}) == 1
    assert measure.device_memory({"memory_size": 0, "total_memory": 5}) == 5
    assert measure.device_memory({"memory_size": "96 GB"}) == measure.DEFAULT_MEMORY
    assert measure.device_memory({"total_memory": -1}) == measure.DEFAULT_MEMORY


def test_operands_fit_while_both_and_the_products_fit_the_bound():
    n, itemsize = 1024, 2
    exact = (2 + 3) * n * n * itemsize
    assert measure._fits(n, 3, itemsize, exact) and not measure._fits(n, 3, itemsize, exact - 1)


# --- throughput at the bounds: products of exact binary durations on FakeMx's clock -------------------


def test_a_step_exactly_long_enough_is_not_doubled_and_the_figure_is_the_device_s_rate(monkeypatch):
    monkeypatch.setattr(measure, "LONG_ENOUGH_S", 1 / 16)
    rate = lambda n: 2 * n ** 3 * 64  # noqa: E731 - every product takes 1/64 s
    result = measure_on(FakeMx(rate=rate))
    assert result["size"] == measure.MAX_SIZE and result["batch"] == 4  # 4 products: 1/16 s, long enough
    assert result["gflops"] == rate(measure.MAX_SIZE) / 1e9


def test_the_timed_steps_stop_once_the_budget_is_spent_exactly(monkeypatch):
    monkeypatch.setattr(measure, "LONG_ENOUGH_S", 1 / 16)
    monkeypatch.setattr(measure, "MEASURE_BUDGET_S", 4 / 16)  # four steps of four 1/64 s products
    mx = FakeMx(rate=lambda n: 2 * n ** 3 * 64)
    measure_on(mx)
    assert timed_repeats(mx) == 4


def test_a_device_too_fast_to_time_gets_the_largest_batch_and_no_more():
    result = measure_on(FakeMx(rate=lambda n: 1e18), memory=1 << 40)
    assert result["size"] == measure.MAX_SIZE and result["batch"] == measure.MAX_BATCH


def test_growth_stops_when_the_next_size_would_overspend_a_budget_spent_exactly(monkeypatch):
    monkeypatch.setattr(measure, "GROWTH_BUDGET_S", 18 / 64)  # 256's two products, then 16 of its steps
    mx = FakeMx(rate=lambda n: 2 * n ** 3 * 64)
    assert measure.find_size(mx, "float32", 4, 64 << 30, clock=mx.clock) == 512


def test_a_step_exactly_long_enough_at_a_flat_rate_ends_the_growth(monkeypatch):
    monkeypatch.setattr(measure, "LONG_ENOUGH_S", 1 / 64)
    mx = FakeMx(rate=lambda n: 2.0 ** 34)  # 256: 1/512 s, 512: 1/64 s
    assert measure.find_size(mx, "float32", 4, 64 << 30, clock=mx.clock) == 512


@pytest.mark.parametrize("rates, long_enough, size", [
    ({256: 2.0 ** 33, 512: 2.0 ** 34, 1024: 2.0 ** 34}, 1 / 64, 512),  # exactly SIGNIFICANT_GAIN times the last: not rising
    ({256: 2.0 ** 33, 512: 2.0 ** 32}, measure.LONG_ENOUGH_S, 512),  # exactly the best over SIGNIFICANT_GAIN: still near it
])
def test_the_significant_gain_bounds_growth_strictly_and_the_choice_inclusively(monkeypatch, rates, long_enough, size):
    monkeypatch.setattr(measure, "SIGNIFICANT_GAIN", 2.0)  # a factor that binary floats hold exactly
    monkeypatch.setattr(measure, "LONG_ENOUGH_S", long_enough)
    mx = FakeMx(rate=rates.__getitem__)
    assert measure.find_size(mx, "float32", 4, 64 << 30, clock=mx.clock) == size


def test_the_first_product_of_each_size_is_left_out_of_its_timing(monkeypatch):
    monkeypatch.setattr(measure, "GROWTH_BUDGET_S", 1000.0)
    mx = FakeMx(rate=lambda n: 1e12, cold_s=5.0, cold_evals=1)  # a kernel compiled for each new size
    assert measure.find_size(mx, "float32", 4, 64 << 30, clock=mx.clock) == 4096  # as without the cold start


# --- node_probe, with stand-ins for MLX, NumPy and Ray -----------------------------------------------


class Matrix:
    """A NumPy matrix reduced to one number; products multiply."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __matmul__(self, other: "Matrix") -> "Matrix":
        return Matrix(self.value * other.value)


def fake_numpy(drawn: list) -> ModuleType:
    np = ModuleType("numpy")
    np.float32 = "np.float32"

    class Rng:
        def __init__(self, seed) -> None:
            self.next = 1.5

        def standard_normal(self, shape, dtype=None):
            drawn.append((shape, dtype))
            self.next += 0.25
            return Matrix(self.next)

    np.random = SimpleNamespace(default_rng=Rng)
    np.array = lambda array: Matrix(array.value)
    np.allclose = lambda a, b, rtol, atol: abs(a.value - b.value) <= atol + rtol * abs(b.value)
    return np


def fake_mlx(kind: str, error: float, info: dict | None) -> ModuleType:
    """MLX whose products are off by ``error``, on a device of ``kind``."""

    class Array:
        def __init__(self, value: float) -> None:
            self.value = value

        def __matmul__(self, other: "Array") -> "Array":
            return Array(self.value * other.value + error)

    core = ModuleType("mlx.core")
    core.float32, core.float16 = "mx.float32", "mx.float16"
    core.array = lambda matrix: Array(matrix.value)
    core.default_device = lambda: SimpleNamespace(type=SimpleNamespace(name=kind))
    if info is not None:
        core.device_info = lambda: info
    return core


@pytest.fixture
def node(monkeypatch, commands):
    """node_probe on a stand-in node: ``probe(kind, error, info)``, what measure_throughput was asked."""
    import importlib.metadata

    asked, drawn = [], []

    def measure_throughput(mx, dtype, itemsize, memory_bound, clock=None, size=None):
        asked.append((getattr(mx, "__name__", None), dtype, itemsize, memory_bound, *([size] if size else [])))
        return {"gflops": 1234.5678 * itemsize, "size": size or 1024 * itemsize, "batch": itemsize // 2}

    monkeypatch.setattr(measure, "measure_throughput", measure_throughput)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"mlx": "0.29.1"}[name])
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: iter([]))
    monkeypatch.setitem(sys.modules, "numpy", fake_numpy(drawn))
    monkeypatch.setitem(sys.modules, "ray", SimpleNamespace(__version__="2.49.1"))
    on(monkeypatch, "linux")
    files(monkeypatch, {"/proc/cpuinfo": CPUINFO})

    def probe(kind: str = "gpu", error: float = 0.0, info: dict | None = None, sizes: dict | None = None) -> dict:
        core = fake_mlx(kind, error, info)
        monkeypatch.setitem(sys.modules, "mlx", SimpleNamespace(core=core))
        monkeypatch.setitem(sys.modules, "mlx.core", core)
        return measure.node_probe(sizes) if sizes else measure.node_probe()

    return SimpleNamespace(probe=probe, asked=asked, drawn=drawn, commands=commands)


def test_a_cuda_node_reports_its_identity_device_and_both_throughputs(node):
    node.commands("nvidia-smi", "--query-gpu=name --format=csv,noheader", "NVIDIA H200\n")
    result = node.probe("gpu", info={"device_name": "NVIDIA H200", "total_memory": 64 << 30})
    assert result == {
        "hostname": socket.gethostname(), "python": measure.platform.python_version(), "ray": "2.49.1",
        "mlx": "0.29.1", "os": "linux", "nvidia_smi": True, "mlx_cuda": False, "device": "gpu",
        "device_name": "NVIDIA H200", "hardware": "NVIDIA H200 / gpu", "mlx_correct": True,
        "gflops_f32": 4938.3, "size_f32": 4096, "batch_f32": 2, "gflops_f16": 2469.1, "size_f16": 2048,
        "batch_f16": 1}
    bound = (64 << 30) // measure.MEMORY_DIVISOR
    assert node.asked == [("mlx.core", "mx.float32", 4, bound), ("mlx.core", "mx.float16", 2, bound)]
    assert node.drawn == [((64, 64), "np.float32")] * 2


def test_sizes_found_on_a_peer_are_measured_as_given(node):
    result = node.probe("gpu", info={"device_name": "NVIDIA H200", "total_memory": 64 << 30},
                        sizes={"f32": 8192, "f16": 512})
    bound = (64 << 30) // measure.MEMORY_DIVISOR
    assert node.asked == [("mlx.core", "mx.float32", 4, bound, 8192), ("mlx.core", "mx.float16", 2, bound, 512)]
    assert (result["size_f32"], result["size_f16"]) == (8192, 512)


def test_a_cpu_node_is_named_by_its_cpu_and_bounded_by_the_default_memory(node):
    result = node.probe("cpu", info={"device_name": "ignored", "memory_size": 1 << 40})
    assert (result["device"], result["device_name"], result["hardware"]) == (
        "cpu", "Ampere: Altra Q80-30", "Ampere: Altra Q80-30 / cpu")
    assert result["nvidia_smi"] is False  # not on PATH
    assert {bound for _, _, _, bound in node.asked} == {measure.DEFAULT_MEMORY // measure.MEMORY_DIVISOR}


@pytest.mark.parametrize("error, correct", [(0.0, True), (5e-4, True), (1e-5, True), (0.01, False)])
def test_mlx_is_correct_within_numpy_s_tolerances(node, error, correct):
    assert node.probe("gpu", error=error, info={})["mlx_correct"] is correct


# --- the path check --------------------------------------------------------------------------------


def test_dont_fragment_on_linux_over_ipv6_and_on_any_os_not_darwin():
    assert netprobe.dont_fragment("linux", socket.AF_INET6) == (socket.IPPROTO_IPV6, 62, 1)
    if hasattr(socket, "IPV6_DONTFRAG"):
        assert netprobe.dont_fragment("linux", socket.AF_INET6)[1] == socket.IPV6_DONTFRAG
    assert netprobe.dont_fragment("freebsd14", socket.AF_INET) == netprobe.dont_fragment("linux", socket.AF_INET)


def test_the_echo_answers_each_datagram_with_its_token_and_length_however_long_it_waited(monkeypatch):
    monkeypatch.setattr(netprobe, "PROBE_WAIT_S", 0.05)
    echo = netprobe.UdpEcho()
    port = echo.listen("127.0.0.1")
    try:
        assert echo.thread.daemon  # an echo never keeps its worker process alive
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2)
            for size in (8, 1000, 65000):
                time.sleep(0.15)  # idle beyond the echo's own wait
                client.sendto(b"T0KEN-42" + bytes(size - 8), ("127.0.0.1", port))
                assert client.recv(64) == b"T0KEN-42" + size.to_bytes(4, "big")
    finally:
        echo.close()
    assert not echo.thread.is_alive()


def test_echoes_and_sinks_on_one_address_each_get_a_free_port_of_their_own():
    echoes, sinks = [netprobe.UdpEcho(), netprobe.UdpEcho()], [transfer.TcpSink(), transfer.TcpSink()]
    try:
        echo_ports = [echo.listen("127.0.0.1") for echo in echoes]
        sink_ports = [sink.listen("127.0.0.1") for sink in sinks]
    finally:
        for echo in echoes:
            if hasattr(echo, "thread"):
                echo.close()
        for sink in sinks:
            if hasattr(sink, "server"):
                sink.server.shutdown(socket.SHUT_RDWR)
    assert len(set(echo_ports)) == 2 and len(set(sink_ports)) == 2
    assert all(port >= 1024 for port in echo_ports + sink_ports)  # chosen by the OS, not a fixed one


def test_closing_an_echo_waits_at_most_two_of_its_waits(monkeypatch):
    echo = netprobe.UdpEcho()
    echo.listen("127.0.0.1")
    joined = []
    thread = echo.thread
    echo.thread = SimpleNamespace(join=lambda timeout=None: (joined.append(timeout), thread.join(timeout)))
    echo.close()
    assert joined and joined[0] is not None and 0 < joined[0] <= 2 * netprobe.PROBE_WAIT_S


def test_a_size_fails_after_three_unanswered_datagrams_of_that_size(short_waits):
    peer = Peer(lambda i, data: None)
    try:
        with prober() as sock:
            started = time.monotonic()
            assert netprobe._echoed(sock, peer.address, 1000) is False
            elapsed = time.monotonic() - started
        time.sleep(0.05)
        assert peer.sizes == [1000] * netprobe.PROBE_ATTEMPTS == [1000] * 3
        assert 3 * 0.05 * 0.9 <= elapsed < 0.6  # each attempt waits its time, and no longer
    finally:
        peer.close()


def test_the_third_datagram_of_a_size_may_pass(short_waits):
    peer = Peer(lambda i, data: echo_reply(data) if i == 2 else None)
    try:
        with prober() as sock:
            assert netprobe._echoed(sock, peer.address, 500) is True
    finally:
        peer.close()
    assert peer.sizes == [500] * 3


def test_only_a_reply_with_the_token_and_the_whole_length_counts(short_waits):
    def wrong(i, data):
        token, length = data[:netprobe.TOKEN_BYTES], len(data)
        return [b"x" * netprobe.TOKEN_BYTES + length.to_bytes(4, "big"),  # another token
                token + (length - 1).to_bytes(4, "big"),  # part of it arrived
                token + length.to_bytes(4, "big") + b"!"][i]  # not the echo's format

    peer = Peer(wrong)
    try:
        with prober() as sock:
            assert netprobe._echoed(sock, peer.address, 300) is False
    finally:
        peer.close()


def test_a_slow_echo_is_waited_for_without_sending_again():
    peer = Peer(lambda i, data: echo_reply(data), delay=0.15)
    try:
        with prober() as sock:
            assert netprobe._echoed(sock, peer.address, 1200) is True
    finally:
        peer.close()
    assert peer.sizes == [1200]


def test_a_datagram_larger_than_udp_allows_fails_at_once():
    peer = Peer(lambda i, data: echo_reply(data))
    try:
        with prober() as sock:
            started = time.monotonic()
            assert netprobe._echoed(sock, peer.address, 70000) is False
            assert time.monotonic() - started < netprobe.PROBE_WAIT_S  # no wait for a reply to what was never sent
    finally:
        peer.close()
    assert peer.sizes == []


def test_the_probe_forbids_fragments_and_makes_room_for_a_jumbo_frame(monkeypatch, recording):
    echo = netprobe.UdpEcho()
    port = echo.listen("127.0.0.1")
    try:
        for platform_name, dont in (("linux", (socket.IPPROTO_IP, 10, 2)), ("darwin", (socket.IPPROTO_IP, 28, 1))):
            on(monkeypatch, platform_name)
            recording.clear()
            assert netprobe.path_probe([("127.0.0.1", port)], 9000)["127.0.0.1"]["ok"] is True
            options = [entry[1:] for entry in recording if entry[0] == "setsockopt"]
            assert dont in options
            [buffer] = [value for level, option, value in options if (level, option) == (socket.SOL_SOCKET,
                                                                                          socket.SO_SNDBUF)]
            assert buffer >= 9000  # macOS' default send space is below a 9000-byte frame's datagram
    finally:
        echo.close()


def test_each_peer_is_probed_and_a_narrow_path_gets_its_largest_payload(monkeypatch):
    monkeypatch.setattr(netprobe, "PROBE_WAIT_S", 0.02)
    narrow = Peer(lambda i, data: echo_reply(data) if len(data) <= 1000 else None, ip="127.0.0.2")
    wide = Peer(lambda i, data: echo_reply(data))
    try:
        result = netprobe.path_probe([(narrow.address[0], narrow.address[1]), ("127.0.0.1", wide.address[1])], 1500)
    finally:
        narrow.close()
        wide.close()
    assert result == {"127.0.0.2": {"ok": False, "largest": 1000, "headers": 28},
                      "127.0.0.1": {"ok": True, "largest": 1472, "headers": 28}}
    assert min(narrow.sizes) == netprobe.TOKEN_BYTES  # the bisection starts from the smallest probe


def test_bisection_asks_the_low_end_first_and_never_the_failed_high_end():
    asked = []

    def passes(size):
        asked.append(size)
        return size <= 100

    assert netprobe.largest_passing(passes, 8, 101) == 100
    assert asked[0] == 8 and 101 not in asked
    assert netprobe.largest_passing(lambda size: True, 8, 9) == 8


# --- the link's speed --------------------------------------------------------------------------------


IP_ADDR = json.dumps([
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1"}]},
    {"ifname": "wg0"},
    {"ifname": "enp1s0", "addr_info": [{"family": "inet6", "local": "fe80::1"}, {"family": "inet", "local": "10.0.0.2"}]},
])


def test_the_interface_of_an_address_is_found_in_ip_s_json():
    assert transfer.interface_of(IP_ADDR, "10.0.0.2") == "enp1s0"
    assert transfer.interface_of(IP_ADDR, "10.0.0.9") is None
    assert transfer.interface_of("", "10.0.0.2") is None


IFCONFIG = """lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 16384
\tinet 127.0.0.1 netmask 0xff000000
en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 9000
\tether 1c:1d:d3:e0:00:01
\tinet 10.0.0.21 netmask 0xffffff00 broadcast 10.0.0.255
\tmedia: autoselect (10Gbase-T <full-duplex>)
\tstatus: active
en1: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500
\tinet 10.0.0.2 netmask 0xffffff00 broadcast 10.0.0.255
\tmedia: autoselect (1000baseT <full-duplex>)
en2: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500
\tinet 10.0.0.3 netmask 0xffffff00 broadcast 10.0.0.255
\tmedia: autoselect (2500Base-T <full-duplex>)
utun0: flags=8051<UP,POINTOPOINT,RUNNING,MULTICAST> mtu 1380
\tinet 10.0.0.4 --> 10.0.0.4 netmask 0xffffffff
en5: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500
\tmedia: autoselect (10Gbase-T <full-duplex>)
\tinet 10.0.0.5

"""


@pytest.mark.parametrize("ip, speed", [("10.0.0.21", 10.0), ("10.0.0.2", 1.0), ("10.0.0.3", 2.5), ("10.0.0.4", None),
                                       ("10.0.0.5", 10.0), ("10.0.0.9", None), ("127.0.0.1", None)])
def test_a_mac_s_link_speed_is_the_media_line_of_the_interface_carrying_the_address(ip, speed):
    assert transfer.speed_from_ifconfig(IFCONFIG, ip) == speed


def test_a_mac_s_link_speed_is_read_from_ifconfig(monkeypatch, commands, runs):
    on(monkeypatch, "darwin")
    commands("ifconfig", "", IFCONFIG)
    assert transfer.link_speed_gbit("10.0.0.3") == 2.5
    assert runs[0][0] == ["ifconfig"] and 0 < runs[0][1]["timeout"] <= 5


@pytest.mark.parametrize("speed, gbit", [("10000\n", 10.0), ("2500", 2.5), ("1", 0.001), ("-1\n", None), ("0", None),
                                         ("unknown", None), (OSError("Invalid argument"), None)])
def test_a_linux_link_speed_is_read_from_sysfs_for_the_interface_carrying_the_address(
        monkeypatch, commands, runs, speed, gbit):
    on(monkeypatch, "linux")
    commands("ip", "-j addr", IP_ADDR)
    opened = files(monkeypatch, {"/sys/class/net/enp1s0/speed": speed})
    assert transfer.link_speed_gbit("10.0.0.2") == gbit
    assert opened == ["/sys/class/net/enp1s0/speed"]
    assert runs[0][0] == ["ip", "-j", "addr"] and 0 < runs[0][1]["timeout"] <= 5


def test_a_linux_address_on_no_interface_has_no_speed_and_reads_nothing(monkeypatch, commands):
    on(monkeypatch, "linux")
    commands("ip", "-j addr", IP_ADDR)
    opened = files(monkeypatch, {})
    assert transfer.link_speed_gbit("10.0.0.9") is None and opened == []


# --- the transfer ------------------------------------------------------------------------------------


def test_the_payload_is_that_many_mebibytes_of_random_bytes(monkeypatch):
    made = []

    class Generator:
        def __init__(self, seed) -> None:
            self.seed = seed

        def integers(self, low, high, size, dtype=None):
            made.append((self.seed, low, high, dtype))
            return SimpleNamespace(nbytes=size * (1 if dtype == "uint8" else 8))

    np = ModuleType("numpy")
    np.uint8 = "uint8"
    np.random = SimpleNamespace(default_rng=Generator)
    monkeypatch.setitem(sys.modules, "numpy", np)
    assert transfer.make_payload(3).nbytes == 3 * 1024 * 1024
    [(seed, low, high, dtype)] = made
    assert dtype == "uint8" and 0 <= low < high <= 256 and high - low > 128  # random bytes, most values


def test_a_checksum_is_the_sha256_of_the_object_s_bytes():
    content = bytes(range(256)) * 4
    assert transfer.checksum(SimpleNamespace(tobytes=lambda: content)) == hashlib.sha256(content).hexdigest()


def test_the_tcp_check_is_bounded_at_every_wait(recording):
    sink = transfer.TcpSink()
    port = sink.listen("127.0.0.1")
    joined = []
    thread = sink.thread
    sink.thread = SimpleNamespace(join=lambda timeout=None: (joined.append(timeout), thread.join(timeout)))
    sent = transfer.tcp_send("127.0.0.1", port, 0.05)
    assert sink.received_bytes() == sent["bytes"] > 0
    timeouts = [value for what, _, value in recording if what == "settimeout"]
    assert len(timeouts) == 3 and all(value is not None and value > 0 for value in timeouts)
    server, client, conn = timeouts  # the sink's listener, the sender's socket, the accepted connection
    assert server <= 15 and client <= 10 and conn <= 10
    assert joined[0] is not None and 0 < joined[0] <= 15


def test_a_sink_that_no_sender_reached_counts_nothing():
    sink = transfer.TcpSink()
    sink.listen("127.0.0.1")
    assert sink.thread.daemon
    sink.server.shutdown(socket.SHUT_RDWR)  # accept fails at once, as its timeout would after 15 s
    assert sink.received_bytes() == 0


def test_a_sender_with_no_time_sends_nothing():
    sink = transfer.TcpSink()
    port = sink.listen("127.0.0.1")
    sent = transfer.tcp_send("127.0.0.1", port, 0)
    assert sent["bytes"] == 0 and sink.received_bytes() == 0


def test_the_sender_pushes_megabyte_blocks_for_the_time_given():
    sink = transfer.TcpSink()
    port = sink.listen("127.0.0.1")
    sent = transfer.tcp_send("127.0.0.1", port, 0.1)
    assert sink.received_bytes() == sent["bytes"]
    assert sent["bytes"] % (1 << 20) == 0 and 0.1 <= sent["seconds"] < 1.0


# --- the census and the driver's own processes -------------------------------------------------------


def test_the_census_runs_its_os_s_commands_through_the_shell_within_a_bound(monkeypatch, runs):
    commands = {"linux": {"ps": "echo linux-ps", "listeners": "echo a; echo b"}, "darwin": {"ps": "echo darwin-ps"}}
    on(monkeypatch, "linux")
    assert census.ray_census(commands) == {"os": "linux", "ps": "linux-ps\n", "listeners": "a\nb\n"}
    assert all(options["shell"] is True and 0 < options["timeout"] <= 15 for _, options in runs)
    on(monkeypatch, "darwin")
    assert census.ray_census(commands) == {"os": "darwin", "ps": "darwin-ps\n"}
    on(monkeypatch, "sunos5")
    assert census.ray_census(commands)["os"] == "linux"


def test_a_census_command_that_times_out_is_named_with_the_error(monkeypatch):
    def run(line, **options):
        if "slow" in line:
            raise subprocess.TimeoutExpired(line, options["timeout"])
        return SimpleNamespace(stdout="fine\n")

    on(monkeypatch, "linux")
    monkeypatch.setattr(subprocess, "run", run)
    observed = census.ray_census({"linux": {"ps": "slow ps", "listeners": "ss"}})
    assert observed["listeners"] == "fine\n" and "ps" not in observed
    assert observed["error"].startswith("slow ps: Command 'slow ps' timed out after ")


def test_the_driver_s_ancestry_includes_every_ancestor_above_init():
    assert census.ancestry("5 2\n2 0\n", 5) == [5, 2]
    assert census.ancestry("7 6\n6 1\nbad line here\n6x 3\n", 7) == [7, 6]
    assert census.ancestry("5 4\n", 5) == [5, 4]  # a parent that ps did not list (it exited) ends the chain


def test_the_driver_names_its_own_process_and_its_parent(commands):
    commands("ps", "-A -o pid= -o ppid=", f"{os.getpid()} {os.getppid()}\n{os.getppid()} 1\n")
    assert census.own_ancestry() == [os.getpid(), os.getppid()]


# --- run(): the driver against a stand-in for Ray --------------------------------------------------


class GetTimeoutError(Exception):
    pass


class Strategy:
    def __init__(self, node_id: str, soft: bool) -> None:
        self.node_id, self.soft = node_id, soft


NODES = [{"name": "alpha", "role": "head", "ip": "10.0.0.1"}, {"name": "beta", "role": "worker", "ip": "10.0.0.2"},
         {"name": "gamma", "role": "worker", "ip": "10.0.0.3"}]
CENSUS = {"linux": {"ps": "ps -A"}, "darwin": {"ps": "ps -A"}}


def expect(nodes=NODES, census=True, collective=None) -> dict:
    return {"nodes": [{**node, **({"census": CENSUS} if census else {})} for node in nodes], "mtu": 9000,
            **({"collective": collective} if collective else {})}


class Ray:
    """Ray as driver.observe_cluster uses it: tasks and actors run where they are pinned; ``answers[(what, node)]``
    is what that task answers there (a value, an exception raised by ray.get, or a function of the
    task's arguments); a task it does not know answers {}."""

    def __init__(self, answers: dict | None = None, up=("alpha", "beta", "gamma"), clock=None) -> None:
        self.answers, self.up, self.clock = dict(answers or {}), up, clock
        self.exceptions = SimpleNamespace(GetTimeoutError=GetTimeoutError)
        self.util = SimpleNamespace(scheduling_strategies=SimpleNamespace(NodeAffinitySchedulingStrategy=Strategy))
        self.options: list[tuple[str, dict]] = []  # what ray.remote was given, by target
        self.placed: list[tuple[str, str, tuple]] = []  # (what, node, arguments)
        self.timeouts: list = []
        self.killed: list[tuple[str, str]] = []
        self.returned: list[tuple[str, str, Ref]] = []  # what each task answered, as the ref it gave
        self.polls = 0

    def init(self, **options) -> None:
        self.init_options = options

    def nodes(self) -> list[dict]:
        self.polls += 1
        up = self.up(self.clock.now) if callable(self.up) else self.up
        return [{"NodeManagerAddress": n["ip"], "NodeID": f"id-{n['name']}", "Alive": True}
                for n in NODES if n["name"] in up]

    def remote(self, **options):
        def wrap(target):
            self.options.append((target.__name__, options))
            return Task(self, target.__name__, isinstance(target, type))
        return wrap

    def get(self, ref, timeout=None):
        self.timeouts.append(timeout)
        if isinstance(ref.value, BaseException):
            raise ref.value
        return ref.value

    def kill(self, actor) -> None:
        self.killed.append((actor.what, actor.node))
        self.placed.append(("kill " + actor.what, actor.node, ()))

    def wait(self, refs, num_returns, timeout):
        """Every ref is done, but those whose answer is LATE."""
        self.timeouts.append(timeout)
        return [r for r in refs if r.value is not LATE], [r for r in refs if r.value is LATE]

    def answer(self, what: str, node: str, args: tuple):
        self.placed.append((what, node, args))
        default = {"node_probe": {"hostname": node}, "make_payload": "payload", "checksum": "d1gest",
                   "tcp_send": {"bytes": 2_500_000_000, "seconds": 2.0}, "link_speed_gbit": 10.0,
                   "udp_listen": 40000 + len(self.placed), "tcp_listen": 40000 + len(self.placed),
                   "received_bytes": 2_500_000_000}
        if what == "path_probe":
            default[what] = {ip: {"ok": True} for ip, _ in args[0]}
        if what == "ray_census":
            default[what] = {"os": "linux", "commands": args[0]}
        value = self.answers.get((what, node), default.get(what, {}))
        ref = Ref(value(*args) if callable(value) else value)
        self.returned.append((what, node, ref))
        return ref


LATE = object()  # a task's answer: it is still running when waited for


class Ref:
    def __init__(self, value) -> None:
        self.value = value


class Task:
    def __init__(self, ray: Ray, what: str, actor: bool, node: str | None = None, soft=None) -> None:
        self.ray, self.what, self.actor, self.node, self.soft = ray, what, actor, node, soft

    def options(self, scheduling_strategy: Strategy) -> "Task":
        return Task(self.ray, self.what, self.actor, scheduling_strategy.node_id.removeprefix("id-"),
                    scheduling_strategy.soft)

    def remote(self, *args):
        assert self.node is not None and self.soft is False, f"{self.what} not pinned hard to a node"
        if self.actor:
            return Actor(self.ray, self.what, self.node)
        return self.ray.answer(self.what, self.node, args)


class Actor:
    """An actor (a NodeAgent) placed on a node: a call of its method ``name`` is
    answered like the task ``name`` on that node."""

    def __init__(self, ray: Ray, what: str, node: str) -> None:
        self.ray, self.what, self.node = ray, what, node
        ray.placed.append((what, node, ()))

    def __getattr__(self, name: str):
        return SimpleNamespace(remote=lambda *args: self.ray.answer(name, self.node, args))


class Clock:
    """time for the module under test: monotonic and perf_counter read ``now``; sleep advances it."""

    def __init__(self) -> None:
        self.now, self.slept = 100.0, []

    def monotonic(self) -> float:
        return self.now

    perf_counter = monotonic

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    for module in NODE_MODULES:
        if hasattr(module, "time"):
            monkeypatch.setattr(module, "time", fake)
    monkeypatch.setattr(census, "own_ancestry", lambda: [4242, 4241])
    return fake


def drive(ray: Ray, timeout: float = 30, nodes=NODES, census=True, collective=None) -> dict:
    return driver.observe_cluster("10.0.0.1:6380", expect(nodes, census, collective), timeout, ray=ray)


def by_name(observed: dict) -> dict:
    return {node["name"]: node for node in observed["nodes"]}


def test_the_driver_reports_every_expected_node_with_its_liveness_and_its_own_processes(clock):
    ray = Ray(up=("alpha", "beta"))
    observed = drive(ray, timeout=4)
    assert observed["address"] == "10.0.0.1:6380" and observed["problems"] == []
    assert observed["driver_pids"] == [4242, 4241]
    nodes = by_name(observed)
    assert [(n["name"], n["role"], n["ip"], n["alive"], n["ray_nodes"]) for n in observed["nodes"]] == [
        ("alpha", "head", "10.0.0.1", True, 1), ("beta", "worker", "10.0.0.2", True, 1),
        ("gamma", "worker", "10.0.0.3", False, 0)]
    assert all("node_id" not in n for n in observed["nodes"])
    assert nodes["gamma"].keys() == {"name", "role", "ip", "alive", "ray_nodes"}  # nothing ran there
    assert nodes["alpha"]["hostname"] == "alpha" and nodes["alpha"]["census"]["commands"] == CENSUS


def test_a_node_down_in_the_middle_does_not_stop_the_next_one_s_probe(clock):
    ray = Ray(up=("alpha", "gamma"))
    nodes = by_name(drive(ray, timeout=2))
    assert nodes["gamma"]["hostname"] == "gamma" and "hostname" not in nodes["beta"]
    assert [node for what, node, _ in ray.placed if what == "node_probe"] == ["alpha", "gamma"]


def test_a_missing_node_is_waited_for_half_the_timeout_polling_every_second(clock):
    ray = Ray(up=("alpha", "beta"), clock=clock)
    drive(ray, timeout=10)
    assert 5 < sum(clock.slept) <= 6 and set(clock.slept) == {1}


def test_a_node_that_joins_late_is_seen_within_a_second(clock):
    ray = Ray(up=lambda now: ("alpha", "beta", "gamma") if now >= 102.5 else ("alpha", "beta"), clock=clock)
    observed = drive(ray, timeout=30)
    assert by_name(observed)["gamma"]["alive"] is True
    assert 2.5 <= sum(clock.slept) <= 3.5


def test_every_task_asks_for_no_cpu_and_every_wait_is_the_timeout(clock):
    ray = Ray()
    drive(ray, timeout=17)
    assert ray.options and all(options.get("num_cpus") == 0 for _, options in ray.options)
    actors = {what: options for what, options in ray.options if what == "NodeAgent"}
    assert actors["NodeAgent"]["max_concurrency"] >= 2  # its sink counts while the node is asked again
    assert ray.timeouts and set(ray.timeouts) == {17}
    assert ray.init_options == {"address": "10.0.0.1:6380", "logging_level": "ERROR", "log_to_driver": False}


def test_each_node_s_probe_time_is_recorded_to_a_tenth_of_a_second(clock):
    def slow(*args):
        clock.now += 1.26
        return {"hostname": "beta"}

    observed = drive(Ray({("node_probe", "beta"): slow}))
    assert by_name(observed)["beta"]["probe_seconds"] == 1.3 and by_name(observed)["beta"]["hostname"] == "beta"
    assert by_name(observed)["alpha"]["probe_seconds"] == 0.0


def test_a_probe_that_times_out_or_fails_is_reported_in_a_line(clock):
    long_line = "x" * 400
    observed = drive(Ray({("node_probe", "beta"): GetTimeoutError("late"),
                          ("node_probe", "gamma"): RuntimeError(f"{long_line}\nTraceback follows")}), timeout=29.6)
    nodes = by_name(observed)
    assert nodes["beta"]["probe_error"] == "did not run its MLX job within 30 s" and "probe_seconds" not in nodes["beta"]
    assert nodes["gamma"]["probe_error"] == "the MLX job failed: " + "x" * 300
    assert nodes["alpha"].get("probe_error") is None


def test_each_node_probes_every_other_live_node_s_echo_at_the_expected_mtu(clock):
    ports = {"alpha": 41001, "beta": 41002, "gamma": 41003}
    ray = Ray({("udp_listen", name): port for name, port in ports.items()}, up=("alpha", "beta", "gamma"))
    observed = drive(ray)
    probes = {node: args for what, node, args in ray.placed if what == "path_probe"}
    assert probes == {"alpha": ([("10.0.0.2", 41002), ("10.0.0.3", 41003)], 9000),
                      "beta": ([("10.0.0.1", 41001), ("10.0.0.3", 41003)], 9000),
                      "gamma": ([("10.0.0.1", 41001), ("10.0.0.2", 41002)], 9000)}
    listened = [(node, args) for what, node, args in ray.placed if what == "udp_listen"]
    assert listened == [("alpha", ("10.0.0.1",)), ("beta", ("10.0.0.2",)), ("gamma", ("10.0.0.3",))]  # the echoes
    assert by_name(observed)["beta"]["paths"] == {"10.0.0.1": {"ok": True}, "10.0.0.3": {"ok": True}}
    assert sorted(node for what, node in ray.killed if what == "NodeAgent") == ["alpha", "beta", "gamma"]


def test_a_down_node_has_no_echo_and_is_probed_by_no_one(clock):
    ray = Ray(up=("alpha", "beta"))
    observed = drive(ray)
    assert {node for what, node, _ in ray.placed if what in ("NodeAgent", "path_probe")} == {"alpha", "beta"}
    assert by_name(observed)["alpha"]["paths"] == {"10.0.0.2": {"ok": True}}
    assert "path_error" not in by_name(observed)["gamma"]


def test_a_path_probe_that_breaks_off_is_named_by_its_error_and_the_others_still_count(clock):
    observed = drive(Ray({("path_probe", "beta"): GetTimeoutError("late")}))
    nodes = by_name(observed)
    assert nodes["beta"]["path_error"] == "GetTimeoutError" and "paths" not in nodes["beta"]
    assert "paths" in nodes["alpha"] and "paths" in nodes["gamma"] and "path_error" not in nodes["gamma"]


def test_an_echo_that_never_listens_leaves_every_live_node_without_paths(clock):
    ray = Ray({("udp_listen", "gamma"): ConnectionError("actor died")}, up=("alpha", "gamma"))
    observed = drive(ray)
    nodes = by_name(observed)
    assert nodes["alpha"]["path_error"] == nodes["gamma"]["path_error"] == "no UDP echo (ConnectionError)"
    assert "path_error" not in nodes["beta"] and not any(what == "path_probe" for what, _, _ in ray.placed)
    assert sorted(node for what, node in ray.killed if what == "NodeAgent") == ["alpha", "gamma"]


def test_an_object_moves_from_the_head_to_each_worker_and_both_checksums_are_reported(clock):
    ray = Ray({("checksum", "beta"): "beta-sum", ("checksum", "gamma"): "gamma-sum", ("checksum", "alpha"): "head-sum"})
    observed = drive(ray)
    nodes = by_name(observed)
    assert "transfer" not in nodes["alpha"]
    for name in ("beta", "gamma"):
        assert nodes[name]["transfer"] == {"mb": transfer.TRANSFER_MB, "received": f"{name}-sum", "sent": "head-sum",
                                           "seconds": 0.0}
    assert [(node, args) for what, node, args in ray.placed if what == "make_payload"] == [
        ("alpha", (transfer.TRANSFER_MB,))]  # one payload, sent to every worker at once
    assert [node for what, node, _ in ray.placed if what == "checksum"] == ["alpha", "beta", "gamma"]
    order = [what for what, _, _ in ray.placed]
    assert max(i for i, what in enumerate(order) if what == "checksum") < order.index("tcp_send")  # moves, then TCP


def test_both_checksums_are_of_the_payload_made_on_the_head_and_the_move_is_timed_to_the_millisecond(clock):
    def arrives_slowly(payload):
        clock.now += 0.1234
        return "beta-sum"

    ray = Ray({("checksum", "beta"): arrives_slowly})
    nodes = by_name(drive(ray))
    payloads = [ref for what, _, ref in ray.returned if what == "make_payload"]
    summed = [args[0] for what, _, args in ray.placed if what == "checksum"]
    assert len(payloads) == 1 and summed == payloads * 3
    # each move is timed from the moment all were sent until its checksum is read, in node order
    assert nodes["beta"]["transfer"]["seconds"] == 0.123 and nodes["gamma"]["transfer"]["seconds"] == 0.123


def test_tcp_throughput_is_what_the_worker_received_over_what_the_head_took_to_send(clock):
    ray = Ray({("received_bytes", "beta"): 1_234_567_890, ("tcp_send", "alpha"): {"bytes": 2 << 30, "seconds": 2.0},
               ("tcp_listen", "beta"): 45678, ("link_speed_gbit", "beta"): 2.5, ("link_speed_gbit", "gamma"): None})
    observed = drive(ray)
    nodes = by_name(observed)
    assert nodes["beta"]["gbit_s"] == 4.94  # 1234567890 bytes in 2 s, to two decimals
    assert nodes["beta"]["link_gbit_s"] == 2.5  # the slower end bounds it
    assert nodes["gamma"]["gbit_s"] == 10.0 and nodes["gamma"]["link_gbit_s"] is None  # one end did not say
    just_past = drive(Ray({("received_bytes", "beta"): 1_233_750_001}))  # 4.935000004 Gbit/s: a Gbit is 10^9 bits
    assert by_name(just_past)["beta"]["gbit_s"] == 4.94
    listens = [(node, args) for what, node, args in ray.placed if what == "tcp_listen"]
    assert listens == [("beta", ("10.0.0.2",)), ("gamma", ("10.0.0.3",))]  # each worker's sink, on its ip
    sends = [(node, args) for what, node, args in ray.placed if what == "tcp_send"]
    assert sends[0] == ("alpha", ("10.0.0.2", 45678, transfer.TCP_SECONDS))
    assert [(node, args) for what, node, args in ray.placed if what == "link_speed_gbit"][:2] == [
        ("alpha", ("10.0.0.1",)), ("beta", ("10.0.0.2",))]
    assert sorted(node for what, node in ray.killed if what == "NodeAgent") == ["alpha", "beta", "gamma"]


def test_a_transfer_that_breaks_off_is_reported_in_its_first_line_and_the_next_worker_still_runs(clock):
    observed = drive(Ray({("received_bytes", "beta"): RuntimeError("y" * 250 + "\nmore")}))
    nodes = by_name(observed)
    assert nodes["beta"]["transfer_error"] == "y" * 200 and "gbit_s" not in nodes["beta"]
    assert nodes["gamma"]["gbit_s"] == 10.0 and "transfer_error" not in nodes["gamma"]


def test_an_object_that_does_not_arrive_is_named_and_its_node_gets_no_tcp_check(clock):
    ray = Ray({("checksum", "beta"): RuntimeError("ObjectLost\nmore")})
    nodes = by_name(drive(ray))
    assert nodes["beta"]["transfer_error"] == "ObjectLost" and "gbit_s" not in nodes["beta"]
    assert [args[0] for what, _, args in ray.placed if what == "tcp_send"] == ["10.0.0.3"]
    assert nodes["gamma"]["gbit_s"] == 10.0


@pytest.mark.parametrize("up", [("beta", "gamma"), ("alpha",)])
def test_without_a_live_head_or_workers_nothing_is_transferred(clock, up):
    ray = Ray(up=up)
    observed = drive(ray)
    assert not any(what in ("make_payload", "tcp_listen", "tcp_send") for what, _, _ in ray.placed)
    assert not any(key in node for key in ("transfer", "transfer_error", "gbit_s", "link_gbit_s")
                   for node in observed["nodes"])


def test_the_census_runs_on_every_live_node_with_its_own_commands_and_a_failure_is_named(clock):
    ray = Ray({("ray_census", "beta"): GetTimeoutError("late")}, up=("alpha", "beta"))
    observed = drive(ray)
    nodes = by_name(observed)
    assert nodes["alpha"]["census"] == {"os": "linux", "commands": CENSUS}
    assert nodes["beta"]["census"] == {"error": "GetTimeoutError"}
    assert "census" not in nodes["gamma"]
    ray = Ray()
    observed = drive(ray, census=False)
    assert not any(what == "ray_census" for what, _, _ in ray.placed)
    assert not any("census" in node for node in observed["nodes"])


def test_alive_nodes_are_grouped_by_address_and_dead_ones_left_out():
    assert scheduling.alive_by_ip([
        {"NodeManagerAddress": "10.0.0.1", "NodeID": "a", "Alive": True},
        {"NodeManagerAddress": "10.0.0.2", "NodeID": "b-dead", "Alive": False},
        {"NodeManagerAddress": "10.0.0.2", "NodeID": "b", "Alive": True},
        {"NodeManagerAddress": "10.0.0.1", "NodeID": "a2", "Alive": True},
        {"NodeManagerAddress": "10.0.0.3", "NodeID": "c"},
    ]) == {"10.0.0.1": ["a", "a2"], "10.0.0.2": ["b"]}


# --- main(): what is printed -----------------------------------------------------------------------


def test_a_failing_driver_prints_the_last_line_of_its_error_cut_to_500_characters(capsys, monkeypatch):
    def breaks(address, expect, timeout):
        raise ValueError("z" * 600)

    monkeypatch.setattr(driver, "observe_cluster", breaks)
    monkeypatch.setattr("sys.argv", ["driver.py", "--address", "a:1", "--expect", "{}", "--timeout", "1.4"])
    driver.main()
    out = capsys.readouterr().out
    assert out.startswith("SAF-VERIFY ") and out.endswith("\n")
    [problem] = json.loads(out.removeprefix("SAF-VERIFY "))["problems"]
    assert problem == "the verification driver failed: " + ("ValueError: " + "z" * 600)[:500]


def test_an_out_of_time_driver_names_its_whole_bound(capsys, monkeypatch):
    def hangs(address, expect, timeout):
        raise driver.Deadline()

    monkeypatch.setattr(driver, "observe_cluster", hangs)
    monkeypatch.setattr("sys.argv", ["driver.py", "--address", "a:1", "--expect", "{}", "--timeout", "1.4"])
    driver.main()
    observed = json.loads(capsys.readouterr().out.removeprefix("SAF-VERIFY "))
    assert observed == {"nodes": [], "problems": ["the verification did not finish within 64 s"]}


@pytest.mark.parametrize("argv", [["--expect", "{}"], ["--address", "a:1"]])
def test_the_driver_refuses_to_run_without_an_address_or_an_expectation(capsys, monkeypatch, argv):
    monkeypatch.setattr(driver, "observe_cluster", lambda *args: pytest.fail("ran without what it needs"))
    monkeypatch.setattr("sys.argv", ["driver.py", *argv])
    with pytest.raises(SystemExit) as refused:
        driver.main()
    assert refused.value.code == 2 and "required" in capsys.readouterr().err


def test_the_driver_s_help_says_what_the_expectation_holds(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["driver.py", "--help"])
    with pytest.raises(SystemExit):
        driver.main()
    described = " ".join(capsys.readouterr().out.split())
    assert "--expect EXPECT JSON: nodes [{name, role, ip}], pins, mtu, slow_ratio --timeout" in described


# --- the order of the steps: warm processes, the network first, the probes last and alone ----------

RING = {"backend": "ring", "port": 6390}
REACHED = {"taken": {}, "unreachable": {}}


def ring_answers(more: dict | None = None) -> dict:
    return {**{("ring_reach", name): REACHED for name in ("alpha", "beta", "gamma")}, **(more or {})}


def steps_of(ray: Ray) -> list[str]:
    """What was placed, in order, without repeats: the driver's steps as the cluster saw them."""
    order: list[str] = []
    for what, _, _ in ray.placed:
        if what not in order:
            order.append(what)
    return order


def test_every_actor_starts_on_every_live_node_before_the_network_is_checked(clock):
    ray = Ray(ring_answers(), up=("alpha", "beta", "gamma"))
    drive(ray, collective=RING)
    started = [(what, node) for what, node, _ in ray.placed if what == "NodeAgent"]
    assert started == [("NodeAgent", n) for n in ("alpha", "beta", "gamma")]
    order = steps_of(ray)
    assert order[0] == "NodeAgent"  # every process started first
    assert order.index("make_payload") < order.index("path_probe") < order.index("tcp_send")
    assert order.index("node_probe") < order.index("ray_census")  # the census last: Ray has settled the longest
    assert order.index("tcp_send") < order.index("ring_reach") < order.index("collective_rank") < order.index("node_probe")
    assert ("NodeAgent", {"num_cpus": 0, "max_concurrency": 2}) in ray.options


def test_every_probe_runs_on_its_own_node_s_agent_one_after_another(clock):
    ray = Ray()
    observed = drive(ray)
    assert [(node, args) for what, node, args in ray.placed if what == "node_probe"] == \
        [("alpha", (None,)), ("beta", (None,)), ("gamma", (None,))]  # no hardware said: each finds its sizes
    assert {n["name"]: n["hostname"] for n in observed["nodes"]} == {"alpha": "alpha", "beta": "beta", "gamma": "gamma"}
    order = [what for what, _, _ in ray.placed]
    assert order.index("hardware_label") < order.index("node_probe")


def sized(node: str, f32: int, f16: int) -> dict:
    return {"hostname": node, "size_f32": f32, "size_f16": f16, "gflops_f32": 10.0, "gflops_f16": 10.0}


def test_nodes_of_one_hardware_are_measured_at_the_sizes_the_first_found(clock):
    ray = Ray({("hardware_label", "alpha"): "M3 Ultra / gpu", ("hardware_label", "beta"): "M2 Max / gpu",
               ("hardware_label", "gamma"): "M3 Ultra / gpu", ("node_probe", "alpha"): sized("alpha", 4096, 8192),
               ("node_probe", "beta"): sized("beta", 2048, 4096)})
    nodes = by_name(drive(ray))
    assert [(node, args) for what, node, args in ray.placed if what == "node_probe"] == [
        ("alpha", (None,)), ("beta", (None,)), ("gamma", ({"f32": 4096, "f16": 8192},))]
    assert nodes["gamma"]["sized_by"] == "alpha" and "sized_by" not in nodes["alpha"] and "sized_by" not in nodes["beta"]


def test_a_first_probe_that_failed_or_a_node_that_does_not_say_its_hardware_shares_no_sizes(clock):
    ray = Ray({("hardware_label", "alpha"): "cpu X / cpu", ("hardware_label", "beta"): "cpu X / cpu",
               ("hardware_label", "gamma"): GetTimeoutError("late"), ("node_probe", "alpha"): RuntimeError("broken"),
               ("node_probe", "beta"): sized("beta", 512, 256)})
    drive(ray)
    assert [(node, args) for what, node, args in ray.placed if what == "node_probe"] == [
        ("alpha", (None,)), ("beta", (None,)), ("gamma", (None,))]
    ray = Ray({("hardware_label", n): "cpu X / cpu" for n in ("alpha", "beta", "gamma")} |
              {("node_probe", "alpha"): {"hostname": "alpha", "size_f32": 512}})  # a dtype without its size
    drive(ray)
    assert [args for what, _, args in ray.placed if what == "node_probe"] == [(None,)] * 3


def test_a_slow_node_is_measured_again_at_its_own_sizes(clock):
    probes = {"alpha": sized("alpha", 1024, 512), "beta": sized("beta", 1024, 512) | {"gflops_f32": 1.0},
              "gamma": sized("gamma", 1024, 512)}
    ray = Ray({("hardware_label", n): "cpu X / cpu" for n in probes} | {("node_probe", n): p for n, p in probes.items()})
    observed = driver.observe_cluster("10.0.0.1:6380", {**expect(), "slow_ratio": 0.5}, 30, ray=ray)
    calls = [(node, args) for what, node, args in ray.placed if what == "node_probe"]
    assert calls[-1] == ("beta", ({"f32": 1024, "f16": 512},)) and len(calls) == 4
    assert by_name(observed)["beta"]["reprobed"] is True


def test_the_agents_run_the_ranks_and_are_killed_only_at_the_end(clock):
    ray = Ray(ring_answers(), up=("alpha", "beta", "gamma"))
    drive(ray, collective=RING)
    order = [what for what, _, _ in ray.placed]
    assert "kill NodeAgent" not in order[:max(i for i, what in enumerate(order) if what == "node_probe")]
    assert sorted(node for what, node in ray.killed if what == "NodeAgent") == ["alpha", "beta", "gamma"]


def test_actors_are_killed_when_a_step_breaks(clock, monkeypatch):
    ray = Ray()

    def broken(*args):
        raise RuntimeError("the transfers broke")

    monkeypatch.setattr(transfer, "observe_tcp", broken)
    with pytest.raises(RuntimeError):
        drive(ray)
    assert sorted(node for what, node in ray.killed if what == "NodeAgent") == ["alpha", "beta", "gamma"]


def test_one_live_node_runs_no_collective(clock):
    ray = Ray(ring_answers(), up=("alpha",))
    observed = drive(ray, collective=RING)
    assert not any(what in ("ring_reach", "collective_rank") for what, _, _ in ray.placed)
    assert observed["collective"]["ranks"] == ["alpha"] and observed["collective"]["results"] == {}


def test_the_collective_runs_each_rank_on_its_warm_actor_with_its_index_and_the_ring(clock):
    results = {("collective_rank", n): {"rank": i} for i, n in enumerate(("alpha", "beta", "gamma"))}
    ray = Ray(ring_answers(results), up=("alpha", "beta", "gamma"))
    observed = drive(ray, collective=RING)
    calls = [(node, args) for what, node, args in ray.placed if what == "collective_rank"]
    hosts = [["10.0.0.1:6390"], ["10.0.0.2:6391"], ["10.0.0.3:6392"]]
    assert calls == [(n, (i, hosts, ring.COLLECTIVE_REPEATS, "ring")) for i, n in enumerate(("alpha", "beta", "gamma"))]
    assert observed["collective"]["results"] == {"alpha": {"rank": 0}, "beta": {"rank": 1}, "gamma": {"rank": 2}}
    assert ring.COLLECTIVE_S in ray.timeouts


def test_a_rank_still_running_after_the_bound_is_named_and_its_agent_killed_unprobed(clock):
    ray = Ray(ring_answers({("collective_rank", "beta"): LATE}), up=("alpha", "beta", "gamma"))
    observed = drive(ray, collective=RING)
    assert observed["collective"]["results"]["beta"] == {"error": f"did not finish within {ring.COLLECTIVE_S:.0f} s"}
    assert ray.killed == [("NodeAgent", "beta"), ("NodeAgent", "alpha"), ("NodeAgent", "gamma")]  # at once, once
    assert by_name(observed)["beta"]["probe_error"] == "not probed: its agent was stopped, stuck in the collective"
    assert [node for what, node, _ in ray.placed if what == "node_probe"] == ["alpha", "gamma"]


def test_the_report_says_how_long_each_step_took(clock):
    def slow(seconds):
        def answer(*args):
            clock.now += seconds
            return {"hostname": "x"}
        return answer

    ray = Ray({("node_probe", "beta"): slow(2.5), ("path_probe", "alpha"): slow(0.25)}, clock=clock)
    observed = drive(ray)
    steps = observed["step_seconds"]
    assert list(steps) == ["connect", "objects", "paths", "tcp", "probes", "census"]
    assert steps["probes"] == 2.5 and steps["paths"] == 0.25 and steps["connect"] == 0.0


def test_the_node_agent_echoes_and_sinks_on_real_sockets_and_probes_only_once_mlx_is_imported(monkeypatch):
    imported = threading.Event()

    def slow_import():
        time.sleep(0.2)
        imported.set()

    monkeypatch.setattr(agent, "_import_mlx", slow_import)
    monkeypatch.setattr(agent, "node_probe", lambda sizes: {"mlx_was_imported": imported.is_set(), "sizes": sizes})
    node_agent = agent.NodeAgent()
    try:
        port = node_agent.udp_listen("127.0.0.1")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2)
            client.sendto(b"T" * 8 + b"x" * 92, ("127.0.0.1", port))
            assert client.recv(64) == b"T" * 8 + (100).to_bytes(4, "big")
        sink_port = node_agent.tcp_listen("127.0.0.1")
        sent = transfer.tcp_send("127.0.0.1", sink_port, 0.05)
        assert node_agent.received_bytes() == sent["bytes"] > 0
        assert node_agent.node_probe({"f32": 64}) == {"mlx_was_imported": True, "sizes": {"f32": 64}}
    finally:
        node_agent.echo.close()
