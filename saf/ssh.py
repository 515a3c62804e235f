"""SSH from the control machine to a node of the cluster file, outside pyinfra (the dashboard's
tunnel, the benchmarks): the same user, key, known-hosts file and port that pyinfra uses.

No value of the node's entry can become an option: the user goes after ``-l`` (scp: ``-o User=``),
and ``--`` ends the options before the address, so ``ssh_user: -oProxyCommand=...`` or an address
starting with ``-`` stays a user name or a host name (which ssh then fails to reach), never a command.
"""

from __future__ import annotations

from saf.spec import NodeSpec


def ssh_options(node: NodeSpec, port_flag: str = "-p") -> list[str]:
    """``-i key -o UserKnownHostsFile=... -p port`` as the node's entry says (scp spells the port ``-P``)."""
    options = ["-o", "BatchMode=yes"]
    if node.ssh_key:
        options += ["-i", node.ssh_key]
    if node.ssh_known_hosts_file:
        options += ["-o", f"UserKnownHostsFile={node.ssh_known_hosts_file}", "-o", "StrictHostKeyChecking=yes"]
    if node.ssh_port:
        options += [port_flag, str(node.ssh_port)]
    return options


def ssh_target(node: NodeSpec) -> str:
    """``user@address``, or the address alone when the entry names no user (for display and for
    hostfiles; argv uses :func:`ssh_argv` / :func:`scp_argv`)."""
    return f"{node.ssh_user}@{node.address}" if node.ssh_user else node.address


def _user_options(node: NodeSpec, flag: str) -> list[str]:
    if not node.ssh_user:
        return []
    return ["-l", node.ssh_user] if flag == "-l" else ["-o", f"User={node.ssh_user}"]


def ssh_argv(node: NodeSpec, *command: str, options: tuple[str, ...] = ()) -> list[str]:
    """``ssh [options] -l user -- address [command]`` for the node."""
    return ["ssh", *options, *ssh_options(node), *_user_options(node, "-l"), "--", node.address, *command]


def scp_argv(node: NodeSpec, sources: list[str], dest: str, options: tuple[str, ...] = ()) -> list[str]:
    """``scp [options] -o User=user -- sources... address:dest`` copying local ``sources`` to the node's
    ``dest`` (scp's ``-l`` is a bandwidth limit, so the user goes in ``-o User=``; an IPv6 address is
    bracketed, as scp's ``host:path`` needs)."""
    host = f"[{node.address}]" if ":" in node.address else node.address
    return [
        "scp",
        *options,
        *ssh_options(node, port_flag="-P"),
        *_user_options(node, "-o"),
        "--",
        *sources,
        f"{host}:{dest}",
    ]
