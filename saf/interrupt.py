"""Ctrl-C during a deploy: stop between operations, never inside one, and say where each node is.

pyinfra's own SIGINT handler exits (status 0) from whichever greenlet runs when the signal lands:
the step in flight went on on the nodes, and the run ended somewhere between operations without a
word (issue 26). Here, once operations run:

- the **first** Ctrl-C lets the operation in flight finish on every node (the bound: that step's
  own duration; the longest are building Python, minutes, and building a venv, 1 to 3 minutes), then
  starts no other, prints per node the last operation it finished and what the next run will do
  there, and exits with status 130; the deploy lock is released on the way out;
- a **second** Ctrl-C exits at once. The long remote steps run on a terminal (``_get_pty``), so the
  node's shell and pip get SIGHUP when the connection closes and stop there, instead of running on
  and removing files a later run has put in place; the half-built venv has no completion marker, and
  the next run builds it afresh.

Before operations run (connecting, reading facts, downloading wheels) nothing has changed on any
node, and pyinfra's own handler exits at once.

What the next run does is read from the nodes, not remembered: it repeats nothing that is done, does
what is left, and restarts Ray where it still runs a venv, definition or token older than what is on
disk (saf/restarts.py).
"""

from __future__ import annotations

import signal
import sys

from pyinfra.api.host import Host
from pyinfra.api.state import BaseStateCallback, State

from saf.restarts import planned_ray_restart

INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report it


class InterruptedRun(BaseStateCallback):
    """Tracks each node's last finished operation; stops the run at the next operation after Ctrl-C."""

    def __init__(self) -> None:
        self.requested = 0
        self.installed = False
        self.finished: dict[str, str] = {}  # host name -> name of its last finished operation
        self.failed: set[str] = set()

    # --- pyinfra's callbacks ------------------------------------------------------------------
    def operation_host_success(self, state: State, host: Host, op_hash, retry_count: int = 0) -> None:
        self.finished[host.name] = _op_name(state, op_hash)

    def operation_host_error(
        self, state: State, host: Host, op_hash, retry_count: int = 0, max_retries: int = 0
    ) -> None:
        self.failed.add(host.name)

    def operation_start(self, state: State, op_hash) -> None:
        if not self.installed:  # operations run from here on (a plan never gets here)
            self.installed = True
            signal.signal(signal.SIGINT, lambda signum, frame: self.on_sigint(state))
        if self.requested:
            print(self.summary(state, op_hash), file=sys.stderr, flush=True)
            raise SystemExit(INTERRUPTED_STATUS)

    # --- the signal -----------------------------------------------------------------------------
    def on_sigint(self, state: State) -> None:
        self.requested += 1
        if self.requested > 1:
            print(
                "\nsaf: interrupted again: exiting now (the step in flight on the nodes stops with the "
                "connection; the next run builds what it left half-done afresh)",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(INTERRUPTED_STATUS)
        print(
            "\nsaf: interrupted: no new operation starts; the one in flight finishes on every node first "
            "(at most that step's own time). Ctrl-C again to stop at once.",
            file=sys.stderr,
            flush=True,
        )

    def summary(self, state: State, next_op: str) -> str:
        """Per node: the last operation it finished, where the next run goes on, and the restart of
        Ray this run had planned there (the next run reads it from the node again)."""
        order = state.get_op_order()
        remaining = order[order.index(next_op) :] if next_op in order else []
        lines = ["", "saf: stopped after Ctrl-C, before the next operation. Per node:"]
        for host in state.inventory:
            if not state.is_host_in_limit(host):
                continue
            last = self.finished.get(host.name, "no operation yet")
            left = [op_hash for op_hash in remaining if op_hash in state.ops.get(host, {})]
            status = "failed earlier in this run; " if host.name in self.failed else ""
            todo = (
                f"the next run goes on from {_op_name(state, left[0])} ({len(left)} operations left)"
                if left
                else "no operation was left for it"
            )
            restart = planned_ray_restart(host)
            if restart and left:
                todo += f", and Ray restarts there ({'; '.join(restart)})"
            lines.append(f"  {host.name}: {status}stopped after {last}; {todo}")
        lines.append(
            "  The next run reads each node again: what is done stays done, and Ray restarts wherever "
            "it still runs a venv, definition or token older than what is on the node."
        )
        return "\n".join(lines)


def _op_name(state: State, op_hash) -> str:
    return ", ".join(state.get_op_meta(op_hash).names) or str(op_hash)


def stop_between_operations(state: State) -> InterruptedRun:
    """Install the Ctrl-C handling above for this run (once; deploy.py calls it for every host). The
    signal handler itself is installed when the first operation starts."""
    real = state._get_module() if hasattr(state, "_get_module") else state  # pyinfra's `state` is a proxy
    watcher = getattr(real, "saf_interrupt", None)
    if watcher is None:
        watcher = real.saf_interrupt = InterruptedRun()
        real.add_callback_handler(watcher)
    return watcher
