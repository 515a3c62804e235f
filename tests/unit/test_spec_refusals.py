"""Cluster files that cannot describe a real cluster are refused, each with the node or key and the fix.

Addresses no node can be reached at, one machine listed twice, YAML beyond plain values, values of
the wrong type, and files that are not readable text; plus YAML anchors and merge keys, which work.
"""

from __future__ import annotations

import os
import pathlib

import pytest
import yaml

from saf.inventory import inventory_groups
from saf.spec import ClusterFileError, load_cluster, load_defaults
from tests.conftest import PROJECT_DIR
from tests.unit.test_spec import run_pyinfra

HEAD = {"name": "alpha", "role": "head", "address": "10.0.0.1"}
USE_INSTEAD = "use the node's own address on the network that joins the nodes"


def refusal(write_cluster, content) -> str:
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, write_cluster(content))
    message = str(caught.value)
    assert "Traceback" not in message and "cluster.yaml" in message
    return message


FIREWALLED = {"firewall": True}  # Ray 2.49 (the default pin) has no token auth: the firewall keeps Ray closed


def with_worker(**worker) -> dict:
    return {"nodes": [HEAD, {"name": "beta", "role": "worker", **worker}], "settings": FIREWALLED}


# --- Addresses that cannot work ---------------------------------------------------------------


@pytest.mark.parametrize(("value", "why"), [
    ("127.0.0.1", "is a loopback address"),
    ("127.8.9.10", "is a loopback address"),
    ("::1", "is a loopback address"),
    ("::ffff:127.0.0.1", "is a loopback address"),
    ("0.0.0.0", "is the unspecified address"),
    ("::", "is the unspecified address"),
    ("224.0.0.251", "is a multicast address"),
    ("ff02::1", "is a multicast address"),
    ("255.255.255.255", "is the broadcast address"),
])
@pytest.mark.parametrize("key", ["address", "ip"])
def test_addresses_no_node_can_be_reached_at_are_refused(write_cluster, key, value, why):
    worker = {"address": "beta.local", key: value} if key == "ip" else {"address": value, "ip": "10.0.0.2"}
    message = refusal(write_cluster, with_worker(**worker))
    assert f"node 'beta' (nodes[1]), key {key}: {value!r} {why}" in message
    assert USE_INSTEAD in message


@pytest.mark.parametrize("key", ["address", "ip"])
def test_a_network_is_not_an_address(write_cluster, key):
    message = refusal(write_cluster, with_worker(**{"address": "beta.local", key: "192.168.1.0/24"}))
    assert f"key {key}: '192.168.1.0/24' is a network, not one machine's address; {USE_INSTEAD}" in message


def test_an_address_with_a_prefix_length_says_to_drop_it(write_cluster):
    message = refusal(write_cluster, with_worker(address="beta.local", ip="192.168.1.42/24"))
    assert "key ip: '192.168.1.42/24' is written with a prefix length; write the address alone, like 192.168.1.42" in message


def test_a_single_host_prefix_is_not_called_a_network(write_cluster):
    message = refusal(write_cluster, with_worker(address="beta.local", ip="192.168.1.42/32"))
    assert "is written with a prefix length" in message and "is a network" not in message


@pytest.mark.parametrize("value", ["localhost", "LocalHost.", "mac.localhost"])
def test_localhost_names_are_refused_as_an_address(write_cluster, value):
    message = refusal(write_cluster, with_worker(address=value, ip="10.0.0.2"))
    assert f"node 'beta' (nodes[1]), key address: {value!r} is this machine's own name for itself" in message


def test_a_dotted_number_that_is_no_address_is_not_taken_for_a_host_name(write_cluster):
    message = refusal(write_cluster, with_worker(address="10.0.0.300", ip="10.0.0.2"))
    assert "key address: '10.0.0.300' is not an IP address" in message


