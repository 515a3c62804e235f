"""The `saf` command on a cluster file it cannot use: status 2 and the spec's message, no traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from saf.cli import main
from tests.conftest import PROJECT_DIR


@pytest.mark.parametrize("command", [["rotate-token"], ["dashboard"]])
def test_a_broken_cluster_file_exits_2_with_the_message(command, write_cluster, monkeypatch):
    broken = write_cluster({"nodes": [{"name": "alpha", "role": "head", "address": "127.0.0.1"}]})
    monkeypatch.setenv("SAF_CLUSTER", str(broken))
    monkeypatch.chdir(PROJECT_DIR)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 2, result.output
    assert f"Cannot use the cluster file {broken}" in result.output and "loopback" in result.output
    assert "Traceback" not in result.output
