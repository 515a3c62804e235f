"""The whole flow on the lab, in order, as a user lives it: onboarding from nothing, a converged
re-run, identical Python everywhere, a pin upgrade, and an unreachable node.

The tests share one lab and run in file order; each builds on the state the previous one left.
"""

from __future__ import annotations

import json
import time

import pytest

from saf.lab.layout import NODE_USER
from tests.conftest import PROJECT_DIR
from tests.lab.conftest import deploy

NODES = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def clusters(lab, tmp_path_factory):
    """Cluster files over the lab's nodes: two nodes, all three, and all three with MLX 0.29.3."""
    where = tmp_path_factory.mktemp("clusters")
    return {
        "two": lab.write_cluster_file(["alpha", "beta"], path=where / "two.yaml"),
        "three": lab.write_cluster_file(list(NODES), path=where / "three.yaml"),
        "upgraded": lab.write_cluster_file(list(NODES), {"mlx_version": "0.29.3"}, path=where / "upgraded.yaml"),
    }


def venv_report(lab, name: str) -> dict:
    script = ("import json, platform, sys, os, subprocess, importlib.metadata as m; print(json.dumps({"
              "'python': subprocess.run([sys.executable, '-VV'], capture_output=True, text=True).stdout, "
              "'prefix': os.path.realpath(sys.prefix), "
              "'pins': {d: m.version(d) for d in ('ray', 'mlx', 'numpy')}, "
              "'freeze': sorted(d.metadata['Name'].lower() + '==' + d.version for d in m.distributions())}))")
    out = lab.exec(name, [f"/home/{NODE_USER}/saf/venv/current/bin/python", "-c", script], user=NODE_USER).stdout
    return json.loads(out)


def latest_report() -> dict:
    return json.loads((PROJECT_DIR / ".saf/reports/latest.json").read_text())


def test_two_nodes_from_nothing_then_gamma_onboarded_alone(lab, clusters):
    first = deploy(clusters["two"])
    assert first.returncode == 0, first.log[-3000:]
    assert first.changed_hosts() == {"alpha", "beta"}
    # said before the long steps: what, where, how long
    assert "--> Building Python 3.11.2 from source (pyenv) on 2 nodes (alpha, beta), in parallel: about" in first.log \
        or "--> Building Python 3.11.2 from source (pyenv) on 2 nodes (beta, alpha), in parallel: about" in first.log
    assert "--> Building the venv py3.11.2-ray2.49.1-mlx0.29.1-" in first.log
    assert [n["name"] for n in latest_report()["nodes"]] == ["alpha", "beta"] and latest_report()["ok"]
    onboard = deploy(clusters["three"], "--limit", "gamma")
    assert onboard.returncode == 0, onboard.log[-3000:]
    assert onboard.changed_hosts() == {"gamma"}
    report = latest_report()  # verified from gamma, for the whole cluster
    assert report["ok"] and [n["name"] for n in report["nodes"]] == list(NODES)
    gamma = report["nodes"][2]
    assert gamma["hostname"] == "gamma" and gamma["gflops_f32"] > 0 and gamma["mtu_path_ok"] is True
    assert gamma["device"] == "cpu" and gamma["device_name"] and gamma["size_f16"] >= 256 and "size f32/f16" in onboard.log
    assert {(n["python"], n["ray"], n["mlx"]) for n in report["nodes"]} == {("3.11.2", "2.49.1", "0.29.1")}
    collective = report["collective"]  # one MLX rank per node, gamma's included, over the ring
    assert (collective["backend"], collective["ranks"], collective["ok"], collective["problems"]) == ("ring", 3, True, [])
    assert set(collective["busbw_gbyte_s"]) == {"1", "16", "64", "256"}
    assert all(figure > 0 for figure in collective["busbw_gbyte_s"].values())
    assert "MLX all_sum (ring, 3 ranks): ok" in onboard.log and "bus bandwidth GB/s: 1 MB" in onboard.log


def test_rerun_on_a_converged_cluster_changes_nothing(lab, clusters):
    # the first run without --limit after onboarding gamma adds gamma to the others' MLX hostfiles, and only that
    again = deploy(clusters["three"])
    assert again.returncode == 0, again.log[-3000:]
    changed = {(op["name"], tuple(sorted(op["success"]))) for op in again.results["operations"] if op["success"]}
    assert changed == {("tasks/mlx_distributed.py | MLX hostfile for mlx.launch (ring, cluster ips)", ("alpha", "beta"))}
    converged = deploy(clusters["three"])
    assert converged.returncode == 0, converged.log[-3000:]
    assert converged.changes == 0, [op["name"] for op in converged.results["operations"] if op["success"]]


