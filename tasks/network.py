"""Jumbo frames on the cluster interface: the MTU set (and kept across reboots) only where it
differs and where it makes sense; tunnels and Wi-Fi are left alone with a warning. What to do is
decided by saf.network.mtu_finding, which `saf doctor` shows too."""

from pyinfra import host, logger
from pyinfra.facts.server import Which
from pyinfra.operations import files, server, systemd

from saf.network import cluster_interface, mtu_finding
from saf.node_os import is_macos
from saf.operations.stop import stop_host
from saf.preflight import Verdict
from saf.templating import unit_template_env

mtu = host.data.mtu
finding = mtu_finding(host)
interface = cluster_interface(host) if host.data.manage_mtu else None

if finding.verdict is Verdict.CANNOT:
    stop_host(name="Cluster interface MTU" if interface else "Cluster interface", reason=finding.fix)
elif finding.verdict is Verdict.ATTENTION:
    logger.warning(f"[{host.name}] {finding.fix}")
elif interface and is_macos(host):
    if finding.verdict is Verdict.WOULD_CHANGE:
        server.shell(
            name=f"Set MTU {mtu} on {interface.name} ({interface.label})", commands=[finding.fix], _sudo=True
        )  # the fix of a "would change" is its command
elif interface:
    if finding.verdict is Verdict.WOULD_CHANGE:
        server.shell(name=f"Set MTU {mtu} on {interface.name}", commands=[finding.fix], _sudo=True)
    unit = files.template(
        name="Keep the MTU across reboots (saf-mtu.service)",
        src="templates/saf-mtu.service.j2",
        dest="/etc/systemd/system/saf-mtu.service",
        interface=interface.name,
        mtu=mtu,
        ip=host.get_fact(Which, command="ip") or "/usr/sbin/ip",
        mode="644",
        jinja_env_kwargs=unit_template_env(),
        _sudo=True,
    )
    systemd.service(
        name="Enable saf-mtu.service",
        service="saf-mtu.service",
        enabled=True,
        daemon_reload=unit.will_change,
        _sudo=True,
    )
