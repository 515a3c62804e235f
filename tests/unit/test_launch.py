"""`saf launch` without a cluster: what is shipped to the head, the remote line that runs the
driver, and the driver's rank (a real child process: output, exit status, stop) and verdict."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
from pathlib import Path

import pytest

from saf.launch import EXCLUDED, LaunchError, driver_command, home_path, pack
from saf.mlx_ring import UnknownNodes, launch_nodes
from saf.node_scripts import DIRECTORY
from saf.spec import load_cluster
from tests.conftest import PROJECT_DIR
from tests.unit.bounded import bounded  # noqa: F401 - autouse: every test here is time-bounded

sys.path.insert(0, str(DIRECTORY))
import launch_driver  # noqa: E402 - a node script, imported as the head runs it

THREE = [{"name": "alpha", "role": "head", "address": "10.0.0.1", "ssh_user": "saf"},
         {"name": "beta", "role": "worker", "address": "10.0.0.2"},
         {"name": "gamma", "role": "worker", "address": "gamma.lan", "ip": "10.0.0.3"}]


def cluster(write_cluster, **settings):
    return load_cluster(PROJECT_DIR, write_cluster({"nodes": THREE, "settings": settings}))


def test_the_working_directory_is_shipped_without_vcs_venvs_or_caches(tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "small.txt").write_text("x")
    for name in (".git", ".venv", "__pycache__", ".saf"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "big").write_bytes(b"0" * 1000)
    with tarfile.open(fileobj=io.BytesIO(pack(tmp_path)), mode="r:gz") as tar:
        names = set(tar.getnames())
        assert tar.extractfile("saf_verify_job.py").read().decode().startswith('"""The verification driver')
        assert tar.getmember("driver.py").mode == 0o644
    assert {"work/train.py", "work/data/small.txt", "driver.py", "saf_verify_job.py"} <= names
    assert not any(set(Path(name).parts) & EXCLUDED for name in names)


def test_a_working_directory_too_large_to_ship_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("saf.launch.MAX_WORKDIR_BYTES", 1 << 20)
    (tmp_path / "a.bin").write_bytes(b"0" * (1 << 19))
    (tmp_path / "b.bin").write_bytes(b"0" * (1 << 19))
    assert pack(tmp_path)  # exactly the limit, over two files: shipped
    (tmp_path / "c.bin").write_bytes(b"0" * (1 << 19))
    with pytest.raises(LaunchError) as refused:
        pack(tmp_path)
    assert str(refused.value) == (
        f"the working directory {tmp_path} holds 1 MiB to ship to every node (at most 1 MiB); run saf launch from a "
        "directory with only the program and its small files, and let the ranks read large data from where it lives")


def test_node_paths_become_remote_shell_words_under_home():
    assert home_path("~/saf/venv/current/bin/python") == '"$HOME"/saf/venv/current/bin/python'
    assert home_path(".saf/launch/ab12") == '"$HOME"/.saf/launch/ab12'
    assert home_path("/opt/saf venv/bin/python") == "'/opt/saf venv/bin/python'"


def test_the_driver_runs_with_the_venv_s_python_for_the_chosen_nodes_in_cluster_order(write_cluster):
    line = driver_command(cluster(write_cluster, mlx_ring_port=7000), "gamma,alpha", '"$HOME"/.saf/launch/x',
                          ["python", "train.py", "--name", "it's"])
    assert line.startswith('stty -onlcr 2>/dev/null; cd "$HOME"/.saf/launch/x && exec env ')
    assert '"$HOME"/saf/venv/current/bin/python driver.py --address=10.0.0.1:6380 ' in line
    assert """'--nodes=[{"name": "alpha", "ip": "10.0.0.1"}, {"name": "gamma", "ip": "10.0.0.3"}]'""" in line
    assert line.endswith("--port=7000 --backend=ring -- python train.py --name 'it'\"'\"'s'")


def test_token_auth_reaches_the_driver_as_a_path_never_the_token(write_cluster, tmp_path):
    line = driver_command(cluster(write_cluster, ray_version="2.52.0", ray_auth_token_file=str(tmp_path / "t")),
                          None, "d", ["true"])
    assert 'env RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$HOME"/.saf/ray/auth-token ' in line
    assert "exec env  " in driver_command(cluster(write_cluster), None, "d", ["true"])  # Ray 2.49.1: no auth
    off = driver_command(cluster(write_cluster, ray_version="2.52.0", ray_auth="off"), None, "d", ["true"])
    assert "exec env RAY_AUTH_MODE=disabled " in off  # off means off, on a Ray that has it


