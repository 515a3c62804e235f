"""The lab for end-to-end tests: brought up once per test session, down at the end.

Needs root (namespaces, containers). SAF_SKIP_LAB=1 skips these tests; SAF_LAB_KEEP=1 keeps the
lab up after the session (to look around with `saf lab ssh alpha`); SAF_LAB_REUSE=1 starts from the
lab as it is instead of fresh nodes (for iterating on one test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from saf.lab.api import Lab
from tests.conftest import PROJECT_DIR


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.environ.get("SAF_SKIP_LAB") == "1":
        reason = "SAF_SKIP_LAB=1"
    elif os.geteuid() != 0:
        reason = "the lab needs root"
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def lab():
    the_lab = Lab(PROJECT_DIR)
    if os.environ.get("SAF_LAB_REUSE") != "1":
        the_lab.down()  # fresh nodes for every session (the caches stay)
    the_lab.up(3)
    yield the_lab
    if os.environ.get("SAF_LAB_KEEP") != "1":
        the_lab.down()


@dataclass
class DeployResult:
    returncode: int
    results: dict | None  # pyinfra's --json results: operations, totals, failed_hosts
    log: str  # what pyinfra printed on stderr

    def changed_hosts(self) -> set[str]:
        return {host for op in self.results["operations"] for host in op["success"]}

    @property
    def changes(self) -> int:
        return self.results["totals"]["success"]


def deploy(cluster: Path, *args: str, deploy_file: str = "deploy.py", timeout: float = 1800) -> DeployResult:
    """Run the real pyinfra CLI against lab nodes, as a user would, with --json results."""
    env = {**os.environ, "SAF_CLUSTER": str(cluster)}
    proc = subprocess.run([sys.executable, "-m", "pyinfra", "inventory.py", deploy_file, "-y", "--json", *args],
                          cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    results = None
    start = proc.stdout.find("{")
    if start >= 0:
        results = json.loads(proc.stdout[start:]).get("results")
    return DeployResult(proc.returncode, results, proc.stderr)
