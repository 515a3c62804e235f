"""Serving a model on the lab (mode replicas): the tiny model declared in the cluster file is staged
on the three nodes and served by Ray Serve on the head; the deploy's verification proves it (the
report's serve part); the endpoint answers through an SSH tunnel as a user reaches it (models,
completions, chat, streaming; `saf ask`); a re-run changes nothing; a worker's raylet killed with
kill -9 during a stream of requests fails only the requests in flight, and that node serves again
without a deploy; removing the serve: part takes the service and the models away.

Named to run after test_flow_launch.py and before test_upgrade.py (file order); its last test deploys
the cluster without serving, leaving the lab as test_flow_launch.py left it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from saf.lab.layout import NODE_USER
from saf.serve.client import tunnel
from saf.serve.tiny_model import make_tiny_model
from saf.spec import load_cluster
from tests.conftest import PROJECT_DIR
from tests.lab.conftest import deploy

pytest.importorskip("mlx_lm")  # the tiny model is made with mlx-lm on the control machine (the serve extra)

NODES = ("alpha", "beta", "gamma")
HOME = f"/home/{NODE_USER}"
SAF = str(Path(sys.executable).parent / "saf")
MODEL = "tiny-model"


@pytest.fixture(scope="module")
def clusters(lab, tmp_path_factory):
    where = tmp_path_factory.mktemp("serve")
    model = lab.layout.cache / MODEL
    if not (model / "config.json").exists():
        make_tiny_model(model)
    return {"serving": lab.write_cluster_file(list(NODES), path=where / "serving.yaml",
                                              serve={"model": str(model), "mode": "replicas"}),
            "plain": lab.write_cluster_file(list(NODES), path=where / "plain.yaml")}


@pytest.fixture(scope="module")
def served(clusters):
    started = time.monotonic()
    result = deploy(clusters["serving"])
    assert result.returncode == 0, result.log[-4000:]
    print(f"\nserving deploy: {time.monotonic() - started:.0f} s")
    return clusters["serving"]


@pytest.fixture(scope="module")
def endpoint(served):
    with tunnel(load_cluster(PROJECT_DIR, served)) as url:
        yield url


def post(url: str, body: dict, timeout: float = 60):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=timeout)


def test_the_verification_proves_the_served_model(served):
    report = json.loads((PROJECT_DIR / ".saf/reports/latest.json").read_text())
    part = report["serve"]
    assert part["ok"] is True, part
    assert (part["mode"], part["model"], part["endpoint"]) == ("replicas", MODEL, "http://127.0.0.1:8000/v1")
    assert part["answered"] == part["expected"] == 3
    assert set(part["replicas"]) == set(NODES)  # the lab's hostnames are the node names
    for replica in part["replicas"].values():
        assert replica["ttft_ms"] > 0 and replica["prompt_tps"] > 0 and replica["end_to_end_tps"] > 0
        assert replica["generation_tps"] is None or replica["generation_tps"] > 0


def test_the_model_is_staged_on_every_node_and_current_names_it(lab, served):
    for node in NODES:
        listing = lab.exec(node, ["ls", "-la", f"{HOME}/.saf/models"]).stdout
        assert "current -> " in listing, (node, listing)
        name = lab.exec(node, ["readlink", f"{HOME}/.saf/models/current"]).stdout.strip()
        assert len(name) == 16 and lab.exec(node, ["test", "-f", f"{HOME}/.saf/models/{name}/.saf-digest"]).returncode == 0


def test_models_completions_chat_and_streaming_through_the_endpoint(endpoint):
    with urllib.request.urlopen(f"{endpoint}/models", timeout=30) as answer:
        assert [entry["id"] for entry in json.load(answer)["data"]] == [MODEL]
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 12, "temperature": 0}
    with post(f"{endpoint}/completions", body) as answer:
        first = json.load(answer)
    assert first["usage"]["completion_tokens"] == 12 and first["choices"][0]["text"]
    with post(f"{endpoint}/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}) as answer:
        lines = [line.decode().strip() for line in answer if line.strip()]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == first["choices"][0]["text"]  # greedy
    assert chunks[-1]["usage"]["completion_tokens"] == 12
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0}
    with post(f"{endpoint}/chat/completions", chat) as answer:
        reply = json.load(answer)
    assert reply["choices"][0]["message"]["role"] == "assistant" and reply["usage"]["completion_tokens"] == 8


def test_saf_ask_prints_the_answer_and_tokens_per_second(served):
    run = subprocess.run([SAF, "ask", "Hello there", "--max-tokens", "10"], cwd=PROJECT_DIR, capture_output=True,
                         text=True, env={**os.environ, "SAF_CLUSTER": str(served)}, stdin=subprocess.DEVNULL,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "-- 10 tokens at " in run.stdout and " tok/s" in run.stdout and "(first token " in run.stdout


def test_a_rerun_with_the_same_model_changes_nothing(served):
    result = deploy(served)
    assert result.returncode == 0, result.log[-3000:]
    assert result.changes == 0, [op for op in result.results["operations"] if op["success"]]


def _raylet_pid(lab, node: str) -> str:
    found = lab.exec(node, ["pgrep", "-f", "ray/core/src/ray/raylet/raylet"], check=False).stdout.split()
    assert found, f"no raylet on {node}"
    return found[0]


def test_a_workers_raylet_killed_mid_stream_fails_only_in_flight_requests_and_it_serves_again(lab, endpoint):
    body = {"model": MODEL, "prompt": "Count", "max_tokens": 24, "temperature": 0, "stream": True}
    outcomes: list[tuple[bool, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                with post(f"{endpoint}/completions", body, timeout=60) as answer:
                    replica = answer.headers.get("x-saf-replica")
                    complete = any(line.strip() == b"data: [DONE]" for line in answer)
                outcomes.append((complete, replica))
            except Exception:  # noqa: BLE001  (a failed request is what is counted)
                outcomes.append((False, None))

    clients = [threading.Thread(target=client) for _ in range(3)]
    for thread in clients:
        thread.start()
    time.sleep(5)
    lab.exec("beta", ["kill", "-9", _raylet_pid(lab, "beta")])
    killed_at = len(outcomes)
    time.sleep(20)
    stop.set()
    for thread in clients:
        thread.join(timeout=90)
    failed = sum(1 for ok, _ in outcomes if not ok)
    print(f"\nkill -9 of beta's raylet: {len(outcomes)} requests, {failed} failed")
    assert len(outcomes) > killed_at + 3  # the endpoint kept answering from the others
    assert failed <= len(clients), f"{failed} failed of {len(outcomes)}: more than the requests in flight"
    back_from = time.monotonic()
    deadline = back_from + 300  # Serve notices the dead replica (health checks), then places one on the node Ray got back
    seen: set[str] = set()
    while "beta" not in seen and time.monotonic() < deadline:  # no deploy: Ray's service and Serve bring it back
        try:
            with post(f"{endpoint}/completions", {**body, "stream": False}, timeout=60) as answer:
                seen.add(answer.headers.get("x-saf-replica"))
        except Exception:  # noqa: BLE001
            time.sleep(2)
    assert "beta" in seen, f"beta did not serve again within 300 s (answered: {seen})"
    print(f"beta served again {time.monotonic() - back_from:.0f} s after the clients stopped")


def test_removing_the_serve_part_takes_the_service_and_models_away(lab, clusters):
    result = deploy(clusters["plain"])
    assert result.returncode == 0, result.log[-3000:]
    assert lab.exec("alpha", ["test", "-e", "/etc/systemd/system/saf-serve.service"], check=False).returncode != 0
    assert lab.exec("alpha", ["test", "-e", f"{HOME}/.saf/serve"], check=False).returncode != 0
    for node in NODES:
        assert lab.exec(node, ["test", "-e", f"{HOME}/.saf/models"], check=False).returncode != 0, node
        command = lab.exec(node, ["pgrep", "-af", "ray start"], check=False).stdout
        assert "saf_serve" not in command, (node, command)
    report = json.loads((PROJECT_DIR / ".saf/reports/latest.json").read_text())
    assert report["ok"] is True and "serve" not in report
