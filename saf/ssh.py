"""SSH from the control machine to a node of the cluster file, outside pyinfra (the dashboard's
tunnel, the benchmarks): the same user, key, known-hosts file and port that pyinfra uses."""

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
    """``user@address``, or the address alone when the entry names no user."""
    return f"{node.ssh_user}@{node.address}" if node.ssh_user else node.address


def ssh_argv(node: NodeSpec, *command: str, options: tuple[str, ...] = ()) -> list[str]:
    """``ssh [options] user@address [command]`` for the node."""
    return ["ssh", *options, *ssh_options(node), ssh_target(node), *command]