def test_link_local_and_ordinary_addresses_are_kept(write_cluster):
    cluster = load_cluster(PROJECT_DIR, write_cluster({"nodes": [
        {"name": "alpha", "role": "head", "address": "alpha.local", "ip": "169.254.10.1"},
        {"name": "beta", "role": "worker", "address": "fe80::1%en0"},
        {"name": "gamma", "role": "worker", "address": "0:0:0:0:0:ffff:a00:3"},
        {"name": "delta", "role": "worker", "address": "delta-4.example.com.", "ip": "192.168.1.255"},
    ], "settings": FIREWALLED}))
    assert [node.ip for node in cluster.nodes] == ["169.254.10.1", "fe80::1%en0", "::ffff:a00:3", "192.168.1.255"]


# --- One machine is one node ------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [
    ("mac.local", "mac.local"), ("Mac.Local", "mac.local."), ("10.0.0.7", "10.0.0.7"), ("fe80::1", "FE80:0::1"),
])
def test_one_machine_under_two_names_is_refused(write_cluster, first, second):
    message = refusal(write_cluster, {"nodes": [
        HEAD,
        {"name": "beta", "role": "worker", "address": first, "ip": "10.0.0.2"},
        {"name": "gamma", "role": "worker", "address": second, "ip": "10.0.0.3"},
    ]})
    assert f"node 'gamma' (nodes[2]), key address: " in message
    assert "is already used by node 'beta' (nodes[1]); one machine is one node" in message
    assert "give each its own address" in message


def test_one_cluster_ip_for_two_nodes_is_refused(write_cluster):
    message = refusal(write_cluster, {"nodes": [
        HEAD,
        {"name": "beta", "role": "worker", "address": "beta.local", "ip": "10.0.0.2"},
        {"name": "gamma", "role": "worker", "address": "gamma.local", "ip": "10.0.0.2"},
    ]})
    assert ("node 'gamma' (nodes[2]), key ip: '10.0.0.2' is already used by node 'beta' (nodes[1]); one machine "
            "is one node: remove one of them, or give each its own ip") in message
    assert "key address" not in message


def test_every_repeat_is_named_against_the_first_node(write_cluster):
    message = refusal(write_cluster, {"nodes": [HEAD, *({"name": n, "role": "worker", "address": "10.0.0.1"}
                                                        for n in ("beta", "gamma"))]})
    assert "node 'beta' (nodes[1]), key address: '10.0.0.1' is already used by node 'alpha' (nodes[0])" in message
    assert "node 'gamma' (nodes[2]), key address: '10.0.0.1' is already used by node 'alpha' (nodes[0])" in message
    assert "node 'gamma' (nodes[2]), key ip: '10.0.0.1' is already used by node 'alpha' (nodes[0])" in message


# --- YAML as people write it ------------------------------------------------------------------

MERGED = """\
x-mac: &mac                # x- keys are free for anchors, like docker compose's
  role: worker
  ssh_user: arthurdell
  ssh_port: 2222
nodes:
  - {<<: *mac, name: alpha, role: head, address: 192.168.1.172}
  - <<: *mac
    name: beta
    address: beta.local
    ip: 192.168.1.42
  - {<<: [*mac], name: gamma, address: 192.168.1.43, ssh_port: 22}
settings:
  mtu: 1500
  firewall: true
"""

WRITTEN_OUT = """\
nodes:
  - {name: alpha, role: head, address: 192.168.1.172, ssh_user: arthurdell, ssh_port: 2222}
  - {name: beta, role: worker, address: beta.local, ip: 192.168.1.42, ssh_user: arthurdell, ssh_port: 2222}
  - {name: gamma, role: worker, address: 192.168.1.43, ssh_user: arthurdell, ssh_port: 22}
settings:
  mtu: 1500
  firewall: true
"""

ANCHORED_ON_A_NODE = """\
nodes:
  - &alpha {name: alpha, role: head, address: 192.168.1.172, ssh_user: arthurdell, ssh_port: 2222}
  - {<<: *alpha, name: beta, role: worker, address: beta.local, ip: 192.168.1.42}
  - {<<: *alpha, name: gamma, role: worker, address: 192.168.1.43, ssh_port: 22}
settings: {mtu: 1500, firewall: true}
"""


