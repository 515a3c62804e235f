"""Plan a deploy without connecting anywhere: the real deploy code, facts from fixtures.

``plan_deploy`` loads the cluster file, builds the same inventory as ``inventory.py``, runs
``deploy.py`` for each host exactly as ``pyinfra inventory.py deploy.py`` loads it, but every fact
a task asks for is answered from a fixture instead of over SSH. It returns, per host, the
operations and the commands each would run. This is how macOS paths are tested on Linux: a fresh
host must get the right commands, a converged host none.

Fixtures map a fact's name to its value, ``"server.Kernel": "Darwin"``; a fact asked with
arguments is looked up as ``"files.File:/etc/x"`` (argument values joined by ``,``), then as
``"files.File:*"``. A value wrapped in :class:`Raw` is the command's raw output, parsed by the
fact's own ``process`` (so parsers meet the reference outputs). A fact with no fixture is an error
that names the key to add: tests state every fact the deploy reads.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MethodType
from typing import Any

import pyinfra
from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import (
    FileDownloadCommand,
    FileUploadCommand,
    FunctionCommand,
    StringCommand,
)
from pyinfra.api.facts import FactBase, ShortFactBase
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state

from saf.inventory import inventory_groups
from saf.spec import load_cluster


@dataclass(frozen=True)
class Raw:
    """A fact fixture given as the command's raw output (text), to be parsed by the fact."""

    output: str


@dataclass(frozen=True)
class FromHostData:
    """A fact fixture computed from the planned host's data: for a converged value that depends on
    the whole cluster file (the sha1 of the MLX hostfile, which lists every node)."""

    compute: Callable[[Any], Any]


class MissingFactFixture(LookupError):
    """The deploy asked for a fact the fixture does not provide."""


@dataclass
class PlannedOp:
    """One operation planned for one host."""

    name: str
    commands: list[str]
    sudo: bool = False
    uploads: dict[str, bytes] = field(default_factory=dict)
    position: int = 0  # place in the run's operation order (all hosts): lower runs first

    @property
    def changes(self) -> bool:
        return bool(self.commands)


@dataclass
class HostPlan:
    """Everything planned for one host, in execution order."""

    ops: list[PlannedOp]

    @property
    def commands(self) -> list[str]:
        return [command for op in self.ops for command in op.commands]

    @property
    def changing_ops(self) -> list[PlannedOp]:
        return [op for op in self.ops if op.changes]

    def op(self, name_part: str) -> PlannedOp:
        """The single op whose name contains ``name_part``."""
        found = [op for op in self.ops if name_part in op.name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} ops match {name_part!r}: {[op.name for op in self.ops]}")
        return found[0]

    def has_command(self, fragment: str) -> bool:
        return any(fragment in command for command in self.commands)


def fact_name(fact_cls: type) -> str:
    """``pyinfra.facts.server.Kernel`` -> ``server.Kernel``; ``saf.facts.macos.X`` -> ``macos.X``."""
    return f"{fact_cls.__module__.rsplit('.', 1)[-1]}.{fact_cls.__name__}"


def _fixture_keys(fact_cls: type, args: tuple, kwargs: dict) -> list[str]:
    name = fact_name(fact_cls)
    values = [*args, *kwargs.values()]
    if not values:
        return [name]
    return [f"{name}:{','.join(str(value) for value in values)}", f"{name}:*"]


def _resolve_fact(fixtures: Mapping[str, Any], fact_cls: type, args: tuple, kwargs: dict, data: Any = None) -> Any:
    if issubclass(fact_cls, ShortFactBase):
        base_value = _resolve_fact(fixtures, fact_cls.fact, args, kwargs, data)
        return fact_cls().process_data(base_value)
    for key in _fixture_keys(fact_cls, args, kwargs):
        if key in fixtures:
            value = fixtures[key]
            if isinstance(value, Raw):
                fact: FactBase = fact_cls()
                return fact.process(value.output.splitlines())
            if isinstance(value, FromHostData):
                return value.compute(data)
            return value
    raise MissingFactFixture(f"no fixture for fact {_fixture_keys(fact_cls, args, kwargs)[0]!r}")


