"""MLX distributed on the lab: `saf launch` runs one rank per node through Ray from the control
machine (output by node, the worst rank's exit status, --nodes, Ctrl-C stops every rank), ships the
project and never a home's credentials (run from a folder holding .ssh/, .aws/, .env and a data
file, every node's rank sees the data file only), and every node holds the hostfile `mlx.launch` reads.

Named to run after test_flow_firewall.py (file order), whose last test leaves the three nodes
deployed without the firewall; the first test here deploys again anyway (a converged re-run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saf.lab.layout import NODE_USER
from tests.conftest import PROJECT_DIR
from tests.lab.conftest import deploy

NODES = ("alpha", "beta", "gamma")
IPS = {"alpha": "10.77.0.11", "beta": "10.77.0.12", "gamma": "10.77.0.13"}
SAF = str(Path(sys.executable).parent / "saf")  # the venv's saf command
SLEEPER = "import os, time; print('up', os.environ['MLX_RANK'], flush=True); time.sleep(300)  # saf-launch-test"


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    path = lab.write_cluster_file(list(NODES), path=tmp_path_factory.mktemp("launch") / "three.yaml")
    result = deploy(path)
    assert result.returncode == 0, result.log[-3000:]
    return path


def saf(cluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([SAF, *args], cwd=PROJECT_DIR, capture_output=True, text=True,
                          env={**os.environ, "SAF_CLUSTER": str(cluster)}, stdin=subprocess.DEVNULL, timeout=timeout)


def test_every_node_ran_one_rank_and_all_agree_on_the_sum(cluster):
    run = saf(cluster, "launch", "--", "python", "examples/allsum.py")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = sorted(line for line in run.stdout.splitlines() if " | " in line)
    assert lines == ["alpha | rank 0 of 3: all_sum of 1..3 = 6", "beta  | rank 1 of 3: all_sum of 1..3 = 6",
                     "gamma | rank 2 of 3: all_sum of 1..3 = 6"]


def test_a_rank_that_raises_fails_the_launch_by_node(cluster):
    script = "import os; assert os.environ['MLX_RANK'] != '1', 'rank 1 refuses'; print('fine')"
    run = saf(cluster, "launch", "--", "python", "-c", script)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "beta  | AssertionError: rank 1 refuses" in run.stdout
    assert "saf launch: beta (rank 1) exited with status 1" in run.stdout + run.stderr
    assert run.stdout.count("| fine") == 2


def test_named_nodes_form_a_smaller_ring_in_cluster_order(cluster):
    run = saf(cluster, "launch", "--nodes", "gamma,alpha", "--", "python", "examples/allsum.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(line for line in run.stdout.splitlines() if " | " in line) == [
        "alpha | rank 0 of 2: all_sum of 1..2 = 3", "gamma | rank 1 of 2: all_sum of 1..2 = 3"]
    unknown = saf(cluster, "launch", "--nodes", "alpha,delta", "--", "true")
    assert unknown.returncode != 0 and "--nodes names delta; the cluster file's nodes are alpha, beta, gamma" in \
        unknown.stderr


LIST_FILES = ("import os; print(sorted(os.path.relpath(os.path.join(top, name)) for top, _, names in os.walk('.') "
              "for name in names))")


def test_a_launch_from_a_folder_with_credentials_ships_only_the_data(cluster, tmp_path):
    folder = tmp_path / "careless"
    for relative, text in {".ssh/id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----", ".aws/credentials": "[default]",
                           ".env": "TOKEN=never-shipped", "data.csv": "1,2,3\n", ".gitignore": "*.tmp\n",
                           "scratch.tmp": "x"}.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    run = subprocess.run([SAF, "launch", "--", "python", "-c", LIST_FILES], cwd=folder, capture_output=True, text=True,
                         env={**os.environ, "SAF_CLUSTER": str(cluster)}, stdin=subprocess.DEVNULL, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = sorted(line for line in run.stdout.splitlines() if " | " in line)
    assert seen == [f"{name.ljust(5)} | ['.gitignore', 'data.csv']" for name in NODES], run.stdout  # every node's rank
    assert "left out: 3 credentials and keys (.aws/, .env, .ssh/); 1 ignored by .gitignore (scratch.tmp)" in run.stderr
    assert "never-shipped" not in run.stdout + run.stderr


def test_a_launch_from_the_home_folder_is_refused(cluster, tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    run = subprocess.run([SAF, "launch", "--", "true"], cwd=home, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SAF_CLUSTER": str(cluster), "HOME": str(home)}, stdin=subprocess.DEVNULL)
    assert run.returncode == 1 and "is your home folder" in run.stderr and "cd into the program's own project" in \
        run.stderr


def sleepers(lab, name: str) -> str:
    return lab.exec(name, ["pgrep", "-af", "saf-launch-test"], check=False).stdout.strip()


def test_ctrl_c_stops_every_rank_on_every_node(lab, cluster):
    launched = subprocess.Popen([SAF, "launch", "--", "python", "-c", SLEEPER],
                                cwd=PROJECT_DIR, env={**os.environ, "SAF_CLUSTER": str(cluster)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, start_new_session=True)
    try:
        up = []
        while len(up) < len(NODES):  # the ranks' lines (stderr's "saf launch: shipping ..." comes first)
            line = launched.stdout.readline()
            assert line, f"the launch ended before every rank was up: {up}"
            up += [line] if " | " in line else []
        assert sorted(line.split(" | ")[1].strip() for line in up) == ["up 0", "up 1", "up 2"], up
        assert all(sleepers(lab, name) for name in NODES)
        os.killpg(launched.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground group
        assert launched.wait(timeout=30) == 130
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(sleepers(lab, name) for name in NODES):
            time.sleep(1)
        assert not any(sleepers(lab, name) for name in NODES), {name: sleepers(lab, name) for name in NODES}
        assert lab.exec("alpha", ["ls", "-A", f"/home/{NODE_USER}/.saf/launch"]).stdout == ""  # nothing left behind
    finally:
        launched.kill()


def test_every_node_holds_mlx_launch_s_hostfile(lab, cluster):
    expected = [{"ssh": f"{NODE_USER}@{IPS[name]}", "ips": [IPS[name]]} for name in NODES]
    for name in NODES:
        text = lab.exec(name, ["cat", f"/home/{NODE_USER}/.saf/mlx/hostfile.json"]).stdout
        assert json.loads(text) == expected