def cluster_groups(write_cluster, text: str) -> dict:
    return inventory_groups(load_cluster(PROJECT_DIR, write_cluster(text)))


@pytest.mark.parametrize("merged", [MERGED, ANCHORED_ON_A_NODE])
def test_merge_keys_give_the_same_hosts_as_the_file_written_out(write_cluster, merged):
    written_out = cluster_groups(write_cluster, WRITTEN_OUT)
    assert cluster_groups(write_cluster, merged) == written_out
    workers, _ = written_out["workers"]
    assert dict(workers)["gamma"]["ssh_port"] == 22 and dict(workers)["beta"]["ssh_port"] == 2222


def test_aliases_of_plain_values_work(write_cluster):
    cluster = load_cluster(PROJECT_DIR, write_cluster(
        "nodes:\n  - {name: alpha, role: head, address: &a 10.0.0.1, ip: *a}\n"
        "settings: {extra_packages: &pins [numpy==2.0.2], python_version: &py '3.11.2', firewall: true}\n"))
    assert cluster.head.ip == "10.0.0.1" and cluster.settings.python_version == "3.11.2"


@pytest.mark.parametrize(("text", "expected"), [
    ("nodes:\n  - {name: alpha, role: head, address: 10.0.0.1, name: beta}\n",
     "line 2, column 50: the key 'name' is written twice in one mapping"),
    ("x-d: &d {role: head}\nnodes:\n  - {<<: *d, name: alpha, address: 10.0.0.1, address: 10.0.0.2}\n",
     "the key 'address' is written twice in one mapping"),
    ("x-a: &a {role: head}\nnodes:\n  - {<<: *a, <<: *a, name: alpha, address: 10.0.0.1}\n",
     "the key '<<' is written twice in one mapping"),
    ("nodes: []\nnodes: []\n", "line 2, column 1: the key 'nodes' is written twice"),
])
def test_a_key_written_twice_is_still_refused(write_cluster, text, expected):
    message = refusal(write_cluster, text)
    assert expected in message and "fix the file there" in message


@pytest.mark.parametrize(("text", "expected"), [
    ("? [a, b]\n: 1\nnodes: []\n", "line 1, column 3: a key is a list or a mapping (a complex `? ...` key)"),
    ("nodes:\n  - {? {name: alpha} : 1}\n", "line 2, column 8: a key is a list or a mapping"),
    ("nodes: !!python/object:os.system [ls]\n", "line 1, column 8: the tag !!python/object:os.system is not allowed"),
    ("nodes: !!python/name:os.system ''\n", "the tag !!python/name:os.system is not allowed"),
    ("nodes:\n  - !foo {name: alpha}\n", "line 2, column 5: the tag !foo is not allowed"),
    ("x: &r {a: *r}\nnodes: []\n", "found unconstructable recursive node"),
    ("x: {<<: 1}\nnodes: []\n", "expected a mapping or list of mappings for merging"),
    ("nodes: *nowhere\n", "found undefined alias 'nowhere'"),
])
def test_yaml_beyond_plain_values_is_refused_clearly(write_cluster, text, expected):
    message = refusal(write_cluster, text)
    assert expected in message and "fix the file there" in message


