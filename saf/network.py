"""The cluster interface of a node: found from facts, whether jumbo frames make sense on it, and
what the deploy does about its MTU."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra.api.host import Host

from saf.facts.network import LinuxInterfaces, MacHardwarePorts, MacInterfaces, MacMTU, MacValidMTURange
from saf.node_os import is_macos
from saf.preflight import Finding, Verdict

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


def mtu_finding(host: Host) -> Finding:
    """What the network task will do about the cluster interface's MTU, as a finding: OK, would
    change (set it), attention (left alone, and why) or cannot (the node is stopped, and the fix)."""
    mtu = host.data.mtu
    if not host.data.manage_mtu:
        return Finding("MTU", "not managed (manage_mtu: false)")
    interface = cluster_interface(host)
    if interface is None:
        return Finding(
            "cluster interface",
            f"none has {host.data.cluster_ip}",
            Verdict.CANNOT,
            f"no interface on {host.name} has the cluster ip {host.data.cluster_ip}: check `ip` (or "
            "`address`) for this node in the cluster file.",
        )
    found = f"{interface.name} ({interface.label}) MTU {interface.mtu}"
    if interface.skip_reason:
        return Finding("MTU", found, Verdict.ATTENTION, f"MTU left at {interface.mtu}: {interface.skip_reason}.")
    if not host.data.use_sudo:
        return Finding(
            "MTU", found, Verdict.ATTENTION, f"MTU of {interface.name} not managed: it needs sudo (use_sudo: false)."
        )
    if is_macos(host):
        return _mac_mtu_finding(host, interface, mtu)
    if interface.mtu != mtu:
        return Finding(
            "MTU", found, Verdict.WOULD_CHANGE, f"ip link set dev {shlex.quote(interface.name)} mtu {int(mtu)}"
        )
    return Finding("MTU", found)


def _mac_mtu_finding(host: Host, interface: ClusterInterface, mtu: int) -> Finding:
    valid = host.get_fact(MacValidMTURange, device=interface.name)
    current = host.get_fact(MacMTU, device=interface.name)
    found = f"{interface.name} ({interface.label}) MTU {interface.mtu}"
    if valid and not valid[0] <= mtu <= valid[1]:
        return Finding(
            "MTU",
            f"{found}, valid {valid[0]}-{valid[1]}",
            Verdict.CANNOT,
            f"{interface.name} ({interface.label}) on {host.name} accepts an MTU of {valid[0]}-{valid[1]}, "
            f"not {mtu}: set `mtu:` within that range in the cluster file's settings, or use an "
            "interface that supports jumbo frames.",
        )
    if current != {"active": mtu, "setting": mtu}:
        return Finding(
            "MTU", found, Verdict.WOULD_CHANGE, f"networksetup -setMTU {shlex.quote(interface.name)} {int(mtu)}"
        )
    return Finding("MTU", found)