def test_every_node_has_the_same_python_venv_path_and_pins(lab):
    reports = {name: venv_report(lab, name) for name in NODES}
    assert len({r["python"] for r in reports.values()}) == 1
    assert reports["alpha"]["python"].startswith("Python 3.11.2 (main, Jan  1 1980")
    assert len({r["prefix"] for r in reports.values()}) == 1
    for report in reports.values():
        assert report["pins"] == {"ray": "2.49.1", "mlx": "0.29.1", "numpy": "2.0.2"}
    assert len({tuple(r["freeze"]) for r in reports.values()}) == 1  # every package, not just the pins
    assert "mlx-cpu==0.29.1" in {entry.replace("_", "-") for entry in reports["alpha"]["freeze"]}


def verify(clusters) -> tuple:
    started = time.monotonic()
    result = deploy(clusters["three"], deploy_file="tasks/verify.py")
    return result, time.monotonic() - started


def test_a_stopped_node_fails_the_verification_by_name_in_bounded_time(lab, clusters):
    lab.exec("gamma", ["systemctl", "stop", "saf-ray-worker.service"])
    try:
        result, seconds = verify(clusters)
        assert result.returncode != 0
        assert "gamma (10.77.0.13) is not alive in the Ray cluster" in result.log
        assert seconds < 120
        assert latest_report()["ok"] is False
    finally:
        lab.exec("gamma", ["systemctl", "start", "saf-ray-worker.service"])


def node_ids(lab, ip: str) -> set[str]:
    script = ("import ray; ray.init(address='10.77.0.11:6380', logging_level='ERROR'); "
              f"print(' '.join(n['NodeID'] for n in ray.nodes() if n['Alive'] and n['NodeManagerAddress'] == '{ip}'))")
    out = lab.exec("alpha", [f"/home/{NODE_USER}/saf/venv/current/bin/python", "-c", script], user=NODE_USER,
                   check=False).stdout
    return set(out.split())


def test_a_crashed_worker_is_back_in_the_cluster_within_30_s(lab):
    before = node_ids(lab, "10.77.0.12")
    assert before
    lab.exec("beta", ["pkill", "-9", "-f", "raylet"])
    killed = time.monotonic()
    back = set()
    while time.monotonic() - killed < 30 and not (back - before):
        time.sleep(1)
        back = node_ids(lab, "10.77.0.12")
    assert back - before, "beta's Ray did not come back within 30 s"


CLUSTER_MTU = 9000  # the `mtu` setting: its default, which the lab's cluster files keep


def link_mtu(lab, name: str) -> int:
    """The MTU the kernel has now on the node's cluster interface (eth0)."""
    return int(lab.exec(name, ["cat", "/sys/class/net/eth0/mtu"]).stdout)


def test_services_start_at_boot(lab, clusters):
    lab.reboot("beta")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and lab.exec("beta", ["systemctl", "is-active", "saf-ray-worker.service"],
                                                   check=False).stdout.strip() != "active":
        time.sleep(1)
    # saf-mtu.service ran at this boot (a oneshot that stays active once it has succeeded), and the
    # interface has the setting; the verification's 9000-byte path check then passes to and from beta
    assert lab.exec("beta", ["systemctl", "is-active", "saf-mtu.service"], check=False).stdout.strip() == "active"
    assert link_mtu(lab, "beta") == CLUSTER_MTU
    result, _ = verify(clusters)
    assert result.returncode == 0, result.log[-3000:]


def test_a_node_back_at_1500_fails_the_path_check_and_the_next_deploy_repairs_it(lab, clusters):
    lab.exec("alpha", ["ip", "link", "set", "eth0", "mtu", "1500"])
    result, _ = verify(clusters)
    assert result.returncode != 0
    assert "9000-byte frames do not pass from alpha to beta (10.77.0.12)" in result.log
    assert "largest don't-fragment payload that passes is 1472 bytes" in result.log
    repair = deploy(clusters["three"])
    assert repair.returncode == 0, repair.log[-3000:]
    assert lab.exec("alpha", ["ip", "-o", "link", "show", "eth0"]).stdout.split("mtu ")[1].startswith("9000")
    assert latest_report()["ok"]