@pytest.mark.parametrize(("text", "expected"), [
    ("just text\n", "the file must be a mapping with `nodes:`"),
    ("--- {nodes: []}\n--- {nodes: []}\n", "not valid YAML (but found another document)"),
    ("nodes: {alpha: {role: head}}\n", "key nodes: is {'alpha': {'role': 'head'}}; it must be a list"),
    ("nodes: [[alpha, head]]\n", "nodes[0]: is ['alpha', 'head']; it must be a mapping of key: value"),
    ("nodes: [alpha]\n", "nodes[0]: is 'alpha'; it must be a mapping of key: value"),
    ("nodes: [{name: alpha, role: head, address: 10.0.0.1}]\nsettings: {mtu: {value: 1500}}\n",
     "key settings.mtu: is {'value': 1500}; it must be a whole number"),
    ("nodes: [{name: alpha, role: head, address: !!binary AAEC}]\n", "key address: is b'\\x00\\x01\\x02'; it must be text"),
    ("nodes: [{name: alpha, role: head, address: 10.0.0.1}]\nsettings: {python_version: 2024-01-01}\n",
     "key settings.python_version: is datetime.date(2024, 1, 1); it must be text"),
    ("nodes: [{name: alpha, role: head, address: 10.0.0.1}]\nx-: 1\nnode: []\n", "key node: is not a known key"),
])
def test_other_shapes_get_the_usual_message(write_cluster, text, expected):
    assert expected in refusal(write_cluster, text)


# --- Strict types for every setting -----------------------------------------------------------


def wrong_values(default):
    """Values of another YAML type than the default's: each must be refused, never converted."""
    if isinstance(default, bool):
        return ["true", 1, 0.0]
    if isinstance(default, int):
        return ["6380", True, 9000.0]
    if isinstance(default, float):
        return ["0.5", True, [0.5]]
    if isinstance(default, str):
        return [3, True, 3.9]
    return ["numpy==2.0.2", {"numpy": "2.0.2"}, None]


EXPECTED_TYPE = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list"}


@pytest.mark.parametrize("key", sorted(load_defaults(PROJECT_DIR)))
def test_every_setting_refuses_a_value_of_another_type(write_cluster, key):
    default = load_defaults(PROJECT_DIR)[key]
    if key in ("dashboard_bind", "macos_service", "ray_auth", "foreign_ray", "serve_bind"):
        expected = "it must be one of"
    else:
        expected = f"it must be {EXPECTED_TYPE[type(default)]}"
    for value in wrong_values(default):
        message = refusal(write_cluster, {"nodes": [HEAD], "settings": {key: value}})
        assert f"key settings.{key}: is {value!r}; {expected}" in message


@pytest.mark.parametrize("value", [True, "0.5", "half"])
def test_a_ratio_must_be_a_number(write_cluster, value):
    message = refusal(write_cluster, {"nodes": [HEAD], "settings": {"verify_slow_ratio": value}})
    assert f"key settings.verify_slow_ratio: is {value!r}; it must be a number" in message


@pytest.mark.parametrize(("value", "expected"), [(0, "it must be more than 0"), (1.5, "it must be at most 1")])
def test_a_ratio_must_be_a_share(write_cluster, value, expected):
    message = refusal(write_cluster, {"nodes": [HEAD], "settings": {"verify_slow_ratio": value}})
    assert f"key settings.verify_slow_ratio: is {value!r}; {expected}" in message


@pytest.mark.parametrize(("value", "loaded"), [(1, 1.0), (0.25, 0.25)])
def test_a_whole_number_is_a_ratio_too(write_cluster, value, loaded):
    settings = load_cluster(PROJECT_DIR, write_cluster(
        {"nodes": [HEAD], "settings": {"verify_slow_ratio": value, **FIREWALLED}})).settings
    assert settings.verify_slow_ratio == loaded


def test_yaml_booleans_are_booleans_and_an_unquoted_off_is_explained(write_cluster):
    settings = load_cluster(PROJECT_DIR, write_cluster(
        "nodes: [{name: alpha, role: head, address: 10.0.0.1}]\nsettings: {firewall: yes, use_sudo: false}\n")).settings
    assert settings.firewall is True and settings.use_sudo is False
    message = refusal(write_cluster, "nodes: [{name: alpha, role: head, address: 10.0.0.1}]\nsettings: {ray_auth: off}\n")
    assert ("key settings.ray_auth: is False; it must be one of 'auto', 'token' or 'off' (YAML reads an unquoted "
            "off, no, on or yes as true/false: quote the word, like ray_auth: \"off\")") in message


