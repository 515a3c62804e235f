"""The path job: does a don't-fragment UDP datagram filling an MTU frame pass from every node to
every other? Each node's agent keeps a UDP echo; each node probes its peers' echoes, all at once.

Not ping: macOS caps raw IP datagrams, ICMP ones included, at net.inet.raw.maxdgram, 8192 bytes
by default. Source: Apple's xnu (github.com/apple/darwin-xnu), bsd/netinet/raw_ip.c:
`#define RIPSNDQ 8192`, `rip_sendspace = RIPSNDQ` published as the sysctl net.inet.raw.maxdgram
("Maximum outgoing raw IP datagram size") and reserved as every raw socket's send buffer in
rip_attach (soreserve), so `ping -D -s 8972` fails there whatever the path. UDP's own cap,
net.inet.udp.maxdgram, is 9216 (bsd/netinet/udp_usrreq.c, `udp_sendspace = 9216`), above the
8972 bytes of a 9000 MTU; the probe's socket also raises its send buffer (SO_SNDBUF).
"""

from __future__ import annotations

import socket
import sys
import threading
import time

from .scheduling import on_node
from .system import os_family

HEADERS = {socket.AF_INET: 28, socket.AF_INET6: 48}  # IP + UDP headers: payload + headers = frame MTU
DONT_FRAGMENT = {  # setsockopt(level, option, value) that forbids fragmenting this socket's datagrams
    ("linux", socket.AF_INET): (socket.IPPROTO_IP, 10, 2),  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
    ("darwin", socket.AF_INET): (socket.IPPROTO_IP, 28, 1),  # IP_DONTFRAG (netinet/in.h)
    ("linux", socket.AF_INET6): (socket.IPPROTO_IPV6, 62, 1),  # IPV6_DONTFRAG (RFC 3542)
    ("darwin", socket.AF_INET6): (socket.IPPROTO_IPV6, 62, 1),
}
TOKEN_BYTES = 8  # the smallest probe: its token, echoed back with the length received
PROBE_ATTEMPTS = 3  # a size fails only when none of its datagrams is echoed
PROBE_WAIT_S = 0.5


def address_family(ip: str) -> int:
    """AF_INET6 for an IPv6 address, else AF_INET."""
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def dont_fragment(platform_name: str, family: int) -> tuple[int, int, int]:
    """The setsockopt arguments that forbid fragmenting a UDP socket's datagrams on this OS."""
    return DONT_FRAGMENT[(os_family(platform_name), family)]


class UdpEcho:
    """A UDP responder on a node's cluster ip: answers each datagram with its token and its length."""

    def listen(self, ip: str) -> int:
        self.sock = socket.socket(address_family(ip), socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(PROBE_WAIT_S)
        self.closed = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self.sock.getsockname()[1]

    def _serve(self) -> None:
        while not self.closed:
            try:
                data, sender = self.sock.recvfrom(1 << 16)
                self.sock.sendto(data[:TOKEN_BYTES] + len(data).to_bytes(4, "big"), sender)
            except OSError:
                continue

    def close(self) -> None:
        self.closed = True
        self.thread.join(timeout=2 * PROBE_WAIT_S)
        self.sock.close()


def largest_passing(passes, low: int, high: int) -> int | None:
    """The largest size in [low, high) that passes, ``high`` having failed (bisection); None when
    even ``low`` fails."""
    if not passes(low):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if passes(middle):
            low = middle
        else:
            high = middle
    return low


def _echoed(sock: socket.socket, peer: tuple, size: int) -> bool:
    """True when a don't-fragment datagram of ``size`` bytes reaches the peer's echo whole."""
    import os

    for _ in range(PROBE_ATTEMPTS):
        token = os.urandom(TOKEN_BYTES)
        try:
            sock.sendto(token + bytes(size - TOKEN_BYTES), peer)
        except OSError:  # EMSGSIZE: larger than the MTU this host knows for the path
            return False
        deadline = time.monotonic() + PROBE_WAIT_S
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                reply = sock.recv(64)
            except OSError:
                break
            if reply == token + size.to_bytes(4, "big"):
                return True
    return False


def path_probe(peers: list, mtu: int) -> dict:
    """For each peer (ip, echo port): does a don't-fragment datagram filling an ``mtu`` frame pass?
    On failure, the largest payload that does (bisection)."""
    results = {}
    for ip, port in peers:
        family = address_family(ip)
        headers = HEADERS[family]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(*dont_fragment(sys.platform, family))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)

            def passes(size: int, sock: socket.socket = sock, peer: tuple = (ip, port)) -> bool:
                return _echoed(sock, peer, size)

            payload = mtu - headers
            if passes(payload):
                results[ip] = {"ok": True, "largest": payload, "headers": headers}
            else:
                results[ip] = {
                    "ok": False,
                    "largest": largest_passing(passes, TOKEN_BYTES, payload),
                    "headers": headers,
                }
    return results


# --- the driver's side ------------------------------------------------------------------------------


def observe_paths(ray, nodes: dict, agents: dict, mtu: int, timeout: float) -> None:
    """Every alive node probes every other alive node's UDP echo, all nodes at once."""
    live = {name: node for name, node in nodes.items() if name in agents}
    try:
        ports = {
            name: ray.get(agents[name].udp_listen.remote(node["ip"]), timeout=timeout) for name, node in live.items()
        }
        probe = ray.remote(num_cpus=0)(path_probe)
        pending = {
            name: probe.options(scheduling_strategy=on_node(ray, node["node_id"])).remote(
                [(peer["ip"], ports[other]) for other, peer in live.items() if other != name], mtu
            )
            for name, node in live.items()
        }
        for name, ref in pending.items():
            try:
                nodes[name]["paths"] = ray.get(ref, timeout=timeout)
            except Exception as error:  # noqa: BLE001
                nodes[name]["path_error"] = type(error).__name__
    except Exception as error:  # noqa: BLE001 - an echo that never listened: no node's path is known
        for name in live:
            nodes[name].setdefault("path_error", f"no UDP echo ({type(error).__name__})")
