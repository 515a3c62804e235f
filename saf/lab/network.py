"""The lab's network: a bridge on this machine and one network namespace per node (plus an
outsider that is not a node), joined by veth pairs. Nothing outside ``saf-*`` is touched."""

from __future__ import annotations

from saf.lab.layout import BRIDGE, SUBNET, LabNode, gateway, outsider_address
from saf.lab.system import run

OUTSIDER = LabNode("outsider", "outsider", outsider_address())
BRIDGE_MTU = 9000  # the switch: jumbo-capable; each node's own interface starts at 1500


def _link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return run([*prefix, "link", "show", name], check=False).returncode == 0


def namespaces() -> list[str]:
    """The lab's network namespaces present on this machine."""
    listed = run(["ip", "netns", "list"], check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith("saf-")]


def ensure_bridge() -> None:
    if _link_exists(BRIDGE):
        return
    run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "add", f"{gateway()}/{SUBNET.prefixlen}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "mtu", str(BRIDGE_MTU), "up"])


def ensure_namespace(node: LabNode) -> None:
    """The node's namespace, its eth0 on the bridge with its address, ping allowed for users."""
    if node.netns not in namespaces():
        run(["ip", "netns", "add", node.netns])
    if not _link_exists("eth0", node.netns):
        run(
            [
                "ip",
                "link",
                "add",
                node.host_veth,
                "mtu",
                str(BRIDGE_MTU),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                node.netns,
            ]
        )
        run(["ip", "link", "set", node.host_veth, "master", BRIDGE, "up"])
        run(["ip", "-n", node.netns, "addr", "add", f"{node.address}/{SUBNET.prefixlen}", "dev", "eth0"])
        run(["ip", "-n", node.netns, "link", "set", "eth0", "mtu", "1500", "up"])
        run(["ip", "-n", node.netns, "link", "set", "lo", "up"])
        # unprivileged ICMP sockets, so the deploy user can run DF pings (per namespace)
        run(["ip", "netns", "exec", node.netns, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647"])


def remove_all() -> None:
    """Every lab namespace (their veths go with them) and the bridge; fine if already gone."""
    for netns in namespaces():
        run(["ip", "netns", "del", netns], check=False)
    if _link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE], check=False)
