"""The user's side of a served model: an SSH tunnel to the head's endpoint (bound to its loopback by
default, like the dashboard) and a prompt sent through it (``saf ask``), the answer printed as it
streams, then the tokens/s.

The API key (``serve_bind: cluster``) is read from the control-side key file and sent in the
``Authorization`` header; it is never printed or put on a command line.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from saf.paths import on_control
from saf.spec import Cluster
from saf.ssh import ssh_argv

TUNNEL_WAIT_S = 20


class ServeClientError(Exception):
    """The endpoint cannot be reached or refused the request; the message says why and what to do."""


def endpoint_bind(cluster: Cluster) -> str:
    """Where the endpoint listens on the head: its loopback, or its cluster ip (``serve_bind: cluster``)."""
    return cluster.head.ip if cluster.settings.serve_bind == "cluster" else "127.0.0.1"


def tunnel_argv(cluster: Cluster, local_port: int) -> list[str]:
    """``ssh -N -L 127.0.0.1:<local>:<bind>:<serve_port> head``: the endpoint on this machine's loopback."""
    forward = f"127.0.0.1:{local_port}:{endpoint_bind(cluster)}:{cluster.settings.serve_port}"
    return ssh_argv(cluster.head, options=("-N", "-o", "ExitOnForwardFailure=yes", "-L", forward))


def api_key(cluster: Cluster, project_dir: Path) -> str | None:
    """The API key when the endpoint asks for one (serve_bind: cluster), from the control-side file."""
    if cluster.settings.serve_bind != "cluster":
        return None
    path = on_control(cluster.settings.serve_api_key_file, project_dir)
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ServeClientError(
            f"the endpoint asks for the API key in {path}, which cannot be read "
            f"({error.strerror}); run the deploy, which generates it"
        ) from None


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def tunnel(cluster: Cluster, local_port: int | None = None) -> Iterator[str]:
    """An SSH tunnel to the head's endpoint for the ``with`` block; yields the local URL (ending in /v1)."""
    port = local_port or free_local_port()
    process = subprocess.Popen(
        tunnel_argv(cluster, port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_for_port(process, port, cluster.head.name)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_port(process: subprocess.Popen, port: int, head: str) -> None:
    deadline = time.monotonic() + TUNNEL_WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
            raise ServeClientError(f"the SSH tunnel to {head} closed: {error or 'no reason given'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise ServeClientError(f"the SSH tunnel to {head} did not open in {TUNNEL_WAIT_S} s")


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    total_s: float
    replica: str | None

    chunks: int = 0
    last_s: float = 0.0

    @property
    def generation_tps(self) -> float | None:
        """Tokens after the first over the span of the stream (None for fewer than 3 chunks: the span
        then measures the HTTP path, not the model)."""
        span = self.last_s - self.ttft_s
        return (self.completion_tokens - 1) / span if self.chunks >= 3 and span > 0 else None

    def summary(self) -> str:
        rate = self.generation_tps
        tps = (
            f"{rate:.1f} tok/s"
            if rate is not None
            else f"{self.completion_tokens / self.total_s:.1f} tok/s end to end"
            if self.total_s > 0
            else "n/a"
        )
        where = f", from {self.replica}" if self.replica else ""
        return (
            f"{self.completion_tokens} tokens at {tps} (first token {self.ttft_s * 1000:.0f} ms, prompt "
            f"{self.prompt_tokens} tokens{where})"
        )


def model_id(url: str, key: str | None) -> str:
    """The one model the endpoint serves (its /v1/models)."""
    with urllib.request.urlopen(_request(f"{url}/models", key), timeout=30) as answer:
        return json.load(answer)["data"][0]["id"]


def ask(
    url: str, prompt: str, key: str | None, max_tokens: int = 128, on_text: Callable[[str], None] = lambda text: None
) -> Answer:
    """One chat turn, greedy, streamed: ``on_text`` gets each piece as it arrives."""
    model = model_id(url, key)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.monotonic()
    arrivals, parts, usage = [], [], {}
    try:
        answer = urllib.request.urlopen(_request(f"{url}/chat/completions", key, body), timeout=300)
    except urllib.error.HTTPError as error:
        raise ServeClientError(
            f"the endpoint answered HTTP {error.code}: {error.read().decode(errors='replace')}"
        ) from None
    with answer:
        replica = answer.headers.get("x-saf-replica")
        for raw in answer:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    arrivals.append(time.monotonic())
                    parts.append(piece)
                    on_text(piece)
    end = time.monotonic()
    first, last = (arrivals[0], arrivals[-1]) if arrivals else (end, end)
    return Answer(
        "".join(parts),
        usage.get("prompt_tokens", 0),
        usage.get("completion_tokens", 0),
        first - start,
        end - start,
        replica,
        len(arrivals),
        last - start,
    )


def _request(url: str, key: str | None, body: dict | None = None) -> urllib.request.Request:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    return urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method="POST" if body is not None else "GET",
    )


def print_answer(url: str, prompt: str, key: str | None, max_tokens: int) -> Answer:
    """``saf ask``: the answer as it streams, then its figures."""
    answer = ask(url, prompt, key, max_tokens, on_text=lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    sys.stdout.write("\n")
    print(f"-- {answer.summary()}")
    return answer
