"""The verification's proof of a served model, run on the head through its endpoint: ``/v1/models``
lists the model, then a fixed prompt, greedy, as concurrent streams (one per replica) until every
replica has answered (``x-saf-node-id``), at most a few rounds.

    python serve_probe.py --endpoint http://127.0.0.1:8000/v1 --model NAME --replicas 3 [--key-file F] [--timeout S]

Prints one line ``SAF-SERVE-PROBE <json>``: ``ok``, ``reason`` (by name, when not ok), ``models``
(what /v1/models listed), ``replicas`` per replica host name (its node id, time to first token,
prompt and generation tokens/s, its text) and ``answered``/``expected``; every replica's greedy
text must be the same (same weights, same prompt). Standard library only, Python 3.9 syntax: it
runs with the venv's Python like the verification driver. The API key (``--key-file``) is read from
the file, never taken as an argument.
"""

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

MARKER = "SAF-SERVE-PROBE "
PROMPT = "The cluster of Macs answered the question:"
MAX_TOKENS = 32
MIN_CHUNKS = 3  # fewer content chunks: the replica sent what it had made at once, a decode rate would measure HTTP
ROUNDS = 3


def request(url: str, key: Optional[str], body: Optional[Dict[str, Any]] = None) -> urllib.request.Request:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    return urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")


def wait_for_models(endpoint: str, key: Optional[str], deadline: float) -> List[str]:
    """The model ids /v1/models lists, waiting (the program may be deploying) until ``deadline``."""
    last = "no answer"
    while True:
        try:
            with urllib.request.urlopen(request(f"{endpoint}/models", key), timeout=10) as answer:
                return [entry.get("id") for entry in json.load(answer).get("data", [])]
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
            if error.code == 401:
                raise ProbeError("unauthorized", "the endpoint refused the API key (HTTP 401)") from None
        except (OSError, ValueError) as error:
            last = f"{error.__class__.__name__}: {error}"
        if time.monotonic() > deadline:
            raise ProbeError("no_endpoint", f"{endpoint}/models did not answer in time ({last})")
        time.sleep(2)


class ProbeError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def one_stream(endpoint: str, model: str, key: Optional[str], timeout: float) -> Dict[str, Any]:
    """One streamed greedy completion: its replica, text, usage and timings."""
    body = {
        "model": model,
        "prompt": PROMPT,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.monotonic()
    arrivals: List[float] = []
    text, usage = [], {}
    with urllib.request.urlopen(request(f"{endpoint}/completions", key, body), timeout=timeout) as answer:
        node_id, replica = answer.headers.get("x-saf-node-id"), answer.headers.get("x-saf-replica")
        for raw in answer:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice.get("text"):
                    arrivals.append(time.monotonic())
                    text.append(choice["text"])
    end = time.monotonic()
    prompt_tokens, completion_tokens = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    ttft = (arrivals[0] if arrivals else end) - start
    return {
        "node_id": node_id,
        "replica": replica or node_id,
        "text": "".join(text),
        "ttft_ms": round(ttft * 1000, 1),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tps": round(prompt_tokens / ttft, 1) if ttft > 0 else None,
        "generation_tps": generation_rate(arrivals, completion_tokens),
        "end_to_end_tps": round(completion_tokens / (end - start), 1) if end > start else None,
    }


def generation_rate(arrivals: List[float], completion_tokens: int) -> Optional[float]:
    """Tokens after the first over the time from the first content chunk to the last; None when the
    answer came in fewer than MIN_CHUNKS chunks (the replica merges what it made while a chunk was on
    its way: then the span measures the HTTP path, not the model)."""
    if len(arrivals) < MIN_CHUNKS or arrivals[-1] <= arrivals[0]:
        return None
    return round((completion_tokens - 1) / (arrivals[-1] - arrivals[0]), 1)


def concurrent_streams(endpoint: str, model: str, key: Optional[str], count: int, timeout: float) -> List[Any]:
    """``count`` streams at once (each replica takes one at a time, so they spread over the replicas)."""
    results: List[Any] = [None] * count

    def run(index: int) -> None:
        try:
            results[index] = one_stream(endpoint, model, key, timeout)
        except Exception as error:  # noqa: BLE001  (reported by name)
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def probe(endpoint: str, model: str, replicas: int, key: Optional[str], timeout: float) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    report: Dict[str, Any] = {"ok": False, "endpoint": endpoint, "model": model, "expected": replicas}
    try:
        report["models"] = wait_for_models(endpoint, key, deadline)
        if model not in report["models"]:
            raise ProbeError("model_not_listed", f"/v1/models lists {report['models']}, not {model}")
        answered: Dict[str, Dict[str, Any]] = {}
        for _ in range(ROUNDS):
            for result in concurrent_streams(endpoint, model, key, max(replicas, 1), timeout):
                if isinstance(result, Exception):
                    raise ProbeError("request_failed", f"a completion failed: {result.__class__.__name__}: {result}")
                answered.setdefault(result["node_id"] or "?", result)
            if len(answered) >= replicas:
                break
        report["replicas"] = {entry["replica"]: entry for entry in answered.values()}
        report["answered"] = len(answered)
        texts = {entry["text"] for entry in answered.values()}
        if len(answered) < replicas:
            raise ProbeError("replica_missing", f"{len(answered)} of {replicas} replicas answered in {ROUNDS} rounds")
        if len(texts) != 1 or not texts.pop():
            raise ProbeError("texts_differ", "the replicas' greedy answers to the same prompt differ (or are empty)")
        report["ok"] = True
    except ProbeError as error:
        report["reason"], report["detail"] = error.reason, error.detail
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="SAF's proof of a served model, through its endpoint")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--replicas", type=int, required=True)
    parser.add_argument("--key-file", default="")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    key = None
    if args.key_file:
        with open(args.key_file, encoding="utf-8") as stream:
            key = stream.read().strip()
    print(
        MARKER + json.dumps(probe(args.endpoint, args.model, args.replicas, key, args.timeout), sort_keys=True),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
