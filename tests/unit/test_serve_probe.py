"""The verification's serving probe (saf/node_scripts/serve_probe.py) against an endpoint that answers
with the serving program's own response shaping (serve_app's models_body, completion_body, usage_chunk,
sse) over a real local HTTP server, as replicas on several nodes would: ok when every replica
answered the same greedy text, else the reason by name; and the report's serve part and table lines.

The Ray Serve path itself (proxy, replicas on nodes) is proven on the lab (tests/lab/test_flow_serve.py)."""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from saf.node_scripts import serve_app as app
from saf.node_scripts import serve_probe as probe
from saf.serve.report import serve_lines, serve_problem, serve_report


class Endpoint:
    """An endpoint whose replicas take turns (``node_ids``), each answering ``texts[node]``."""

    def __init__(self, node_ids, texts=None, model="tiny", key=None):
        self.turn = itertools.cycle(node_ids)
        self.texts = texts or {}
        self.model, self.key = model, key
        self.lock = threading.Lock()

    def handler(self):
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _authorized(self):
                if endpoint.key and self.headers.get("Authorization") != f"Bearer {endpoint.key}":
                    self.send_response(401)
                    self.end_headers()
                    return False
                return True

            def do_GET(self):
                if not self._authorized():
                    return
                body = json.dumps(app.models_body(endpoint.model, 0)).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                if not self._authorized():
                    return
                json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    node = next(endpoint.turn)
                text = endpoint.texts.get(node, "abc")
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("x-saf-node-id", node)
                self.send_header("x-saf-replica", f"host-{node}")
                self.end_headers()
                for letter in text:
                    self.wfile.write(app.sse(app.completion_body("c", 0, endpoint.model, letter, None, chunk=True)).encode())
                self.wfile.write(app.sse(app.usage_chunk("c", 0, endpoint.model, "text_completion",
                                                         app.usage_body(5, len(text)))).encode())
                self.wfile.write(app.SSE_DONE.encode())

        return Handler


@pytest.fixture
def serving():
    servers = []

    def start(endpoint: Endpoint) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), endpoint.handler())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()


def test_every_replica_answering_the_same_greedy_text_is_ok(serving):
    url = serving(Endpoint(["n1", "n2", "n3"]))
    result = probe.probe(url, "tiny", 3, None, 20)
    assert result["ok"] is True and result["answered"] == 3
    assert set(result["replicas"]) == {"host-n1", "host-n2", "host-n3"}
    replica = result["replicas"]["host-n1"]
    assert replica["prompt_tokens"] == 5 and replica["completion_tokens"] == 3 and replica["text"] == "abc"
    assert replica["ttft_ms"] >= 0 and replica["prompt_tps"] > 0


def test_a_replica_that_never_answers_is_named(serving):
    result = probe.probe(serving(Endpoint(["n1", "n2"])), "tiny", 3, None, 20)
    assert result["ok"] is False and result["reason"] == "replica_missing"
    assert result["detail"] == "2 of 3 replicas answered in 3 rounds"


def test_replicas_that_answer_differently_fail(serving):
    result = probe.probe(serving(Endpoint(["n1", "n2"], texts={"n2": "abd"})), "tiny", 2, None, 20)
    assert result["reason"] == "texts_differ"


def test_a_model_the_endpoint_does_not_list(serving):
    result = probe.probe(serving(Endpoint(["n1"], model="other")), "tiny", 1, None, 20)
    assert result["reason"] == "model_not_listed" and result["models"] == ["other"]


def test_a_wrong_key_is_unauthorized_and_the_right_one_passes(serving):
    url = serving(Endpoint(["n1"], key="s3cret"))
    assert probe.probe(url, "tiny", 1, "wrong", 20)["reason"] == "unauthorized"
    assert probe.probe(url, "tiny", 1, "s3cret", 20)["ok"] is True


def test_no_endpoint_is_named_after_the_timeout():
    result = probe.probe("http://127.0.0.1:9/v1", "tiny", 1, None, 1)
    assert result["reason"] == "no_endpoint"


def test_the_report_part_and_its_table_lines(serving):
    declared = {"mode": "replicas", "model": "tiny", "endpoint": "http://127.0.0.1:8000/v1"}
    part = serve_report(probe.probe(serving(Endpoint(["n1", "n2"])), "tiny", 2, None, 20), declared)
    assert part["ok"] is True and part["endpoint"].endswith("/v1") and serve_problem(part) is None
    lines = serve_lines({"serve": part})
    assert lines[0] == "serve (replicas) tiny at http://127.0.0.1:8000/v1: ok, 2/2 replicas answered"
    assert lines[1].startswith("  host-n1: first token ")
    failed = serve_report({"ok": False, "reason": "replica_missing", "detail": "1 of 2"}, declared)
    assert "failed: replica_missing: 1 of 2" in serve_problem(failed)
    assert serve_report({}, declared)["reason"] == "no_probe_output"


def test_the_generation_rate_needs_a_few_chunks_to_mean_anything():
    assert probe.generation_rate([1.0, 1.5], 20) is None  # two chunks: the span times the HTTP path
    assert probe.generation_rate([1.0, 1.5, 2.0], 21) == 20.0
    assert probe.generation_rate([], 0) is None


def test_a_table_line_says_when_only_the_end_to_end_rate_is_known():
    part = {"mode": "replicas", "model": "tiny", "endpoint": "http://127.0.0.1:8000/v1", "ok": True, "answered": 1,
            "expected": 1, "replicas": {"alpha": {"ttft_ms": 50.0, "prompt_tps": 200.0, "generation_tps": None,
                                                  "end_to_end_tps": 300.0}}}
    assert serve_lines({"serve": part})[1] == ("  alpha: first token 50.0 ms, prompt 200.0 tok/s, 300.0 tok/s end to "
                                               "end (the answer came in too few chunks to time its generation)")
