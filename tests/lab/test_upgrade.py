"""The whole stack upgraded in one run, with Ray token authentication, on the lab.

From the converged 3.11.2 / Ray 2.49.1 / MLX 0.29.1 cluster (no token: that Ray has none): an
impossible pin stops the run before any node changes and the cluster keeps serving; Ray 2.60.0
and MLX 0.32.4 in one run upgrade every node and turn token authentication on; a driver without
the token is refused; the token is in no unit, argv, log or report; a re-run changes nothing;
`saf rotate-token` replaces it everywhere and the old one stops working.

The tests share one lab and run in file order (after test_flow.py, whose last test tears Ray down).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from saf.lab.layout import NODE_USER
from tests.conftest import PROJECT_DIR
from tests.lab.conftest import deploy

NODES = ("alpha", "beta", "gamma")
PYTHON = f"/home/{NODE_USER}/saf/venv/current/bin/python"
NODE_TOKEN = f"/home/{NODE_USER}/.saf/ray/auth-token"
CONNECT = ("import ray; ray.init(address='10.77.0.11:6380', logging_level='ERROR'); "
           "print('alive', sum(n['Alive'] for n in ray.nodes()))")


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    return tmp_path_factory.mktemp("secrets") / "ray-auth-token"


@pytest.fixture(scope="module")
def clusters(lab, tmp_path_factory, token_file):
    where = tmp_path_factory.mktemp("upgrade")
    auth = {"ray_auth_token_file": str(token_file)}

    def cluster(name: str, **settings):
        return lab.write_cluster_file(list(NODES), {**auth, **settings}, path=where / f"{name}.yaml")

    return {
        "base": cluster("base"),
        "impossible": cluster("impossible", ray_version="2.49.9"),
        "latest": cluster("latest", ray_version="2.60.0", mlx_version="0.32.4"),
    }


def latest_report() -> dict:
    return json.loads((PROJECT_DIR / ".saf/reports/latest.json").read_text())


def versions() -> set[tuple[str, str, str]]:
    return {(n["python"], n["ray"], n["mlx"]) for n in latest_report()["nodes"]}


def connect(lab, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A Ray driver on alpha, as the node's user, with only ``env`` for authentication."""
    words = [f"{key}={value}" for key, value in (env or {}).items()]
    return lab.exec("alpha", ["env", "-u", "RAY_AUTH_MODE", *words, "timeout", "90", PYTHON, "-c", CONNECT],
                    user=NODE_USER, check=False, timeout=120)


def test_the_base_cluster_converges(lab, clusters):
    base = deploy(clusters["base"])
    assert base.returncode == 0, base.log[-3000:]
    assert latest_report()["ok"] and versions() == {("3.11.2", "2.49.1", "0.29.1")}


def test_an_impossible_pin_fails_before_any_node_changes_and_the_cluster_keeps_serving(lab, clusters):
    refused = deploy(clusters["impossible"])
    assert refused.returncode != 0
    assert "ray[default]==2.49.9 has no wheel for Python 3.11.2 on manylinux_2_36_x86_64 (node " in refused.log
    assert "Nearest versions that do: " in refused.log and "2.49.1" in refused.log
    assert "Traceback" not in refused.log
    assert refused.results is None or refused.changes == 0
    verified = deploy(clusters["base"], deploy_file="tasks/verify.py")
    assert verified.returncode == 0, verified.log[-3000:]
    assert versions() == {("3.11.2", "2.49.1", "0.29.1")}


def test_one_run_upgrades_every_node_and_turns_token_auth_on(lab, clusters, token_file):
    upgrade = deploy(clusters["latest"])
    assert upgrade.returncode == 0, upgrade.log[-3000:]
    assert upgrade.changed_hosts() == set(NODES)
    assert latest_report()["ok"] and versions() == {("3.11.2", "2.60.0", "0.32.4")}
    workers = [n for n in latest_report()["nodes"] if n["role"] == "worker"]
    assert all(n["gbit_s"] > 0 and "link_gbit_s" in n for n in workers)  # throughput, beside the link speed
    token = token_file.read_text().strip()
    for name in NODES:
        stat = lab.exec(name, ["stat", "-c", "%a %U", NODE_TOKEN]).stdout.split()
        assert stat == ["600", NODE_USER]
        assert lab.exec(name, ["cat", NODE_TOKEN]).stdout.strip() == token
        unit = lab.exec(name, ["sh", "-c", "systemctl cat 'saf-ray-*'"]).stdout
        assert f"Environment=RAY_AUTH_TOKEN_PATH={NODE_TOKEN}" in unit and token not in unit
        argv = lab.exec(name, ["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"], check=False).stdout
        assert "raylet" in argv and token not in argv
        environ = lab.exec(name, ["sh", "-c", "cat /proc/[0-9]*/environ | tr '\\0' '\\n'"], check=False).stdout
        assert token not in environ  # the services read the file: the token is in no environment either
    assert token not in upgrade.log and token not in json.dumps(latest_report())


def test_a_driver_without_the_token_is_refused(lab):
    refused = connect(lab)
    assert refused.returncode != 0 and "alive" not in refused.stdout
    wrong = connect(lab, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64})
    assert wrong.returncode != 0 and "alive" not in wrong.stdout
    admitted = connect(lab, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": NODE_TOKEN})
    assert admitted.returncode == 0, admitted.stderr[-2000:]
    assert admitted.stdout.split() == ["alive", "3"]


def test_a_rerun_of_the_upgraded_cluster_changes_nothing(lab, clusters):
    again = deploy(clusters["latest"])
    assert again.returncode == 0, again.log[-3000:]
    assert again.changes == 0, [op["name"] for op in again.results["operations"] if op["success"]]


def test_rotate_token_replaces_it_everywhere_and_the_old_one_stops_working(lab, clusters, token_file):
    old = token_file.read_text().strip()
    env = {**os.environ, "SAF_CLUSTER": str(clusters["latest"])}
    saf = Path(sys.executable).parent / "saf"  # the console script, as a user runs it
    rotated = subprocess.run([str(saf), "rotate-token"], cwd=PROJECT_DIR, env=env,
                             capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert rotated.returncode == 0, rotated.stderr[-3000:]
    new = token_file.read_text().strip()
    assert new != old and len(new) == 64
    for name in NODES:
        assert lab.exec(name, ["cat", NODE_TOKEN]).stdout.strip() == new
    assert latest_report()["ok"]  # the cluster re-formed on the new token
    stale = connect(lab, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": old})
    assert stale.returncode != 0 and "alive" not in stale.stdout
