"""Tokens/s through SAF's serving endpoint against ``mlx_lm.generate`` on the same model and prompt.

    python benchmarks/serve_local.py --endpoint http://127.0.0.1:8765/v1 --model /path/to/model \\
        [--max-tokens 200] [--repeats 5] [--streams 1,4,16] [--api-key-file FILE]

Run it where the model is and with a Python that has mlx-lm (a node's venv, or the scratch venv of
/work/notes/serve-design.md); the endpoint must serve that same model (saf/node_scripts/serve_app.py).
It prints, for greedy decoding of one fixed prompt:

- ``mlx_lm``: ``stream_generate`` in this process: time to first token, decode tokens/s (the tokens
  after the first over the time after it, as mlx-lm's ``generation_tps``) and end-to-end tokens/s;
- ``endpoint 1 stream``: the same figures through ``POST /v1/completions`` with ``"stream": true``
  (HTTP, Serve's proxy, the replica, mlx-lm), and the ratio of the decode rates;
- ``endpoint N streams``: N clients at once, the sum of their tokens over the wall time.

The medians of ``--repeats`` runs after one untimed warm-up. A benchmark, not a test: it asserts
nothing, the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request
from pathlib import Path

PROMPT = "The quick brown fox jumps over the lazy dog. Tell me about distributed inference."


def baseline(model_path: str, max_tokens: int) -> dict:
    """One greedy generation with mlx-lm in this process, timed the same way as the endpoint's."""
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer = load(model_path)
    start = time.perf_counter()
    first = None
    count = 0
    for response in stream_generate(model, tokenizer, PROMPT, max_tokens=max_tokens, sampler=make_sampler(0.0)):
        if first is None:
            first = time.perf_counter()
        count = response.generation_tokens
    return figures(start, first, time.perf_counter(), count)


def figures(start: float, first: float, end: float, tokens: int) -> dict:
    decode = (tokens - 1) / (end - first) if tokens > 1 and end > first else 0.0
    return {"ttft_s": first - start, "decode_tps": decode, "e2e_tps": tokens / (end - start), "tokens": tokens}


def stream_once(endpoint: str, model_id: str, max_tokens: int, key: str | None) -> dict:
    """One streamed completion: the time of the first text chunk and the usage's token count."""
    body = {"model": model_id, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    request = urllib.request.Request(f"{endpoint}/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **auth(key)})
    start = time.perf_counter()
    first, tokens = None, 0
    with urllib.request.urlopen(request, timeout=300) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: "):])
            if first is None and chunk["choices"] and chunk["choices"][0]["text"]:
                first = time.perf_counter()
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return figures(start, first or time.perf_counter(), time.perf_counter(), tokens)


def auth(key: str | None) -> dict:
    return {"Authorization": f"Bearer {key}"} if key else {}


def served_model(endpoint: str, key: str | None) -> str:
    request = urllib.request.Request(f"{endpoint}/models", headers=auth(key))
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"][0]["id"]


def concurrent(endpoint: str, model_id: str, max_tokens: int, key: str | None, streams: int) -> dict:
    """``streams`` clients at once: total completion tokens over the wall time, and the slowest first token."""
    results: list[dict] = []
    lock = threading.Lock()

    def client() -> None:
        result = stream_once(endpoint, model_id, max_tokens, key)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=client) for _ in range(streams)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {"streams": streams, "total_tps": sum(r["tokens"] for r in results) / wall,
            "max_ttft_s": max(r["ttft_s"] for r in results), "wall_s": wall}


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", required=True, help="the served base URL, ending in /v1")
    parser.add_argument("--model", required=True, help="the same model's directory, for mlx_lm.generate")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--streams", default="1,4,16", help="concurrent streams to measure, comma-separated")
    parser.add_argument("--api-key-file", type=Path, help="the endpoint's API key, when it has one")
    args = parser.parse_args()
    key = args.api_key_file.read_text().strip() if args.api_key_file else None
    endpoint = args.endpoint.rstrip("/")
    model_id = served_model(endpoint, key)

    baseline(args.model, args.max_tokens)  # warm-up: imports, first kernels
    local = median_of([baseline(args.model, args.max_tokens) for _ in range(args.repeats)])
    stream_once(endpoint, model_id, args.max_tokens, key)
    served = median_of([stream_once(endpoint, model_id, args.max_tokens, key) for _ in range(args.repeats)])
    print(f"prompt: {PROMPT!r}, greedy, max_tokens {args.max_tokens}, median of {args.repeats}")
    for name, result in (("mlx_lm.generate", local), (f"endpoint ({model_id}), 1 stream", served)):
        print(f"{name:<40} ttft {result['ttft_s'] * 1000:7.1f} ms  decode {result['decode_tps']:8.1f} tok/s  "
              f"end-to-end {result['e2e_tps']:8.1f} tok/s  ({result['tokens']:.0f} tokens)")
    print(f"ratio endpoint / mlx_lm: decode {served['decode_tps'] / local['decode_tps']:.2f}, "
          f"end-to-end {served['e2e_tps'] / local['e2e_tps']:.2f}")
    for streams in (int(n) for n in args.streams.split(",") if n):
        result = concurrent(endpoint, model_id, args.max_tokens, key, streams)
        print(f"endpoint, {streams:>2} concurrent streams{'':<16} total {result['total_tps']:8.1f} tok/s  "
              f"slowest first token {result['max_ttft_s'] * 1000:7.1f} ms  wall {result['wall_s']:.2f} s")


if __name__ == "__main__":
    main()
