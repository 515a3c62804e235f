"""Word before a long step: registered per node where the operation changes something, announced
once when the operation starts (a pyinfra state callback), with the node count, names and estimate."""

from __future__ import annotations

import logging

from pyinfra.api import Config, Inventory, State
from pyinfra.api.operation import OperationMeta

from saf.progress import LongStep, long_step, long_steps


def fresh_state() -> State:
    state = State(Inventory((["alpha", "beta", "gamma"], {})), Config())
    return state


def test_a_long_step_is_announced_once_with_its_nodes_when_it_starts(caplog):
    state = fresh_state()
    for node, changes in (("alpha", True), ("beta", False), ("gamma", True)):
        long_step(state, node, OperationMeta("op-1", is_change=changes), "Building Python 3.9.23", "about 5 minutes")
    assert long_steps(state)["op-1"].nodes == ["alpha", "gamma"]  # beta is built already: not counted
    with caplog.at_level(logging.INFO):
        state.trigger_callbacks("operation_start", "op-1")
        state.trigger_callbacks("operation_start", "op-2")  # not a long step: nothing said
    assert [record.getMessage() for record in caplog.records] == [
        "--> Building Python 3.9.23 on 2 nodes (alpha, gamma), in parallel: about 5 minutes; nothing more is "
        "printed for this step until it ends"]


def test_a_run_where_nothing_is_long_registers_no_handler():
    state = fresh_state()
    handlers = len(state.callback_handlers)
    long_step(state, "alpha", OperationMeta("op-1", is_change=False), "Building", "long")
    assert len(state.callback_handlers) == handlers and not getattr(state, "saf_long_steps", None)


def test_one_node_is_said_in_the_singular():
    assert LongStep("Building the venv", "2 minutes", ["gamma"]).announcement().startswith(
        "--> Building the venv on 1 node (gamma): 2 minutes; nothing more")
