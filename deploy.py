"""The Studio Air Fabric deploy: one task file per concern, in order.

    pyinfra inventory.py deploy.py

Preflight runs first on every node; a node that fails it is stopped before anything changes
on it, and the other tasks are included only for nodes that pass.
"""

from pathlib import Path

from pyinfra import host, local, state

from saf.fact_cache import share_fact_reads
from saf.interrupt import stop_between_operations
from saf.preflight import preflight_problems

share_fact_reads(host, Path(__file__).parent)  # a converged node's facts in one round trip (saf/fact_cache.py)
stop_between_operations(state)  # Ctrl-C: the step in flight finishes, no other starts (saf/interrupt.py)

# One include per line: pyinfra identifies an operation by the line numbers of its call stack,
# so a loop over task files would give operations of different files the same identity.
local.include("tasks/preflight.py")
if not preflight_problems(host):  # its facts were read by tasks/preflight.py: answered from the cache
    local.include("tasks/foreign_ray.py")  # before any change: `foreign_ray: refuse` stops the node here
    local.include("tasks/power.py")
    local.include("tasks/python.py")
    local.include("tasks/venv.py")
    local.include("tasks/network.py")
    local.include("tasks/ray_auth.py")
    local.include("tasks/firewall.py")
    local.include("tasks/app_firewall.py")
    local.include("tasks/ray_service.py")
    local.include("tasks/serve.py")  # a served model (the cluster file's serve: part), or its removal
    local.include("tasks/mlx_distributed.py")
    if host.data.verify_after_deploy:  # on by default; `saf verify` runs it alone either way
        local.include("tasks/verify.py")