@pytest.mark.parametrize(("venv_root", "python"), [("~/saf/venv/", '"$HOME"/saf/venv/current/bin/python'),
                                                   ("/opt/saf/venv", "/opt/saf/venv/current/bin/python")])
def test_the_driver_runs_the_current_venv_s_python_wherever_it_lives(write_cluster, venv_root, python):
    assert f" {python} driver.py " in driver_command(cluster(write_cluster, venv_root=venv_root), None, "d", ["x"])


def test_named_nodes_must_be_the_cluster_s(write_cluster):
    nodes = cluster(write_cluster).nodes
    assert [node.name for node in launch_nodes(nodes, "gamma, alpha")] == ["alpha", "gamma"]
    assert [node.name for node in launch_nodes(nodes, None)] == ["alpha", "beta", "gamma"]
    with pytest.raises(UnknownNodes, match="--nodes names delta; the cluster file's nodes are alpha, beta, gamma"):
        launch_nodes(nodes, "alpha,delta")
    with pytest.raises(UnknownNodes, match="--nodes names delta, epsilon; "):
        launch_nodes(nodes, "delta,alpha,epsilon")
    with pytest.raises(UnknownNodes, match="--nodes names no node"):
        launch_nodes(nodes, ",")


def read_all(rank) -> tuple[list[str], int]:
    lines = []
    while True:
        answer = rank.read()
        lines += answer["lines"]
        if answer["exit"] is not None:
            return lines, answer["exit"]


def test_a_rank_runs_its_command_with_its_rank_and_hostfile_and_reports_its_status():
    rank = launch_driver.Rank()
    script = ("import json, os, sys; print(os.environ['MLX_RANK'], os.environ['SAF_NODE']); "
              "print(json.load(open(os.environ['MLX_HOSTFILE']))); sys.exit(3)")
    assert rank.start(1, [["10.0.0.1:6390"], ["10.0.0.2:6391"]], [sys.executable, "-c", script], "beta") == ""
    hostfile = rank.hostfile
    lines, status = read_all(rank)
    assert lines == ["1 beta", "[['10.0.0.1:6390'], ['10.0.0.2:6391']]"] and status == 3
    assert not os.path.exists(hostfile)


def test_a_rank_whose_command_cannot_start_says_why():
    assert launch_driver.Rank().start(0, [], ["/nonexistent/python"], "alpha").startswith(
        "cannot run /nonexistent/python: No such file or directory")


def test_stopping_a_rank_ends_its_whole_process_group():
    rank = launch_driver.Rank()
    script = "import subprocess, sys, time; subprocess.Popen(['sleep', '60']); print('up', flush=True); time.sleep(60)"
    rank.start(0, [], [sys.executable, "-c", script], "alpha")
    assert rank.read()["lines"] == ["up"] or rank.read()["lines"] == ["up"]
    started = time.monotonic()
    rank.stop()
    assert time.monotonic() - started < launch_driver.STOP_GRACE_S
    _, status = read_all(rank)
    assert status == launch_driver.SIGNAL_STATUS + 15  # SIGTERM
    assert not group_alive(rank.process.pid)  # the child's sleep went with it


def process_state(pid: str) -> tuple[str, str, str]:
    """(state, parent, process group) from /proc/PID/stat; a gone process is ("X", "0", "0")."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return tuple(stat.read().rsplit(")", 1)[1].split()[:3])
    except (OSError, IndexError):
        return ("X", "0", "0")


def group_alive(pgid: int, patience: float = 3.0) -> bool:
    """Whether a process of the group is still running (not a zombie waiting for init to reap it)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if not any(int(pgrp) == pgid and state != "Z" for state, _, pgrp in map(process_state, os.listdir("/proc"))):
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize(("codes", "worst"), [({"a": 0, "b": 0}, 0), ({"a": 0, "b": 1}, 1), ({"a": 3, "b": 1}, 3),
                                              ({"a": 1, "b": 143}, 143), ({}, 0)])
def test_the_launch_exits_with_the_worst_rank_s_status(codes, worst):
    assert launch_driver.exit_status(codes) == worst
