"""The cluster interface of a node: found from facts, and whether jumbo frames make sense on it."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api.host import Host

from saf.facts.network import LinuxInterfaces, MacHardwarePorts, MacInterfaces
from saf.node_os import is_macos

_MAC_TUNNEL_PREFIXES = ("utun", "ipsec", "ppp", "gif", "stf", "lo", "awdl", "llw")
_LINUX_TUNNEL_PREFIXES = ("tailscale", "wg", "tun", "tap", "zt", "lo")


@dataclass(frozen=True)
class ClusterInterface:
    """The interface that carries a node's cluster ip."""

    name: str
    mtu: int
    label: str  # hardware port on macOS ("Ethernet", "Wi-Fi"), link type on Linux
    skip_reason: str = ""  # why its MTU is left alone (tunnel, Wi-Fi, loopback), or ""


def _mac_interface(host: Host, ip: str) -> ClusterInterface | None:
    interfaces = host.get_fact(MacInterfaces)
    ports = host.get_fact(MacHardwarePorts)
    for name, info in interfaces.items():
        if ip not in info["inet"]:
            continue
        label = ports.get(name, "")
        reason = ""
        if name.startswith(_MAC_TUNNEL_PREFIXES) or info["pointtopoint"]:
            reason = f"{name} is a tunnel (Tailscale/VPN): it cannot carry jumbo frames"
        elif "wi-fi" in label.lower() or "airport" in label.lower():
            reason = f"{name} is Wi-Fi: jumbo frames need a wired link"
        return ClusterInterface(name, info["mtu"], label or name, reason)
    return None


def _linux_interface(host: Host, ip: str) -> ClusterInterface | None:
    for name, info in host.get_fact(LinuxInterfaces).items():
        if ip not in info["inet"]:
            continue
        reason = ""
        if name.startswith(_LINUX_TUNNEL_PREFIXES) or info["link_type"] not in ("ether", ""):
            reason = f"{name} is a {info['link_type'] or 'tunnel'} interface: it cannot carry jumbo frames"
        elif info["wireless"]:
            reason = f"{name} is Wi-Fi: jumbo frames need a wired link"
        return ClusterInterface(name, info["mtu"], info["link_type"], reason)
    return None


def cluster_interface(host: Host) -> ClusterInterface | None:
    """The interface carrying ``host.data.cluster_ip``, or None if no interface has it."""
    ip = host.data.cluster_ip
    if is_macos(host):
        return _mac_interface(host, ip)
    return _linux_interface(host, ip)