def test_the_dashboard_is_not_reachable_from_outside_by_default(lab):
    assert lab.outsider_exec(["bash", "-c", "exec 3<>/dev/tcp/10.77.0.11/8265"]).returncode != 0
    inside = lab.exec("alpha", ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8265 && echo open"], check=False)
    assert inside.stdout.strip() == "open"


def test_a_pin_upgrade_changes_only_the_venv_and_every_node_reports_it(lab, clusters):
    upgrade = deploy(clusters["upgraded"])
    assert upgrade.returncode == 0, upgrade.log[-3000:]
    changed_ops = {op["name"] for op in upgrade.results["operations"] if op["success"]}
    venv_ops = {name for name in changed_ops if name.startswith("tasks/venv.py | Venv py3.11.2-ray2.49.1-mlx0.29.3-")}
    assert len(venv_ops) == 1, changed_ops  # only what depends on the pin: the venv, then Ray's restart
    assert changed_ops - venv_ops == {"tasks/ray_service.py | Ray head (systemd)",
                                      "tasks/ray_service.py | Ray worker (systemd)"}, changed_ops
    assert latest_report()["ok"] and {n["mlx"] for n in latest_report()["nodes"]} == {"0.29.3"}
    for name in NODES:
        assert venv_report(lab, name)["pins"]["mlx"] == "0.29.3"
    assert deploy(clusters["upgraded"]).changes == 0


def test_an_unreachable_node_fails_the_run_by_name_and_the_next_run_converges(lab, clusters):
    lab.stop_sshd("beta")
    try:
        back = deploy(clusters["three"])  # back to MLX 0.29.1: its venv is `previous` everywhere
        assert back.returncode != 0
        assert "beta" in back.results["failed_hosts"] or "[beta]" in back.log
        assert {"alpha", "gamma"} <= back.changed_hosts()
        for name in ("alpha", "gamma"):
            assert venv_report(lab, name)["pins"]["mlx"] == "0.29.1"
    finally:
        lab.start_sshd("beta")
    again = deploy(clusters["three"])
    assert again.returncode == 0, again.log[-3000:]
    assert again.changed_hosts() == {"beta"}
    assert venv_report(lab, "beta")["pins"]["mlx"] == "0.29.1"


def test_rollback_makes_the_previous_venv_current_and_restarts_ray(lab, clusters):
    rollback = deploy(clusters["three"], deploy_file="tasks/rollback.py")
    assert rollback.returncode == 0, rollback.log[-3000:]
    for name in NODES:
        assert venv_report(lab, name)["pins"]["mlx"] == "0.29.3"  # the previous venv, after the last test
    result, _ = verify(clusters)
    assert result.returncode != 0 and "runs mlx 0.29.3, not the pinned 0.29.1" in result.log
    assert deploy(clusters["three"]).returncode == 0  # the deploy goes back to the cluster file's pins


def test_teardown_leaves_no_ray_process_and_no_unit(lab, clusters):
    teardown = deploy(clusters["three"], deploy_file="tasks/teardown.py")
    assert teardown.returncode == 0, teardown.log[-3000:]
    for name in NODES:
        assert lab.exec(name, ["pgrep", "-f", "raylet|gcs_server|bin/ray start"], check=False).stdout.strip() == ""
        assert lab.exec(name, ["sh", "-c", "ls /etc/systemd/system/saf-ray-*"], check=False).returncode != 0
        assert venv_report(lab, name)["pins"]["mlx"] == "0.29.1"  # venvs stay


def test_teardown_with_venvs_removes_saf_s_venvs_and_keeps_the_user_s_folder(lab, clusters):
    root = f"/home/{NODE_USER}/saf/venv"
    for name in NODES:
        lab.exec(name, ["sh", "-c", f"mkdir -p {root}/my-notes && echo mine > {root}/my-notes/todo.txt"], user=NODE_USER)
        before = lab.exec(name, ["ls", "-A", root], user=NODE_USER).stdout.split()
        assert {"current", ".saf-venv-root", "my-notes"} <= set(before), before  # (previous: after the rollback)
        assert [entry for entry in before if entry.startswith("py3.11.2-ray2.49.1-mlx")], before
    teardown = deploy(clusters["three"], "--data", "teardown_venvs=true", deploy_file="tasks/teardown.py")
    assert teardown.returncode == 0, teardown.log[-3000:]
    for name in NODES:
        # SAF's venvs and links gone; the user's folder, its file and so venv_root (and SAF's marker in it) stay
        after = lab.exec(name, ["ls", "-A", root], user=NODE_USER).stdout.split()
        assert sorted(after) == [".saf-venv-root", "my-notes"], after
        assert lab.exec(name, ["cat", f"{root}/my-notes/todo.txt"], user=NODE_USER).stdout == "mine\n"
    again = deploy(clusters["three"], "--data", "teardown_venvs=true", deploy_file="tasks/teardown.py")
    assert again.returncode == 0, again.log[-3000:]
    assert not [op["name"] for op in again.results["operations"] if op["success"] and "venvs" in op["name"]]
    for name in NODES:  # leave the lab as a teardown of SAF's alone would
        lab.exec(name, ["rm", "-r", f"{root}/my-notes"], user=NODE_USER)
