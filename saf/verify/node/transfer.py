"""The transfer job: the head's 64 MB object sent to every node through Ray's object store (it must
arrive intact), TCP throughput from the head to each node's agent, and the link speed at both ends.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time

from .scheduling import on_node

TRANSFER_MB = 64
TCP_SECONDS = 1.0  # a second of TCP: slow start is milliseconds of it on a LAN


def interface_of(ip_addr_json: str, ip: str) -> str | None:
    """Linux: the interface carrying ``ip``, from ``ip -j addr``."""
    for link in json.loads(ip_addr_json or "[]"):
        if any(address.get("local") == ip for address in link.get("addr_info", [])):
            return link.get("ifname")
    return None


def speed_from_ifconfig(ifconfig: str, ip: str) -> float | None:
    """macOS: the negotiated speed (Gbit/s) of the interface carrying ``ip``, from ``ifconfig``'s
    ``media: autoselect (10Gbase-T <full-duplex>)``; None for a tunnel or Wi-Fi (no such line)."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in ifconfig.splitlines():
        if line and not line[0].isspace() and current:
            blocks.append(current)
            current = []
        current.append(line)
    blocks.append(current)
    for block in blocks:
        text = "\n".join(block)
        if f"inet {ip} " in text or text.rstrip().endswith(f"inet {ip}"):
            found = re.search(r"media:.*?\((\d+(?:\.\d+)?)(G?)[bB]ase", text)  # 10Gbase-T, 1000baseT, 2500Base-T
            if found:
                return float(found.group(1)) / (1 if found.group(2) else 1000)
    return None


def link_speed_gbit(ip: str, sys_class_net: str = "/sys/class/net") -> float | None:
    """The speed of the link carrying ``ip`` on this node, in Gbit/s, where the OS reports one
    (Linux: in ``sys_class_net``/<interface>/speed)."""
    try:
        if sys.platform == "darwin":
            return speed_from_ifconfig(
                subprocess.run(["ifconfig"], capture_output=True, text=True, timeout=5).stdout, ip
            )
        name = interface_of(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, timeout=5).stdout, ip)
        if name is None:
            return None
        with open(f"{sys_class_net}/{name}/speed") as speed:  # Mbit/s; -1 or an error when unknown
            megabits = int(speed.read().strip())
        return megabits / 1000 if megabits > 0 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def make_payload(megabytes: int):
    import numpy as np

    return np.random.default_rng(1).integers(0, 255, size=megabytes * 1024 * 1024, dtype=np.uint8)


def checksum(array) -> str:
    import hashlib

    return hashlib.sha256(array.tobytes()).hexdigest()


class TcpSink:
    """A TCP receiver on a node's cluster ip: counts what a sender pushes for a while."""

    def listen(self, ip: str) -> int:
        self.server = socket.socket()
        self.server.bind((ip, 0))
        self.server.listen(1)
        self.server.settimeout(15)
        self.received = 0
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()
        return self.server.getsockname()[1]

    def _receive(self) -> None:
        try:
            conn, _ = self.server.accept()
            conn.settimeout(10)
            with conn:
                while True:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        break
                    self.received += len(chunk)
        except OSError:
            pass

    def received_bytes(self) -> int:
        self.thread.join(timeout=15)
        return self.received


def tcp_send(ip: str, port: int, seconds: float) -> dict:
    block = b"\0" * (1 << 20)
    sent = 0
    with socket.create_connection((ip, port), timeout=10) as conn:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.sendall(block)
            sent += len(block)
        elapsed = time.perf_counter() - start
    return {"bytes": sent, "seconds": elapsed}


# --- the driver's side ------------------------------------------------------------------------------


def observe_objects(ray, nodes: dict, timeout: float) -> None:
    """The head's 64 MB object, sent to every live node at once: it must arrive intact. Tasks, not the
    agents: this runs while the agents' processes start."""
    head = next((n for n in nodes.values() if n["role"] == "head" and n["node_id"]), None)
    targets = [node for node in nodes.values() if node["node_id"] and node is not head]
    if head is None or not targets:
        return
    make = ray.remote(num_cpus=0)(make_payload)
    digest = ray.remote(num_cpus=0)(checksum)
    payload = make.options(scheduling_strategy=on_node(ray, head["node_id"])).remote(TRANSFER_MB)
    expected = digest.options(scheduling_strategy=on_node(ray, head["node_id"])).remote(payload)
    start = time.perf_counter()
    received = {
        node["name"]: digest.options(scheduling_strategy=on_node(ray, node["node_id"])).remote(payload)
        for node in targets
    }
    for node in targets:
        try:
            node["transfer"] = {
                "mb": TRANSFER_MB,
                "received": ray.get(received[node["name"]], timeout=timeout),
                "sent": ray.get(expected, timeout=timeout),
                "seconds": round(time.perf_counter() - start, 3),
            }
        except Exception as error:  # noqa: BLE001
            node["transfer_error"] = str(error).splitlines()[0][:200]


def observe_tcp(ray, nodes: dict, agents: dict, timeout: float) -> None:
    """TCP from the head to each node's agent in turn (a throughput figure: one stream at a time), and
    the slower end's link speed; not for a node whose object did not arrive."""
    head = next((n for n in nodes.values() if n["role"] == "head" and n["node_id"]), None)
    if head is None:
        return
    sender = ray.remote(num_cpus=0)(tcp_send)
    link = ray.remote(num_cpus=0)(link_speed_gbit)
    for node in nodes.values():
        if node is head or node["name"] not in agents or "transfer_error" in node:
            continue
        try:
            sink = agents[node["name"]]
            port = ray.get(sink.tcp_listen.remote(node["ip"]), timeout=timeout)
            sent = ray.get(
                sender.options(scheduling_strategy=on_node(ray, head["node_id"])).remote(node["ip"], port, TCP_SECONDS),
                timeout=timeout,
            )
            got = ray.get(sink.received_bytes.remote(), timeout=timeout)
            node["gbit_s"] = round(got * 8 / sent["seconds"] / 1e9, 2)
            speeds = [
                ray.get(
                    link.options(scheduling_strategy=on_node(ray, end["node_id"])).remote(end["ip"]), timeout=timeout
                )
                for end in (head, node)
            ]
            node["link_gbit_s"] = min(speeds) if None not in speeds else None  # the slower end bounds it
        except Exception as error:  # noqa: BLE001
            node["transfer_error"] = str(error).splitlines()[0][:200]