def test_node_keys_are_strict_too(write_cluster):
    message = refusal(write_cluster, {"nodes": [{**HEAD, "ssh_port": "22", "ssh_user": 7, "address": 10}]})
    assert "key ssh_port: is '22'; it must be a whole number" in message
    assert "key ssh_user: is 7; it must be text" in message
    assert "key address: is 10; it must be text" in message


# --- A clear message for every file problem ---------------------------------------------------


def test_a_directory_as_the_cluster_file(tmp_path):
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, tmp_path)
    assert str(caught.value) == (f"Cannot use the cluster file {tmp_path}: it is a directory, not a file; point "
                                 f"SAF_CLUSTER at the cluster file itself (like {tmp_path / 'cluster.yaml'}).")


def test_an_unreadable_cluster_file(write_cluster, monkeypatch):
    path = write_cluster({"nodes": [HEAD]})

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "read_bytes", denied)
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, path)
    assert f"{path}: the file cannot be read (permission denied); make it readable by this user" in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_cluster_file_for_real(write_cluster):
    path = write_cluster({"nodes": [HEAD]})
    path.chmod(0)
    with pytest.raises(ClusterFileError, match="cannot be read"):
        load_cluster(PROJECT_DIR, path)


@pytest.mark.parametrize(("content", "expected"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00", "the file is not text (byte 0x89 at offset 0 is not UTF-8)"),
    (b"nodes: \xe9t\xe9\n", "the file is not text (byte 0xe9 at offset 7 is not UTF-8)"),
    (b"nodes:\x00 []\n", "the file is not text (it holds a NUL byte at offset 6)"),
])
def test_a_file_that_is_not_text(tmp_path, content, expected):
    path = tmp_path / "cluster.yaml"
    path.write_bytes(content)
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, path)
    assert expected in str(caught.value) and "saved as UTF-8" in str(caught.value)


@pytest.mark.parametrize(("key", "example"), [("ssh_key", "~/.ssh/id_ed25519"),
                                              ("ssh_known_hosts_file", "~/.ssh/known_hosts")])
def test_a_key_file_that_is_a_directory(write_cluster, tmp_path, key, example):
    (tmp_path / "keys").mkdir()
    message = refusal(write_cluster, with_worker(address="10.0.0.2", **{key: "keys"}))
    assert (f"node 'beta' (nodes[1]), key {key}: 'keys' is a directory, not a file; fix the path: it names the "
            f"file itself (like {example}), relative to the cluster file's directory") in message


def test_a_key_file_that_cannot_be_read(write_cluster, tmp_path, monkeypatch):
    key = tmp_path / "id_ed25519"
    key.write_text("secret")
    readable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: readable(path, mode) and pathlib.Path(path) != key)
    message = refusal(write_cluster, with_worker(address="10.0.0.2", ssh_key=str(key)))
    assert f"node 'beta' (nodes[1]), key ssh_key: {str(key)!r} cannot be read (permission denied)" in message


def test_key_files_relative_to_the_cluster_file_are_found(write_cluster, tmp_path):
    (tmp_path / "id_ed25519").write_text("key")
    (tmp_path / "known_hosts").write_text("hosts")
    node = load_cluster(PROJECT_DIR, write_cluster(
        with_worker(address="10.0.0.2", ssh_key="id_ed25519", ssh_known_hosts_file="./known_hosts"))).node("beta")
    assert (node.ssh_key, node.ssh_known_hosts_file) == (str(tmp_path / "id_ed25519"), str(tmp_path / "known_hosts"))


# --- The CLI: status 2, one message, no traceback ---------------------------------------------


