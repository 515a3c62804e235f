"""The one actor the driver keeps on each node: its UDP echo, its TCP sink, its MLX probe and its
rank of the collective, in one process (a Ray worker process costs about a CPU-second to start).
"""

from __future__ import annotations

import threading

from .measure import describe_device, node_probe
from .netprobe import UdpEcho
from .ring import collective_rank
from .transfer import TcpSink


def _import_mlx() -> None:
    import mlx.core  # noqa: F401


class NodeAgent:
    """What the driver keeps on a node. MLX is imported in the background from the start, so the
    probe pays neither the process nor the import."""

    def __init__(self) -> None:
        self.echo, self.sink = UdpEcho(), TcpSink()
        self.mlx = threading.Thread(target=_import_mlx, daemon=True)
        self.mlx.start()

    def udp_listen(self, ip: str) -> int:
        return self.echo.listen(ip)

    def tcp_listen(self, ip: str) -> int:
        return self.sink.listen(ip)

    def received_bytes(self) -> int:
        return self.sink.received_bytes()

    def hardware_label(self) -> str:
        """What the probe will report as ``hardware``: nodes of the same are measured at the same sizes."""
        self.mlx.join()
        import mlx.core as mx

        kind, name, _ = describe_device(mx)
        return f"{name} / {kind}"

    def node_probe(self, sizes: dict | None = None) -> dict:
        self.mlx.join()
        return node_probe(sizes)

    def collective_rank(self, rank: int, hosts: list, repeats: dict, backend: str) -> dict:
        """This node's rank of the collective; its ring sockets close when the driver kills the agent."""
        self.mlx.join()
        return collective_rank(rank, hosts, repeats, backend)
