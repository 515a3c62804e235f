"""The order of the nodes, planned: every operation on Ray's service runs on the head before any runs
on a worker when Ray comes up (deploy, rollback), and on the workers before the head when it goes down
(teardown). A worker joins a running head; a head stopped first would strand its workers.

pyinfra keeps only each host's own operations in sequence; ``saf.service.in_role_order`` says the
order between the nodes (its docstring says how). These tests read the run's planned order."""

from __future__ import annotations

from tests.facts import converged_mac, fresh_mac, mac_network
from tests.plan.test_rollback_teardown import rolled_back

THREE_MACS = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"},
                        {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"},
                        {"name": "gamma", "role": "worker", "address": "192.168.1.43", "ssh_user": "arthurdell"}]}
WORKERS = ("beta", "gamma")


def positions(plans, names: tuple[str, ...], chosen, others: tuple[str, ...]) -> list[int]:
    """Where the operations of the nodes ``names`` that ``chosen`` picks run, but for any they share
    with the ``others`` (one operation every node runs, as ``in_role_order``'s own)."""
    shared = {op.position for other in others for op in plans[other].ops}
    return [op.position for name in names for op in plans[name].ops
            if chosen(op.name) and op.position not in shared]


def assert_before(plans, earlier: tuple[str, ...], later: tuple[str, ...], chosen) -> None:
    first, then = positions(plans, earlier, chosen, later), positions(plans, later, chosen, earlier)
    assert first and then
    assert max(first) < min(then), {name: [(op.position, op.name) for op in plan.ops] for name, plan in plans.items()}


def test_every_head_operation_on_rays_service_comes_before_the_workers_on_a_deploy(plan):
    plans = plan({"alpha": fresh_mac(), "beta": fresh_mac(**mac_network(ip="192.168.1.42")),
                  "gamma": fresh_mac(**mac_network(ip="192.168.1.43"))}, cluster=THREE_MACS)
    assert_before(plans, ("alpha",), WORKERS, lambda name: name.startswith("tasks/ray_service.py"))
    assert any("Ray head (launchd)" in op.name for op in plans["alpha"].ops)  # the start is among them


def test_every_head_operation_comes_before_the_workers_on_a_rollback(plan):
    plans = plan({"alpha": rolled_back(), "beta": rolled_back(role="worker", ip="192.168.1.42"),
                  "gamma": rolled_back(role="worker", ip="192.168.1.43")},
                 cluster=THREE_MACS, deploy_file="tasks/rollback.py")
    assert_before(plans, ("alpha",), WORKERS, lambda name: True)  # the switch of venv and the restart


def test_every_worker_operation_on_rays_service_comes_before_the_heads_on_a_teardown(plan):
    plans = plan({"alpha": converged_mac(), "beta": converged_mac(role="worker", ip="192.168.1.42"),
                  "gamma": converged_mac(role="worker", ip="192.168.1.43")},
                 cluster=THREE_MACS, deploy_file="tasks/teardown.py")
    assert_before(plans, WORKERS, ("alpha",), lambda name: "Ray head" in name or "Ray worker" in name)