@pytest.mark.parametrize(("content", "expected"), [
    (yaml.safe_dump(with_worker(address="beta.local", ip="127.0.0.1")),
     "node 'beta' (nodes[1]), key ip: '127.0.0.1' is a loopback address"),
    (yaml.safe_dump({"nodes": [HEAD, {"name": "beta", "role": "worker", "address": "10.0.0.1", "ip": "10.0.0.2"}]}),
     "node 'beta' (nodes[1]), key address: '10.0.0.1' is already used by node 'alpha' (nodes[0])"),
    ("? [a, b]\n: 1\n", "a key is a list or a mapping"),
    ("nodes: !!python/object/apply:os.system [echo hacked]\n", "the tag !!python/object/apply:os.system is not allowed"),
    (yaml.safe_dump({"nodes": [HEAD], "settings": {"verify_slow_ratio": True}}),
     "key settings.verify_slow_ratio: is True; it must be a number"),
    (yaml.safe_dump(with_worker(address="10.0.0.2", ssh_key=".")), "key ssh_key: '.' is a directory, not a file"),
    (b"\xff\xfe\x00\x00", "the file is not text"),
    (None, "it is a directory, not a file"),
])
def test_the_cli_refuses_with_status_2_and_no_traceback(tmp_path, content, expected):
    path = tmp_path / "cluster.yaml"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    result = run_pyinfra(["inventory.py", "debug-inventory"], path, PROJECT_DIR)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert expected in result.stderr and f"saf: Cannot use the cluster file {path}" in result.stderr
    assert "Traceback" not in output and "hacked" not in output


# --- Behaviour the mutation run (tests/mutation.py saf/spec) found untested -------------------


def test_the_cluster_file_is_saf_cluster_or_cluster_yaml_beside_the_inventory(write_cluster, monkeypatch):
    from saf.spec import cluster_file_path

    monkeypatch.delenv("SAF_CLUSTER", raising=False)
    assert cluster_file_path(PROJECT_DIR) == PROJECT_DIR / "cluster.yaml"
    path = write_cluster({"nodes": [HEAD], "settings": FIREWALLED})
    monkeypatch.setenv("SAF_CLUSTER", str(path))
    assert cluster_file_path(PROJECT_DIR) == path
    cluster = load_cluster(PROJECT_DIR)
    assert cluster.path == path and cluster.head.address == "10.0.0.1"


def test_whole_messages_of_file_problems(tmp_path, write_cluster):
    def message(path):
        with pytest.raises(ClusterFileError) as caught:
            load_cluster(PROJECT_DIR, path)
        return str(caught.value)

    missing = tmp_path / "none.yaml"
    assert message(missing) == (f"Cannot use the cluster file {missing}: the file does not exist. Copy "
                                "cluster.example.yaml to cluster.yaml and list your nodes, or point SAF_CLUSTER at "
                                "your cluster file.")
    empty = write_cluster("# nothing yet\n")
    assert message(empty) == (f"Cannot use the cluster file {empty}: the file is empty; list your nodes under "
                              "`nodes:` (see cluster.example.yaml).")
    listed = write_cluster("[alpha]\n")
    assert message(listed) == (f"Cannot use the cluster file {listed}: the file must be a mapping with `nodes:` (and "
                               "optional `settings:`); see cluster.example.yaml.")
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"a: 1\x00\nb: \x00")
    assert message(nul) == (f"Cannot use the cluster file {nul}: the file is not text (it holds a NUL byte at offset "
                            "4); a cluster file is YAML written in a text editor and saved as UTF-8.")


@pytest.mark.parametrize(("error", "reason"), [
    (PermissionError(13, "Permission denied"), "permission denied"),
    (OSError(5, "Input/output error"), "Input/output error"),
    (OSError("stale handle"), "stale handle"),
])
def test_an_unreadable_file_names_the_reason(write_cluster, monkeypatch, error, reason):
    path = write_cluster({"nodes": [HEAD]})

    def fail(self):
        raise error

    monkeypatch.setattr(pathlib.Path, "read_bytes", fail)
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, path)
    assert str(caught.value) == (f"Cannot use the cluster file {path}: the file cannot be read ({reason}); make it "
                                 "readable by this user (chmod u+r), or run as its owner.")


def test_a_character_yaml_cannot_read_is_named_without_a_line(write_cluster):
    message = refusal(write_cluster, "nodes: \x07\n")
    assert message.endswith(": not valid YAML (unacceptable character #x0007: special characters are not allowed\n"
                            "  in \"<unicode string>\", position 7); fix the file there.")
    assert "line " not in message


