"""Word before a long step: pyinfra prints nothing while a command runs, and building Python or
installing a venv's pins takes minutes. A task marks such an operation as long; when the operation
starts (a pyinfra state callback), one line says what it does, on how many nodes and roughly how
long, in pyinfra's own ``-->`` style: no spinner, nothing that breaks a log."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyinfra import logger
from pyinfra.api.operation import OperationMeta
from pyinfra.api.state import BaseStateCallback, State


@dataclass
class LongStep:
    """An operation that takes minutes where it changes something: what it does, how long, where."""

    what: str
    estimate: str
    nodes: list[str] = field(default_factory=list)

    def announcement(self) -> str:
        where = (
            f"{len(self.nodes)} nodes ({', '.join(self.nodes)}), in parallel"
            if len(self.nodes) > 1
            else f"1 node ({self.nodes[0]})"
        )
        return f"--> {self.what} on {where}: {self.estimate}; nothing more is printed for this step until it ends"


class _Announcer(BaseStateCallback):
    @staticmethod
    def operation_start(state: State, op_hash: str) -> None:
        step = long_steps(state).get(op_hash)
        if step is not None:
            logger.info(step.announcement())


def long_steps(state: State) -> dict[str, LongStep]:
    """The long steps of this run, by operation hash (kept on the state: one run, one registry)."""
    steps = getattr(state, "saf_long_steps", None)
    if steps is None:
        steps = state.saf_long_steps = {}  # type: ignore[attr-defined]  # SAF's record on pyinfra's State
        state.add_callback_handler(_Announcer())
    return steps


def long_step(state: State, node: str, op: OperationMeta, what: str, estimate: str) -> None:
    """Announce ``op`` when it starts, where it changes something (a converged node is not counted)."""
    if op.will_change:
        # OperationMeta keeps its hash private; it is the key the state callbacks are given
        long_steps(state).setdefault(op._hash, LongStep(what, estimate)).nodes.append(node)
