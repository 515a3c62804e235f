"""The Studio Air Fabric deploy: one task file per concern, in order.

    pyinfra inventory.py deploy.py

Preflight runs first on every node; a node that fails it is stopped before anything changes
on it, and the other tasks are included only for nodes that pass.
"""

from pyinfra import host, local

from saf.preflight import preflight_problems

TASKS = ("python", "venv")  # then: network, ray_service, verify, as they land

local.include("tasks/preflight.py")
if not preflight_problems(host):  # facts are cached: this re-reads nothing
    for task in TASKS:
        local.include(f"tasks/{task}.py")
