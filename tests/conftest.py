"""Shared test helpers: the project directory and a planner bound to a cluster file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.planning import HostPlan, plan_deploy

PROJECT_DIR = Path(__file__).resolve().parent.parent

THREE_MACS = {
    "nodes": [
        {"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"},
        {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"},
        {"name": "gamma", "role": "worker", "address": "192.168.1.43", "ssh_user": "arthurdell"},
    ],
}


@pytest.fixture
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture
def write_cluster(tmp_path: Path) -> Callable[[Any], Path]:
    """Write a cluster file (a dict, or YAML text) to a temporary path and return the path."""

    def write(content: Any, name: str = "cluster.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
        return path

    return write


@pytest.fixture
def pin_checks(monkeypatch) -> list[dict[str, Any]]:
    """The index checks the plan asked for (not sent: plan tests stay offline), one dict each."""
    import saf.wheelhouse

    asked: list[dict[str, Any]] = []
    monkeypatch.setattr(saf.wheelhouse, "check_pins_available",
                        lambda requirements, **platform: asked.append({"requirements": requirements, **platform}))
    return asked


@pytest.fixture
def plan(write_cluster, pin_checks) -> Callable[..., dict[str, HostPlan]]:
    """plan(facts_by_host, cluster=THREE_MACS, limit=None, data=None): the deploy planned against fixtures
    (``data``: as ``pyinfra --data``)."""

    def run(facts: dict[str, dict[str, Any]], cluster: Any = None, limit=None,
            deploy_file: str = "deploy.py", data: dict[str, Any] | None = None) -> dict[str, HostPlan]:
        cluster = copy.deepcopy(cluster if cluster is not None else THREE_MACS)
        # no downloads in plan tests: install from the index unless the test names a wheelhouse
        # (the index check of the pins is recorded by `pin_checks`, not sent)
        cluster.setdefault("settings", {}).setdefault("wheelhouse", "")
        # the fixtures' network is the test's alone: a Ray without token auth needs no firewall here
        # (the rule itself is tested in tests/unit/test_spec_exposure.py); a test may set it false
        cluster["settings"].setdefault("trusted_network", True)
        path = write_cluster(cluster)
        return plan_deploy(PROJECT_DIR, facts, cluster_path=path, limit=limit, deploy_file=deploy_file, data=data)

    return run
