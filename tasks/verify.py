"""The verification, last in every deploy (and alone: `saf verify`): the whole cluster proven
from one node: the head in a full run, the first limited node in a `--limit` run. A served model
(the cluster file's serve: part) is proven through its endpoint when that node is the head."""

from pyinfra import host, state
from pyinfra.facts.server import Home

from saf.paths import on_control, on_node
from saf.serve.service import serve_expectation
from saf.service import node_auth_environment
from saf.verify.operation import cluster_verified
from saf.verify.placement import expectation, verification_host

if host.name == verification_host(state, host.data.cluster_nodes):
    home = host.get_fact(Home)
    cluster_verified(
        name="Verify the cluster (MLX on every node, versions, network)",
        python=f"{on_node(host.data.venv_root, home)}/current/bin/python",
        address=f"{host.data.head_ip}:{host.data.ray_port}",
        expect=expectation(host.data),
        timeout=host.data.verify_timeout_s,
        reports_dir=str(on_control(".saf/reports", state.cwd)),
        environment=node_auth_environment(host, home),
        serve=serve_expectation(host.data, home, f"{on_node(host.data.venv_root, home)}/current/bin/python"),
    )