def test_two_heads_are_named(write_cluster):
    message = refusal(write_cluster, {"nodes": [HEAD, {**HEAD, "name": "beta", "address": "10.0.0.2"}]})
    assert ("2 nodes (alpha, beta) have role: head; exactly one node must be the head, the others role: worker"
            in message)


def test_whole_messages_of_schema_problems(write_cluster):
    path = write_cluster({"nodes": [{"name": "", "role": "head", "address": "10.0.0.1", "key": 1},
                                    {"name": "beta", "role": "Worker", "ip": 5}],
                          "settings": {"pyton_version": "3.9.23"}})
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, path)
    node_keys = "name, role, address, ip, ssh_user, ssh_port, ssh_key, ssh_known_hosts_file"
    assert str(caught.value) == "\n".join([
        f"Cannot use the cluster file {path}:",
        "  - nodes[0], key name: '' is not a node name; use lowercase letters, digits and '-' (like alpha or mac-3)",
        f"  - nodes[0], key key: is not a known key; check its spelling (node keys: {node_keys})",
        "  - node 'beta' (nodes[1]), key role: is 'Worker'; it must be one of 'head' or 'worker'",
        "  - node 'beta' (nodes[1]), key address: is required but missing; add it",
        "  - node 'beta' (nodes[1]), key ip: is 5; it must be text (quote versions and names: python_version: \"3.9.23\")",
        "  - key settings.pyton_version: is not a known key; check its spelling (settings are listed in group_data/all.py)",
    ])


def test_an_unknown_top_level_key_lists_the_known_ones(write_cluster):
    message = refusal(write_cluster, {"nodes": [HEAD], "setings": {}})
    assert message.endswith("key setings: is not a known key; check its spelling (top-level keys: nodes, settings, "
                            "and x-<anything> to hold YAML anchors)")


def test_a_number_where_text_is_expected_in_a_setting_has_no_quote_hint_for_a_bool(write_cluster):
    message = refusal(write_cluster, {"nodes": [HEAD], "settings": {"use_sudo": "no", "dashboard_bind": "all"}})
    assert "key settings.dashboard_bind: is 'all'; it must be one of 'loopback' or 'cluster'\n" in message
    assert message.endswith("key settings.use_sudo: is 'no'; it must be true or false")


@pytest.mark.parametrize(("value", "expected"), [
    ("fe80:::1", "'fe80:::1' is not an IP address"),
    ("FE80:::1", "'FE80:::1' is not an IP address"),
    ("10.0.0.0/31", "'10.0.0.0/31' is a network, not one machine's address"),
])
def test_what_looks_like_an_address_is_judged_as_one(write_cluster, value, expected):
    assert expected in refusal(write_cluster, with_worker(address=value, ip="10.0.0.2"))


def test_hex_words_are_host_names(write_cluster):
    cluster = load_cluster(PROJECT_DIR, write_cluster(with_worker(address="cafe", ip="10.0.0.2")))
    assert cluster.node("beta").address == "cafe"


def test_keys_are_compared_as_values_not_as_written(write_cluster):
    assert "the key True is written twice" in refusal(write_cluster, "nodes: []\ntrue: 1\nyes: 2\n")
    message = refusal(write_cluster, "nodes: [{name: alpha, role: head, address: 10.0.0.1}]\n1: a\n'1': b\n")
    assert "written twice" not in message and "key 1: is not a known key" in message


def test_defaults_are_the_plain_values_of_group_data(tmp_path):
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(
        "import os\nfrom os import path\nmtu = 1500\n_private = 1\ndef helper():\n    return 1\nnames = ['a']\n")
    assert load_defaults(tmp_path) == {"mtu": 1500, "names": ["a"]}


def test_without_saf_cluster_the_file_beside_the_inventory_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("SAF_CLUSTER", raising=False)
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text("")
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(tmp_path)
    assert caught.value.path == tmp_path / "cluster.yaml" and "the file does not exist" in str(caught.value)
