"""MLX distributed on the cluster, control side: the hostfile every node gets for ``mlx.launch``,
and which nodes take part in a ``saf launch`` and as which rank.

Ranks follow the cluster file's order, one per node; rank r's ring port is ``mlx_ring_port + r``,
the numbering ``mlx.launch --starting-port`` uses, so a user's own ``mlx.launch --hostfile
~/.saf/mlx/hostfile.json --backend ring --starting-port <mlx_ring_port>`` forms the same ring as
the verification and ``saf launch``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from saf.spec import NodeSpec

HOSTFILE = "~/.saf/mlx/hostfile.json"  # on every node, under the SSH user's home


def launch_hostfile(nodes: Iterable[NodeSpec]) -> str:
    """``mlx.launch --hostfile``'s JSON: per node, what to SSH to (its cluster ip, its SSH user)
    and the ips the ring uses (the cluster ip)."""
    entries = [{"ssh": f"{node.ssh_user}@{node.ip}" if node.ssh_user else node.ip, "ips": [node.ip]} for node in nodes]
    return json.dumps(entries, indent=2) + "\n"


class UnknownNodes(ValueError):
    """``--nodes`` named nodes the cluster file does not have."""


def launch_nodes(nodes: Sequence[NodeSpec], names: str | None) -> list[NodeSpec]:
    """The nodes of a launch, in cluster-file order (their ranks): all, or those of ``a,b,...``."""
    if not names:
        return list(nodes)
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in {node.name for node in nodes}]
    if unknown or not wanted:
        raise UnknownNodes(
            f"--nodes names {', '.join(unknown) or 'no node'}; the cluster file's nodes are "
            f"{', '.join(node.name for node in nodes)}"
        )
    return [node for node in nodes if node.name in wanted]
