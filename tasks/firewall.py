"""The host firewall for Ray, before Ray starts.

`firewall: true`: Ray's ports admit only the cluster's nodes and loopback (see saf/firewall.py).
Linux: the nftables table `inet saf` from /etc/saf/firewall.nft, loaded with `nft -f` now and at
every boot by the oneshot saf-firewall.service. macOS: the pf anchor com.apple/org.saf.ray from
/etc/saf/firewall.pf, loaded now and at every boot by the LaunchDaemon org.saf.firewall.
`firewall: false` removes whatever of that a node still has; a node that never had it gets nothing.

(The macOS application firewall, which `firewall` does not govern, is tasks/app_firewall.py.)
"""

import shlex
from pathlib import Path

from pyinfra import host, logger, state
from pyinfra.facts.files import File
from pyinfra.facts.server import Which
from pyinfra.operations import apt, files, server, systemd

from saf.facts.firewall import NftRules, PfRules
from saf.facts.launchd import LaunchdJob
from saf.firewall import (
    LAUNCHD_LABEL,
    NFT_FILE,
    NFT_TEMPLATE,
    PF_ANCHOR,
    PF_FILE,
    PF_TEMPLATE,
    PLIST_FILE,
    PLIST_TEMPLATE,
    UNIT,
    UNIT_FILE,
    UNIT_TEMPLATE,
    FirewallRules,
    firewall_rules,
)
from saf.node_os import is_macos
from saf.operations.launchd import launchd_job
from saf.operations.plist import linted_plist
from saf.operations.stop import stop_host
from saf.templating import unit_template_env

macos = is_macos(host)
sudo = host.data.use_sudo
wanted = host.data.firewall


def rules_for(template: str) -> FirewallRules:
    return firewall_rules(host.data, Path(state.cwd) / template)


def warn_about_limited_runs() -> None:
    left_out = [other.name for other in state.inventory if not state.is_host_in_limit(other)]
    if left_out:
        logger.warning(
            f"[{host.name}] firewall: {', '.join(left_out)} keep their old rules in this limited run; "
            "a node new to the cluster file is admitted by them only after a run without --limit."
        )


def nft_command() -> str | None:
    """nft's path, installing nftables with apt if it is missing; None (node stopped) without apt."""
    nft = host.get_fact(Which, command="nft", _sudo=True)  # root's PATH: nft lives in /usr/sbin
    if nft:
        return nft
    if not host.get_fact(Which, command="apt-get"):
        stop_host(
            name="nftables",
            reason=(f"firewall: true needs nftables (`nft`) on {host.name}: install it, or set firewall: false."),
        )
        return None
    apt.packages(name="Install nftables (apt)", packages=["nftables"], update=True, _sudo=True)
    return "/usr/sbin/nft"


def linux_firewall() -> None:
    nft = nft_command()
    if nft is None:
        return
    rules = rules_for(NFT_TEMPLATE)
    files.template(
        name="Ray's firewall rules (/etc/saf/firewall.nft)",
        src=NFT_TEMPLATE,
        dest=NFT_FILE,
        rules=rules,
        mode="644",
        _sudo=True,
    )
    unit = files.template(
        name=f"Load them at boot ({UNIT})",
        src=UNIT_TEMPLATE,
        dest=UNIT_FILE,
        nft=nft,
        rules_file=NFT_FILE,
        mode="644",
        jinja_env_kwargs=unit_template_env(),
        _sudo=True,
    )
    loaded = host.get_fact(NftRules, _sudo=True)
    if (loaded or {}).get("digest") != rules.digest:  # the file's first lines make this an atomic replace
        server.shell(
            name="Load Ray's firewall rules (table inet saf)",
            commands=[f"{shlex.quote(nft)} -f {NFT_FILE}"],
            _sudo=True,
        )
    # the unit only loads them at boot (like saf-mtu.service): nothing is restarted by a deploy
    systemd.service(
        name=f"Enable {UNIT}", service=UNIT, running=None, enabled=True, daemon_reload=unit.will_change, _sudo=True
    )


