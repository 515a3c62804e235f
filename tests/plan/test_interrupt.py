"""Ctrl-C once operations run (saf/interrupt.py), on a real planned run: the deploy of two Macs
moving to new pins, stopped when the operation after the venv's would start. Each node says the
last operation it finished, where the next run goes on, and the restart of Ray it had coming."""

from __future__ import annotations

import pytest

import saf.interrupt
from saf.interrupt import INTERRUPTED_STATUS
from tests.facts import converged_mac, venv_for

TWO_MACS = {"nodes": [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"},
                      {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"}]}


@pytest.fixture
def planned_state(plan, monkeypatch):
    """The pyinfra State of a planned upgrade (MLX 0.29.0 -> 0.29.1 on both Macs)."""
    states = []
    install = saf.interrupt.stop_between_operations

    def recorded(state):
        states.append(state._get_module())  # deploy.py passes pyinfra's context proxy of the run's State
        return install(state)

    monkeypatch.setattr(saf.interrupt, "stop_between_operations", recorded)
    old, _ = venv_for(mlx="0.29.0")
    old_venv = {"python.SafVenvs:*": {"venvs": {old: True}, "current": old, "previous": None}}
    plan({"alpha": converged_mac(**old_venv), "beta": converged_mac(role="worker", ip="192.168.1.42", **old_venv)},
         cluster=TWO_MACS)
    return states[0]


def test_the_run_stops_before_the_next_operation_and_says_where_each_node_is(planned_state, capsys):
    state = planned_state
    watcher = state.saf_interrupt
    order = state.get_op_order()
    names = {op_hash: ", ".join(state.get_op_meta(op_hash).names) for op_hash in order}
    venv = next(op_hash for op_hash in order if names[op_hash].startswith("tasks/venv.py | Venv "))
    following = order[order.index(venv) + 1]
    for op_hash in order[:order.index(venv) + 1]:
        for host in state.inventory:
            if op_hash in state.ops[host]:
                watcher.operation_host_success(state, host, op_hash)
    state.is_executing = True
    watcher.on_sigint(state)  # the first Ctrl-C: a message, no exit
    assert "no new operation starts; the one in flight finishes on every node first" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        watcher.operation_start(state, following)
    assert stopped.value.code == INTERRUPTED_STATUS
    summary = capsys.readouterr().err
    for name in ("alpha", "beta"):
        line = next(line for line in summary.splitlines() if line.startswith(f"  {name}: "))
        assert f"stopped after {names[venv]}; the next run goes on from " in line
        assert line.endswith("operations left), and Ray restarts there (the venv Ray runs (current) changes)")


def test_a_second_ctrl_c_exits_at_once(planned_state, capsys):
    state = planned_state
    state.is_executing = True
    state.saf_interrupt.on_sigint(state)
    with pytest.raises(SystemExit) as stopped:
        state.saf_interrupt.on_sigint(state)
    assert stopped.value.code == INTERRUPTED_STATUS
    assert "interrupted again: exiting now" in capsys.readouterr().err


def test_no_interrupt_lets_every_operation_start(planned_state):
    state = planned_state
    for op_hash in state.get_op_order():
        state.saf_interrupt.operation_start(state, op_hash)  # no exit