def _render(command: Any, uploads: dict[str, bytes]) -> str:
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    if isinstance(command, FileUploadCommand):
        uploads[command.dest] = _read_source(command.src)
        return f"upload {command.dest}"
    if isinstance(command, FileDownloadCommand):
        return f"download {command.src}"
    if isinstance(command, FunctionCommand):
        arguments = ", ".join([*map(str, command.args), *(f"{k}={v}" for k, v in command.kwargs.items())])
        return f"call {getattr(command.function, '__name__', command.function)}({arguments})"
    return str(command)


def _read_source(src: Any) -> bytes:
    if isinstance(src, (io.StringIO, io.BytesIO)):
        data = src.getvalue()
        return data.encode() if isinstance(data, str) else data
    return Path(src).read_bytes()


@contextmanager
def _cli_mode():
    """What ``pyinfra`` the CLI sets up before it loads a deploy file."""
    was_cli = pyinfra.is_cli
    pyinfra.is_cli = True
    try:
        yield
    finally:
        pyinfra.is_cli = was_cli


def _inject_facts(host: Host, fixtures: Mapping[str, Any]) -> None:
    def get_fact(self: Host, fact_cls: type, *args: Any, **kwargs: Any) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
        return _resolve_fact(fixtures, fact_cls, args, kwargs, self.data)

    host.get_fact = MethodType(get_fact, host)  # type: ignore[method-assign]
    host.connected = True


def _build_state(project_dir: Path, cluster_path: Path | None, limit: Iterable[str] | None,
                 data: Mapping[str, Any] | None = None) -> State:
    cluster = load_cluster(project_dir, cluster_path)
    groups = inventory_groups(cluster)
    names = [entry for hosts, _ in groups.values() for entry in hosts]
    inventory = Inventory((names, {}), override_data=dict(data or {}), **groups)  # `pyinfra --data`
    state = State(check_for_changes=True)
    limit_hosts = [inventory.get_host(name) for name in limit] if limit else None
    state.init(inventory, Config(), initial_limit=limit_hosts)
    state.cwd = str(project_dir)
    return state


def plan_deploy(
    project_dir: Path | str,
    facts: Mapping[str, Mapping[str, Any]],
    cluster_path: Path | str | None = None,
    limit: Iterable[str] | None = None,
    deploy_file: str = "deploy.py",
    data: Mapping[str, Any] | None = None,
) -> dict[str, HostPlan]:
    """Run ``deploy_file`` for every (limited) host with fact fixtures; return the plan per host.

    ``facts`` maps a host name to its fixtures; hosts outside ``limit`` are not planned; ``data``
    is what ``pyinfra --data KEY=VALUE`` would set (``saf teardown --venvs``: teardown_venvs).
    """
    from pyinfra_cli.exceptions import UnexpectedExternalError
    from pyinfra_cli.util import exec_file

    project_dir = Path(project_dir).resolve()
    state = _build_state(project_dir, Path(cluster_path) if cluster_path else None, limit, data)
    hosts = [host for host in state.inventory if state.is_host_in_limit(host)]
    with _cli_mode(), ctx_state.use(state), ctx_inventory.use(state.inventory), ctx_config.use(state.config):
        state.current_stage = StateStage.Prepare
        for host in hosts:
            _inject_facts(host, facts.get(host.name, {}))
            state.activate_host(host)
            with ctx_host.use(host):
                state.current_deploy_filename = str(project_dir / deploy_file)
                try:
                    exec_file(state.current_deploy_filename)
                except UnexpectedExternalError as error:
                    raise _unwrap(error) from None  # the deploy code's own error, for the test
        return {host.name: _collect(state, host) for host in hosts}


def _unwrap(error: Exception) -> Exception:
    """pyinfra wraps an error once per included file; the test wants the original."""
    from pyinfra_cli.exceptions import UnexpectedExternalError

    while isinstance(error, UnexpectedExternalError):
        error = error.exception
    return error


def _collect(state: State, host: Host) -> HostPlan:
    ops = []
    with ctx_host.use(host):
        for position, op_hash in enumerate(state.get_op_order()):
            if op_hash not in state.ops[host]:
                continue
            op_data = state.get_op_data_for_host(host, op_hash)
            uploads: dict[str, bytes] = {}
            commands = [_render(command, uploads) for command in op_data.command_generator()]
            ops.append(
                PlannedOp(
                    name=", ".join(state.op_meta[op_hash].names),
                    commands=commands,
                    sudo=bool(op_data.global_arguments.get("_sudo")),
                    uploads=uploads,
                    position=position,
                )
            )
    return HostPlan(ops=ops)

