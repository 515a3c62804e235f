"""The host firewall for Ray: which ports, which peers, and the names of what SAF puts on a node.

Every node of a cluster gets the same rule set: every port Ray listens on (``saf.ports``) and the
MLX ring's,
admitted from the cluster's nodes (their cluster ips) and loopback only; everyone else is refused
on those ports, and nothing else is touched. Linux loads it as the nftables table ``inet saf``,
macOS as the pf anchor ``com.apple/org.saf.ray`` (the stock /etc/pf.conf evaluates
``anchor "com.apple/*"``, so /etc/pf.conf stays as Apple ships it).

The rules carry a digest of themselves (an nft rule comment, a pf label) so that a fact can tell
whether the rules loaded on a node are the ones this run renders.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pyinfra.api.exceptions import PyinfraError

from saf.node_data import NodeData
from saf.ports import mlx_ring_ports, single_ports, worker_range

DIGEST_PREFIX = "saf-ray-"  # the loaded rules' comment (nft) or label (pf): saf-ray-<digest>

NFT_TABLE = "inet saf"
NFT_FILE = "/etc/saf/firewall.nft"
NFT_TEMPLATE = "templates/firewall.nft.j2"
UNIT = "saf-firewall.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
UNIT_TEMPLATE = "templates/saf-firewall.service.j2"

PF_ANCHOR = "com.apple/org.saf.ray"
PF_FILE = "/etc/saf/firewall.pf"
PF_TEMPLATE = "templates/firewall.pf.j2"
LAUNCHD_LABEL = "org.saf.firewall"
PLIST_FILE = f"/Library/LaunchDaemons/{LAUNCHD_LABEL}.plist"
PLIST_TEMPLATE = "templates/saf-firewall.plist.j2"


@dataclass(frozen=True)
class PortRange:
    """Consecutive ports ``low``..``high`` (one port when they are equal)."""

    low: int
    high: int

    @property
    def nft(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"

    @property
    def pf(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}:{self.high}"

    def __contains__(self, port: int) -> bool:
        return self.low <= port <= self.high


@dataclass(frozen=True)
class FirewallRules:
    """What one node's rules say: Ray's ports, the peers admitted to them, and their digest."""

    ports: tuple[PortRange, ...]
    peers4: tuple[str, ...]
    peers6: tuple[str, ...]
    digest: str

    @property
    def label(self) -> str:
        return f"{DIGEST_PREFIX}{self.digest}"

    def covers(self, port: int) -> bool:
        return any(port in port_range for port_range in self.ports)


def merge_ports(ranges: Iterable[tuple[int, int]]) -> tuple[PortRange, ...]:
    """Sorted ranges with overlapping and adjacent ones joined: (6380, 6380), (6381, 6381) -> 6380-6381."""
    merged: list[list[int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return tuple(PortRange(low, high) for low, high in merged)


def ray_ports(data: NodeData) -> tuple[PortRange, ...]:
    """Every port the cluster's nodes talk on: Ray's (the port settings, the worker range, Ray's
    fixed metrics ports) and the MLX ring's (one per node from ``mlx_ring_port``); and the served model's
    endpoint when it listens on the head's cluster ip (``serve_bind: cluster``)."""
    return merge_ports(
        [*((port, port) for port in single_ports(data)), worker_range(data), mlx_ring_ports(data), *serve_ports(data)]
    )


def serve_ports(data: NodeData) -> list[tuple[int, int]]:
    """The endpoint's port, when the cluster serves a model on the head's cluster ip (on loopback it needs no rule)."""
    if getattr(data, "serve", None) and getattr(data, "serve_bind", "loopback") == "cluster":
        return [(data.serve_port, data.serve_port)]
    return []


class FirewallAddressError(PyinfraError):
    """A node's cluster ip is not an address: it cannot go into the rules (PyinfraError: the run stops
    before any host changes, with the message and no traceback)."""


def peer_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A node's ip as the rules write it: parsed and normalised by ``ipaddress``, an IPv6 scope id
    (``%eth0``) dropped (nft and pf match the address alone), so that only digits, hex, ``.`` and
    ``:`` ever reach a rule, whatever the cluster file held."""
    try:
        return ipaddress.ip_address(str(text).split("%", 1)[0])
    except ValueError:
        raise FirewallAddressError(
            f"SAF cannot write the node ip {text!r} into the firewall rules: it is not an IPv4 or IPv6 address. "
            "Fix the node's `ip` (or `address`) in the cluster file, then re-run."
        ) from None


def cluster_peers(cluster_nodes: Iterable[dict]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The cluster ips of every node (normalised by :func:`peer_address`), split into IPv4 and IPv6, sorted."""
    addresses = sorted({peer_address(node["ip"]) for node in cluster_nodes}, key=lambda a: (a.version, a))
    return (tuple(str(a) for a in addresses if a.version == 4), tuple(str(a) for a in addresses if a.version == 6))


def firewall_rules(data: NodeData, template: Path) -> FirewallRules:
    """The rule set for a node with these settings (``host.data``), to be rendered by ``template``.

    The digest covers the ports, the peers and the template's text, so any change to what the
    node would load changes it.
    """
    ports = ray_ports(data)
    peers4, peers6 = cluster_peers(data.cluster_nodes)
    content = json.dumps({"ports": [p.nft for p in ports], "peers": [*peers4, *peers6]}, sort_keys=True)
    digest = hashlib.sha256(template.read_bytes() + content.encode()).hexdigest()[:12]
    return FirewallRules(ports, peers4, peers6, digest)
