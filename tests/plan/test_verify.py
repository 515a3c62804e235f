"""Where the verification runs: the head in a full run, the limited node in a --limit run."""

from __future__ import annotations

from tests.facts import converged_mac

THREE = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"},
                   {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"},
                   {"name": "gamma", "role": "worker", "address": "192.168.1.43", "ssh_user": "arthurdell"}]}


def mac(name: str):
    ip = {"alpha": "192.168.1.172", "beta": "192.168.1.42", "gamma": "192.168.1.43"}[name]
    return converged_mac(role="head" if name == "alpha" else "worker", ip=ip)


def verify_ops(host_plan):
    return [op for op in host_plan.ops if op.name.startswith("tasks/verify.py")]


def test_full_run_verifies_from_the_head_only_and_changes_nothing(plan):
    plans = plan({name: mac(name) for name in ("alpha", "beta", "gamma")}, cluster=THREE)
    [op] = verify_ops(plans["alpha"])
    assert op.commands == []  # a check: no command, so no change on a converged cluster
    assert verify_ops(plans["beta"]) == [] and verify_ops(plans["gamma"]) == []
    assert all(host_plan.changing_ops == [] for host_plan in plans.values())


def test_limited_run_verifies_from_the_limited_node(plan):
    plans = plan({"gamma": mac("gamma")}, cluster=THREE, limit=["gamma"])
    assert list(plans) == ["gamma"]
    assert len(verify_ops(plans["gamma"])) == 1
