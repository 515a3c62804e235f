"""Jumbo frames on the cluster interface: the MTU set (and kept across reboots) only where it
differs and where it makes sense; tunnels and Wi-Fi are left alone with a warning."""

from pyinfra import host, logger
from pyinfra.facts.server import Which
from pyinfra.operations import files, server, systemd

from saf.facts.network import MacMTU, MacValidMTURange
from saf.network import cluster_interface
from saf.node_os import is_macos
from saf.operations.stop import stop_host

mtu = host.data.mtu
interface = cluster_interface(host) if host.data.manage_mtu else None

if host.data.manage_mtu and interface is None:
    stop_host(name="Cluster interface", reason=(
        f"no interface on {host.name} has the cluster ip {host.data.cluster_ip}: check `ip` (or "
        "`address`) for this node in the cluster file."))
elif interface and interface.skip_reason:
    logger.warning(f"[{host.name}] MTU left at {interface.mtu}: {interface.skip_reason}.")
elif interface and not host.data.use_sudo:
    logger.warning(f"[{host.name}] MTU of {interface.name} not managed: it needs sudo (use_sudo: false).")
elif interface and is_macos(host):
    valid = host.get_fact(MacValidMTURange, device=interface.name)
    current = host.get_fact(MacMTU, device=interface.name)
    if valid and not valid[0] <= mtu <= valid[1]:
        stop_host(name="Cluster interface MTU", reason=(
            f"{interface.name} ({interface.label}) on {host.name} accepts an MTU of {valid[0]}-{valid[1]}, "
            f"not {mtu}: set `mtu:` within that range in the cluster file's settings, or use an "
            "interface that supports jumbo frames."))
    elif current != {"active": mtu, "setting": mtu}:
        server.shell(name=f"Set MTU {mtu} on {interface.name} ({interface.label})",
                     commands=[f"networksetup -setMTU {interface.name} {mtu}"], _sudo=True)
elif interface:
    if interface.mtu != mtu:
        server.shell(name=f"Set MTU {mtu} on {interface.name}",
                     commands=[f"ip link set dev {interface.name} mtu {mtu}"], _sudo=True)
    unit = files.template(name="Keep the MTU across reboots (saf-mtu.service)",
                          src="templates/saf-mtu.service.j2", dest="/etc/systemd/system/saf-mtu.service",
                          interface=interface.name, mtu=mtu, ip=host.get_fact(Which, command="ip") or "/usr/sbin/ip",
                          mode="644", _sudo=True)
    systemd.service(name="Enable saf-mtu.service", service="saf-mtu.service", enabled=True,
                    daemon_reload=unit.will_change, _sudo=True)
