"""benchmarks/rerun.py's judgement: when every node is back in the cluster, and the `ray up` config
it writes for the same nodes (read back as YAML, as `ray up` reads it)."""

from __future__ import annotations

import sys

import pytest
import yaml

from saf.spec import load_cluster
from tests.conftest import PROJECT_DIR

sys.path.insert(0, str(PROJECT_DIR / "benchmarks"))
import rerun  # noqa: E402

ALL = {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
EVERYONE = sorted(ALL)


def polls(*states, start: float = 100.0, step: float = 0.5):
    return [(start + i * step, state) for i, state in enumerate(states)]


def test_a_cluster_no_node_left_is_back_at_once():
    history = polls(*[EVERYONE] * 12)  # 100.0 .. 105.5
    assert rerun.back_after(history, ALL, since=100.2, returned=101.0, settle=2.0) == 0.0
    assert rerun.back_after(history, ALL, since=100.2, returned=104.0, settle=2.0) is None  # not yet 2 s after


def test_back_is_the_start_of_the_stretch_that_lasts_past_the_return():
    history = polls(EVERYONE, None, None, ["10.0.0.1"], EVERYONE, ["10.0.0.1", "10.0.0.2"], EVERYONE,
                    EVERYONE, EVERYONE, EVERYONE, EVERYONE)
    # at 102.0 all are back, but one leaves at 102.5; the stretch from 103.0 lasts to 105.0
    assert rerun.back_after(history, ALL, since=100.2, returned=101.0, settle=2.0) == round(103.0 - 100.2, 2)


def test_a_whole_cluster_seen_before_the_command_restarted_it_is_not_back():
    # ray up: every node alive for 3 s, then the head restarts inside the command, workers after it
    history = polls(*[EVERYONE] * 7, None, None, ["10.0.0.1"], ["10.0.0.1"], *[EVERYONE] * 8)
    assert rerun.back_after(history, ALL, since=100.0, returned=104.5, settle=2.0) == 5.5
    assert rerun.back_after(history[:-2], ALL, since=100.0, returned=104.5, settle=3.0) is None


def test_not_back_while_a_node_is_missing():
    assert rerun.back_after(polls(*[["10.0.0.1", "10.0.0.2"]] * 10), ALL, since=100.0, returned=100.0,
                            settle=1.0) is None
    assert rerun.back_after([], ALL, since=0.0, returned=0.0, settle=1.0) is None


@pytest.fixture
def cluster(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"nodes": [
        {"name": "alpha", "role": "head", "address": "10.77.0.11", "ssh_user": "saf"},
        {"name": "beta", "role": "worker", "address": "10.77.0.12", "ssh_user": "saf"},
        {"name": "gamma", "role": "worker", "address": "10.77.0.13", "ssh_user": "saf"}],
        "settings": {"trusted_network": True}}))  # the lab's network, as benchmarks/rerun.py runs it
    return load_cluster(PROJECT_DIR, path)


def test_the_ray_up_config_names_the_same_nodes_venv_pins_and_gcs_port(cluster, tmp_path):
    config = yaml.safe_load(yaml.safe_dump(rerun.launcher_config(cluster, tmp_path / "key", "~/saf/venv/current")))
    assert config["provider"] == {"type": "local", "head_ip": "10.77.0.11", "worker_ips": ["10.77.0.12", "10.77.0.13"]}
    assert config["auth"] == {"ssh_user": "saf", "ssh_private_key": str(tmp_path / "key")}
    assert config["min_workers"] == config["max_workers"] == 2
    [pins] = config["setup_commands"]
    assert pins.startswith("~/saf/venv/current/bin/python -c ")
    assert f"ray.__version__ == '{cluster.settings.ray_version}'" in pins
    assert f"mx.__version__ == '{cluster.settings.mlx_version}'" in pins
    head_stop, head_start = config["head_start_ray_commands"]
    assert head_stop == "~/saf/venv/current/bin/ray stop"
    assert head_start.startswith("~/saf/venv/current/bin/ray start --head --port=6380 --node-ip-address=10.77.0.11 ")
    assert "--dashboard-host=127.0.0.1" in head_start and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    worker_stop, worker_start = config["worker_start_ray_commands"]
    assert worker_stop == "~/saf/venv/current/bin/ray stop"
    assert worker_start.startswith("~/saf/venv/current/bin/ray start --address=$RAY_HEAD_IP:6380 ")


def test_the_table_gives_medians_and_the_saf_runs_changes():
    results = [{"nodes": 3,
                "saf_converge": [{"seconds": 1.5, "changes": 0, "back_s": 0.0}, {"seconds": 1.9, "changes": 0, "back_s": 0.0},
                                 {"seconds": 1.7, "changes": 0, "back_s": 0.0}],
                "ray_up_restart": [{"seconds": 19.0, "back_s": 30.5}, {"seconds": 21.0, "back_s": None}]}]
    lines = rerun.table(results).splitlines()
    converge = next(line for line in lines if "converge only" in line).split()
    assert converge == ["3", "SAF", "re-run,", "converge", "only", "3", "1.7", "0.0", "0,", "0,", "0"]
    restart = next(line for line in lines if "restarts Ray" in line).split()
    assert restart[-3:] == ["20.0", "30.5", "-"]  # the run never back has no figure in the median
    assert rerun.median([], "seconds") is None


def test_the_overhead_pairs_alternate_and_the_figure_is_the_median_ratio():
    import provision_overhead

    assert [provision_overhead.pair_order(i) for i in range(4)] == [
        ("saf", "by_hand"), ("by_hand", "saf"), ("saf", "by_hand"), ("by_hand", "saf")]
    result = provision_overhead.summary([{"saf_s": 110.0, "by_hand_s": 100.0}, {"saf_s": 90.0, "by_hand_s": 100.0},
                                         {"saf_s": 300.0, "by_hand_s": 100.0}])
    assert result["ratios"] == [1.1, 0.9, 3.0] and result["median_ratio"] == 1.1  # the outlier does not move it
