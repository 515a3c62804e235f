"""The cluster file's ``serve:`` part: accepted with a real model directory, refused with the key and
the fix for every way it cannot be served, before any host is contacted; and what it becomes in the
inventory (which nodes serve, the venv's extra pins)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saf.inventory import inventory_groups
from saf.spec import ClusterFileError, load_cluster
from saf.spec.serve import mlx_lm_needs
from tests.conftest import PROJECT_DIR

NODES = [{"name": "alpha", "role": "head", "address": "10.0.0.1"},
         {"name": "beta", "role": "worker", "address": "10.0.0.2"}]
FIREWALLED = {"firewall": True}


def model_dir(root: Path) -> Path:
    """A directory with what mlx-lm loads (the checks are on files, the contents need only be well-formed)."""
    path = root / "models" / "tiny"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"\0" * 64)
    (path / "tokenizer.json").write_text("{}")
    return path


def cluster(tmp_path: Path, serve: dict | None, settings: dict | None = None) -> dict:
    model_dir(tmp_path)
    content = {"nodes": NODES, "settings": {**FIREWALLED, **(settings or {})}}
    if serve is not None:
        content["serve"] = serve
    return content


def refusal(write_cluster, content) -> str:
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, write_cluster(content))
    message = str(caught.value)
    assert "Traceback" not in message
    return message


def test_a_model_directory_relative_to_the_cluster_file_is_served_by_every_node(write_cluster, tmp_path):
    loaded = load_cluster(PROJECT_DIR, write_cluster(cluster(tmp_path, {"model": "models/tiny", "mode": "replicas"})))
    assert loaded.serve.mode == "replicas"
    assert [node.name for node in loaded.serving_nodes] == ["alpha", "beta"]


def test_no_serve_part_serves_nothing(write_cluster, tmp_path):
    loaded = load_cluster(PROJECT_DIR, write_cluster(cluster(tmp_path, None)))
    assert loaded.serve is None and loaded.serving_nodes == ()


def test_serve_nodes_names_the_serving_nodes(write_cluster, tmp_path):
    loaded = load_cluster(PROJECT_DIR, write_cluster(
        cluster(tmp_path, {"model": "models/tiny", "mode": "replicas", "nodes": ["beta"]})))
    assert [node.name for node in loaded.serving_nodes] == ["beta"]


@pytest.mark.parametrize(("serve", "expected"), [
    ({"model": "models/none", "mode": "replicas"}, "key serve.model: "),
    ({"model": "hf:mlx-community/Llama-3.2-1B-Instruct-4bit", "mode": "replicas"}, "SAF does not fetch models"),
    ({"model": "models/tiny", "mode": "sharded"}, "sharded is not built yet"),
    ({"model": "models/tiny", "mode": "copies"}, "is not a serving mode; use replicas"),
    ({"model": "models/tiny", "mode": "replicas", "nodes": ["gamma"]}, "'gamma' is not a node of this cluster file"),
    ({"model": "models/tiny", "mode": "replicas", "nodes": ["beta", "beta"]}, "beta listed twice"),
    ({"model": "models/tiny", "mode": "replicas", "port": 8000}, "port"),
    ({"mode": "replicas"}, "model"),
])
def test_a_serve_part_that_cannot_be_served_is_refused_by_key(write_cluster, tmp_path, serve, expected):
    message = refusal(write_cluster, cluster(tmp_path, serve))
    assert expected in message
    assert "serve" in message


def test_a_model_path_a_command_line_cannot_carry_is_refused(write_cluster, tmp_path):
    content = cluster(tmp_path, {"model": "models/my model", "mode": "replicas"})
    (tmp_path / "models" / "tiny").rename(tmp_path / "models" / "my model")
    message = refusal(write_cluster, content)
    assert "key serve.model: 'models/my model'" in message and "holds a space" in message
    assert "link it, to a path like ./models/my-model" in message


def test_a_model_directory_without_weights_or_tokenizer_is_refused_with_the_fix(write_cluster, tmp_path):
    content = cluster(tmp_path, {"model": "models/tiny", "mode": "replicas"})
    (tmp_path / "models" / "tiny" / "model.safetensors").unlink()
    (tmp_path / "models" / "tiny" / "tokenizer.json").unlink()
    message = refusal(write_cluster, content)
    assert "has no weights" in message and "mlx_lm.convert" in message
    assert "has no tokenizer" in message


@pytest.mark.parametrize(("port", "taken_by"), [
    (6380, "ray_port (6380)"),
    (44217, "Ray's fixed metrics port 44217"),
    (12000, "the worker port range 10002-19999"),
    (6391, "the MLX ring's ports 6390-6391"),
])
def test_an_endpoint_port_that_clashes_with_ray_or_the_ring_is_refused(write_cluster, tmp_path, port, taken_by):
    message = refusal(write_cluster, cluster(tmp_path, {"model": "models/tiny", "mode": "replicas"},
                                             {"serve_port": port}))
    assert f"key settings.serve_port: {port} is taken by {taken_by}" in message
    assert "like 8000" in message


def test_a_clash_is_only_checked_when_serving(write_cluster, tmp_path):
    assert load_cluster(PROJECT_DIR, write_cluster(cluster(tmp_path, None, {"serve_port": 6380}))).serve is None


def test_mlx_lm_that_the_mlx_pin_cannot_install_is_refused_naming_the_pins_to_change(write_cluster, tmp_path):
    packages = ["pip==26.0.1", "mlx-lm==0.28.2"]
    message = refusal(write_cluster, cluster(tmp_path, {"model": "models/tiny", "mode": "replicas"},
                                             {"serve_packages": packages}))
    assert "mlx-lm==0.28.2 needs MLX >= 0.29.2" in message
    assert "set settings.mlx_version to 0.29.2 or newer" in message


def test_mlx_lm_that_needs_a_newer_python_names_both_pins(write_cluster, tmp_path):
    message = refusal(write_cluster, cluster(tmp_path, {"model": "models/tiny", "mode": "replicas"},
                                             {"serve_packages": ["pip==26.0.1", "mlx-lm==0.32.2"]}))
    assert "settings.mlx_version to 0.32.2 or newer and settings.python_version to 3.11.x or newer" in message


def test_serve_packages_without_pip_or_mlx_lm_are_refused(write_cluster, tmp_path):
    message = refusal(write_cluster, cluster(tmp_path, {"model": "models/tiny", "mode": "replicas"},
                                             {"serve_packages": ["fastapi==0.116.1"]}))
    assert "no exact pin of mlx-lm, pip" in message


def test_serve_packages_must_be_exact_pins(write_cluster, tmp_path):
    message = refusal(write_cluster, cluster(tmp_path, None, {"serve_packages": ["mlx-lm>=0.28"]}))
    assert "'mlx-lm>=0.28' is not an exact pin" in message


def test_the_endpoint_on_the_cluster_address_needs_the_firewall(write_cluster, tmp_path):
    content = cluster(tmp_path, {"model": "models/tiny", "mode": "replicas"},
                      {"serve_bind": "cluster", "firewall": False, "trusted_network": True})
    assert "serve_bind: cluster puts the endpoint on the head's cluster ip; set firewall: true" in \
        refusal(write_cluster, content)


@pytest.mark.parametrize(("version", "needs"), [
    ("0.27.1", None), ("0.28.0", ((0, 29, 1), (3, 8))), ("0.28.1", ((0, 29, 2), (3, 8))),
    ("0.30.5", ((0, 29, 2), (3, 8))), ("0.30.6", ((0, 30, 4), (3, 10))), ("0.32.2", ((0, 32, 2), (3, 11))),
])
def test_what_each_mlx_lm_needs(version, needs):
    assert mlx_lm_needs(version) == needs


def test_the_inventory_marks_serving_nodes_and_carries_the_model(write_cluster, tmp_path):
    loaded = load_cluster(PROJECT_DIR, write_cluster(
        cluster(tmp_path, {"model": "models/tiny", "mode": "replicas", "nodes": ["beta"]})))
    groups = inventory_groups(loaded)
    head, worker = groups["head"][0][0][1], groups["workers"][0][0][1]
    assert (head["serves_model"], worker["serves_model"]) == (False, True)
    assert head["serve"]["model_path"] == str(tmp_path / "models" / "tiny")
    assert head["serve"]["serving_nodes"] == ["beta"]
    assert head["serve"]["mode"] == "replicas"
    assert len(head["serve"]["model_digest"]) == 64


def test_the_inventory_of_a_cluster_that_serves_nothing(write_cluster, tmp_path):
    groups = inventory_groups(load_cluster(PROJECT_DIR, write_cluster(cluster(tmp_path, None))))
    head = groups["head"][0][0][1]
    assert head["serve"] is None and head["serves_model"] is False


def test_serving_adds_the_serve_pins_to_the_venv_and_its_name():
    from saf.spec import load_defaults
    from saf.venv_spec import requirements, venv_name

    serve_packages = load_defaults(PROJECT_DIR)["serve_packages"]
    plain = requirements("2.49.1", "0.29.1", "cpu", ["numpy==2.0.2"])
    serving = requirements("2.49.1", "0.29.1", "cpu", ["numpy==2.0.2"], serve_packages)
    assert serving[0] == "ray[default,serve]==2.49.1" and plain[0] == "ray[default]==2.49.1"
    assert set(serve_packages) <= set(serving) and "numpy==2.0.2" in serving
    assert venv_name("3.9.23", serving) != venv_name("3.9.23", plain)
    assert venv_name("3.9.23", serving).startswith("py3.9.23-ray2.49.1-mlx0.29.1-")
