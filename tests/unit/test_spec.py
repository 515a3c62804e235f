"""The cluster file and settings: good files load, broken ones fail with words that name the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from saf.inventory import inventory_groups
from saf.spec import ClusterFileError, load_cluster
from tests.conftest import PROJECT_DIR


def problems_of(write_cluster, content) -> str:
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, write_cluster(content))
    message = str(caught.value)
    assert "Traceback" not in message
    return message


def test_example_cluster_file_loads_with_defaults():
    cluster = load_cluster(PROJECT_DIR, PROJECT_DIR / "cluster.example.yaml")
    assert [n.name for n in cluster.nodes] == ["alpha", "beta", "gamma"]
    assert cluster.head.name == "alpha"
    assert cluster.node("beta").ip == "192.168.1.42"
    assert cluster.node("alpha").ip == "192.168.1.172"  # taken from address
    assert (cluster.settings.python_version, cluster.settings.ray_version, cluster.settings.mlx_version) == (
        "3.9.23", "2.49.1", "0.29.1")
    assert cluster.settings.ray_port == 6380 and cluster.settings.dashboard_port == 8265
    assert cluster.settings.mtu == 9000


def test_settings_override_defaults(write_cluster):
    path = write_cluster({"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}],
                          "settings": {"python_version": "3.11.2", "mtu": 1500, "firewall": True}})
    settings = load_cluster(PROJECT_DIR, path).settings
    assert settings.python_version == "3.11.2" and settings.mtu == 1500
    assert settings.ray_version == "2.49.1"


def test_inventory_groups_and_host_data():
    groups = inventory_groups(load_cluster(PROJECT_DIR, PROJECT_DIR / "cluster.example.yaml"))
    (head_hosts, _), (worker_hosts, _) = groups["head"], groups["workers"]
    assert [name for name, _ in head_hosts] == ["alpha"]
    assert [name for name, _ in worker_hosts] == ["beta", "gamma"]
    beta = dict(worker_hosts)["beta"]
    assert beta["ssh_hostname"] == "beta.local" and beta["ssh_user"] == "arthurdell"
    assert beta["cluster_ip"] == "192.168.1.42" and beta["head_ip"] == "192.168.1.172"
    assert beta["role"] == "worker" and beta["python_version"] == "3.9.23"
    assert [n["name"] for n in beta["cluster_nodes"]] == ["alpha", "beta", "gamma"]


NODE = {"name": "alpha", "role": "head", "address": "10.0.0.1"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "the file is empty"),
        ("nodes: []\n", "key nodes: is empty; list at least one node"),
        ("nodes:\n  - name: alpha\n   role: head\n", "line 3, column 4: not valid YAML"),
        ("nodes:\n  - name: alpha\n    name: beta\n", "the key 'name' is written twice"),
        ("- alpha\n- beta\n", "must be a mapping with `nodes:`"),
        ({"nodes": [NODE], "setings": {}}, "key setings: is not a known key"),
        ({"nodes": [{**NODE, "adress": "x"}]}, "node 'alpha' (nodes[0]), key adress: is not a known key"),
        ({"nodes": [{**NODE, "role": "Head"}]}, "key role: is 'Head'; it must be one of 'head' or 'worker'"),
        ({"nodes": [{**NODE, "name": "Alpha"}]}, "'Alpha' is not a node name"),
        ({"nodes": [NODE, {**NODE, "address": "10.0.0.2"}]}, "exactly one node must be the head"),
        ({"nodes": [{**NODE, "role": "worker"}]}, "no node has role: head"),
        ({"nodes": [NODE, {**NODE, "role": "worker"}]}, "'alpha' is already used by nodes[0]; each node needs its own name"),
        ({"nodes": [NODE, {"name": "beta", "role": "worker", "address": "10.0.0.1"}]}, "key ip: '10.0.0.1' is already used"),
        ({"nodes": [{**NODE, "address": "alpha.local"}]}, "is a host name, so the node needs `ip:` too"),
        ({"nodes": [{**NODE, "ip": "10.0.0.300"}]}, "'10.0.0.300' is not an IP address"),
        ({"nodes": [{**NODE, "address": "bad host!"}]}, "neither an IP address nor a host name"),
        ({"nodes": [{**NODE, "ssh_port": 70000}]}, "key ssh_port: is 70000; it must be at most 65535"),
        ({"nodes": [{**NODE, "ssh_key": "/nonexistent/key"}]}, "key ssh_key: '/nonexistent/key' does not exist"),
        ({"nodes": [NODE], "settings": {"python_version": "3.9"}}, "settings.python_version: '3.9' is not an exact version"),
        ({"nodes": [NODE], "settings": {"ray_version": "latest"}}, "settings.ray_version: 'latest' is not an exact version"),
        ({"nodes": [NODE], "settings": {"python_version": 3.9}}, "it must be text (quote versions"),
        ({"nodes": [NODE], "settings": {"mtu": 9001}}, "settings.mtu: is 9001; it must be at most 9000"),
        ({"nodes": [NODE], "settings": {"mtu": 576}}, "settings.mtu: is 576; it must be at least 1280"),
        ({"nodes": [NODE], "settings": {"ray_port": 80}}, "80 is not a usable port"),
        ({"nodes": [NODE], "settings": {"dashboard_port": 6380}}, "dashboard_port and ray_port are both 6380"),
        ({"nodes": [NODE], "settings": {"pyton_version": "3.9.23"}}, "settings.pyton_version: is not a known key"),
        ({"nodes": [NODE], "settings": {"extra_packages": ["mlx-lm"]}}, "'mlx-lm' is not an exact pin"),
        ({"nodes": [NODE], "settings": {"use_sudo": "yes"}}, "settings.use_sudo: is 'yes'; it must be true or false"),
        ({"nodes": [NODE], "settings": {"dashboard_bind": "0.0.0.0"}}, "settings.dashboard_bind: is '0.0.0.0'"),
        ({"nodes": [NODE], "settings": ["python_version"]}, "key settings: is ['python_version']; it must be a mapping"),
    ],
)
def test_broken_cluster_files_name_the_problem(write_cluster, content, expected):
    message = problems_of(write_cluster, content)
    assert expected in message
    assert "cluster.yaml" in message  # names the file


def test_every_problem_is_reported_at_once(write_cluster):
    message = problems_of(write_cluster, {
        "nodes": [{**NODE, "name": "Alpha"}, {"name": "beta", "role": "boss", "address": "10.0.0.2"}],
        "settings": {"mtu": 20000, "ray_version": "2.49"},
    })
    for fragment in ("'Alpha' is not a node name", "is 'boss'", "settings.mtu", "settings.ray_version"):
        assert fragment in message


def test_missing_file_says_how_to_start():
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, PROJECT_DIR / "no-such-cluster.yaml")
    assert "does not exist" in str(caught.value) and "cluster.example.yaml" in str(caught.value)


def run_pyinfra(args, cluster_path, cwd) -> subprocess.CompletedProcess:
    env = {"SAF_CLUSTER": str(cluster_path), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "pyinfra", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_debug_inventory_shows_groups_and_data(tmp_path):
    result = run_pyinfra(["inventory.py", "debug-inventory"], PROJECT_DIR / "cluster.example.yaml", PROJECT_DIR)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "[alpha]" in output and "Groups: head" in output and "Groups: workers" in output
    assert '"cluster_ip": "192.168.1.42"' in output


@pytest.mark.parametrize("command", [["inventory.py", "debug-inventory"], ["inventory.py", "deploy.py", "-y"]])
def test_broken_file_fails_cli_cleanly_before_contacting_hosts(write_cluster, command):
    path = write_cluster({"nodes": [NODE], "settings": {"python_version": "3.9"}})
    result = run_pyinfra(command, path, PROJECT_DIR)
    assert result.returncode == 2
    assert "settings.python_version: '3.9' is not an exact version" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "Connecting" not in result.stderr + result.stdout