def remove_linux_firewall() -> None:
    if host.get_fact(NftRules, _sudo=True) is not None:
        server.shell(
            name="Remove Ray's firewall rules (table inet saf)", commands=["nft delete table inet saf"], _sudo=True
        )
    # only where there is something to remove: a converged run then has no operation to execute here
    if host.get_fact(File, path=UNIT_FILE):
        systemd.service(
            name=f"Stop loading them at boot ({UNIT})", service=UNIT, running=False, enabled=False, _sudo=True
        )
        files.file(name=f"Remove {UNIT}", path=UNIT_FILE, present=False, _sudo=True)
        systemd.daemon_reload(name="Reload systemd (firewall unit removed)", _sudo=True)
    if host.get_fact(File, path=NFT_FILE):
        files.file(name="Remove the firewall rules file", path=NFT_FILE, present=False, _sudo=True)


def macos_firewall() -> None:
    rules = rules_for(PF_TEMPLATE)
    files.template(
        name="Ray's firewall rules (/etc/saf/firewall.pf)",
        src=PF_TEMPLATE,
        dest=PF_FILE,
        rules=rules,
        anchor=PF_ANCHOR,
        user="root",
        group="wheel",
        mode="644",
        _sudo=True,
    )
    pf = host.get_fact(PfRules, _sudo=True)
    if not pf["anchor_point"]:
        logger.warning(
            f"[{host.name}] pf's main ruleset has no `anchor \"com.apple/*\"` (Apple's /etc/pf.conf has "
            f"it): until it does, the rules in {PF_ANCHOR} are loaded but not consulted."
        )
    load = [f"pfctl -a {PF_ANCHOR} -f {PF_FILE}"] if pf["digest"] != rules.digest else []
    enable = [] if pf["enabled"] else ["pfctl -E"]  # -E: an enable reference, as Apple's pf.conf asks
    if load or enable:
        server.shell(name=f"Load Ray's firewall rules (pf anchor {PF_ANCHOR})", commands=load + enable, _sudo=True)
    plist = linted_plist(
        name=f"Load them at boot (LaunchDaemon {LAUNCHD_LABEL})",
        src=PLIST_TEMPLATE,
        dest=PLIST_FILE,
        label=LAUNCHD_LABEL,
        anchor=PF_ANCHOR,
        rules_file=PF_FILE,
        user="root",
        group="wheel",
        mode="644",
        _sudo=True,
    )
    # a oneshot job: loaded is what matters (it runs once at load and at boot, then is "not running")
    launchd_job(
        name=f"Load the firewall job ({LAUNCHD_LABEL})",
        label=LAUNCHD_LABEL,
        plist=PLIST_FILE,
        domain="system",
        definition_changed=plist.will_change,
        oneshot=True,
        _sudo=True,
    )


def remove_macos_firewall() -> None:
    if host.get_fact(PfRules, _sudo=True)["loaded"]:
        server.shell(
            name=f"Remove Ray's firewall rules (pf anchor {PF_ANCHOR})",
            commands=[f"pfctl -a {PF_ANCHOR} -F rules", f"pfctl -a {PF_ANCHOR} -F Tables"],
            _sudo=True,
        )
    if host.get_fact(LaunchdJob, target=f"system/{LAUNCHD_LABEL}") is not None:
        server.shell(
            name=f"Unload the firewall job ({LAUNCHD_LABEL})",
            commands=[f"launchctl bootout system/{LAUNCHD_LABEL}"],
            _sudo=True,
        )
    for path, what in ((PLIST_FILE, "Remove the firewall job definition"), (PF_FILE, "Remove the firewall rules file")):
        if host.get_fact(File, path=path):  # only where there is something to remove
            files.file(name=what, path=path, present=False, _sudo=True)


if wanted and not sudo:
    logger.warning(f"[{host.name}] firewall not managed: it needs sudo (use_sudo: false).")
elif wanted:
    warn_about_limited_runs()
    if macos:
        macos_firewall()
    else:
        linux_firewall()
elif sudo:
    if macos:
        remove_macos_firewall()
    else:
        remove_linux_firewall()
