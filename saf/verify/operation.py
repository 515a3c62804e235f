"""The verification operation: reads the ClusterVerification fact when the run executes and judges it.

It yields no command when the cluster is sound, so pyinfra counts no change; when it is not,
it fails this host with the problems (no traceback) and the run exits non-zero. The table is
printed and the JSON written on the control machine either way.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from pyinfra import host, logger, state
from pyinfra.api import FunctionCommand, operation

from saf.facts.serve import ServeProbe
from saf.operations.stop import fail_host
from saf.serve.report import serve_problem, serve_report
from saf.verify import report as reports
from saf.verify.fact import ClusterVerification
from saf.verify.judgement import failure_reasons, judge
from saf.verify.strays import stray_check


@operation(is_idempotent=True)
def cluster_verified(
    python: str,
    address: str,
    expect: dict,
    timeout: int,
    reports_dir: str,
    environment: tuple[tuple[str, str], ...] = (),
    serve: dict | None = None,
):
    """
    Verify the whole cluster from this node: every node alive in Ray, versions equal to the pins,
    an MLX job pinned to each node (correctness, GFLOPS), network path and throughput.

    + python: the venv's interpreter on this node
    + address: the head's GCS, ip:port
    + expect: nodes [{name, role, ip}], pins {python, ray, mlx}, mtu, slow_ratio
    + timeout: seconds a node has to run its job
    + reports_dir: control-side directory for <timestamp>.json and latest.json
    + environment: what the driver needs to reach Ray (its auth mode and token path)
    + serve: the served model to prove through its endpoint (saf/node_scripts/serve_probe.py), or None
    """
    if not state.is_executing:
        return  # a check, not a change: it runs when the deploy executes, after every other task
    observed = host.get_fact(
        ClusterVerification,
        python=python,
        address=address,
        expect=json.dumps(expect, sort_keys=True),
        timeout=timeout,
        environment=shlex.join(f"{key}={value}" for key, value in environment),
        _timeout=timeout * 4 + 120,
    )
    result = judge(observed, expect, stray_check(host.data, host.name, observed.get("driver_pids", ())))
    if serve:
        add_serve_part(result, serve)
    path = reports.write(result, Path(reports_dir))
    logger.info(f"\n--> Verification (from {host.name}; report {path}):\n{reports.table(result)}\n")
    yield from verdict_commands(result)


def add_serve_part(result: dict, serve: dict) -> None:
    """The served model proven from this node (the head) through its endpoint: the report's ``serve`` part,
    and a problem of the cluster when it is not served as declared."""
    probe = host.get_fact(
        ServeProbe,
        python=serve["python"],
        endpoint=serve["endpoint"],
        model=serve["model"],
        replicas=serve["replicas"],
        key_file=serve.get("key_file", ""),
        timeout=serve["timeout"],
        _timeout=serve["timeout"] * 4 + 60,
    )
    result["serve"] = serve_report(probe, serve)
    problem = serve_problem(result["serve"])
    if problem:
        result["problems"].append(problem)
        result["ok"] = False


def verdict_commands(result: dict) -> list[FunctionCommand]:
    """Nothing for a sound cluster (no change); else one command that fails this host with every
    problem (a report that fails without naming one says so: the host never fails for no reason)."""
    reasons = failure_reasons(result)
    if not reasons:
        return []
    return [FunctionCommand(fail_host, ("cluster verification failed: " + "; ".join(reasons),), {})]
