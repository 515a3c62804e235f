"""SAF's `replicas` serving program: one mlx-lm replica per serving node behind Ray Serve's HTTP proxy.

    python serve_app.py --config serve.json     # on the head, with the venv's Python; runs until stopped

It connects to the cluster's Ray, starts Serve's HTTP proxy on the head only (``host``:``port`` of the
config; the head's loopback by default), deploys one application: a FastAPI ingress (Serve's own
``serve.ingress``) in a deployment of ``replicas`` replicas, each holding the model with mlx-lm, at
most one per node and only on nodes that offer the ``resource`` custom resource (declared by the
serving nodes' ``ray start --resources``), then watches it. OpenAI-compatible routes: ``GET
/v1/models``, ``POST /v1/completions`` and ``POST /v1/chat/completions``, ``"stream": true`` as
server-sent events, greedy decoding at temperature 0, usage token counts. It exits non-zero when
the cluster goes away (the supervisor starts it again, and it deploys again), and SIGTERM or
SIGINT deletes the application (and stops Serve when no other application is left) before exiting 0.

An API key is optional: ``SAF_SERVE_API_KEY_FILE`` in the environment names a file holding it (never
argv). The replicas get only its SHA-256 and compare a request's ``Authorization: Bearer`` with it.

Self-contained (the standard library; ray, fastapi and mlx-lm imported only where used), sent to
the head like the verification driver; the request and response shaping above the Ray part is
tested without Ray. Python 3.9 syntax: the nodes' pinned Python. No ``from __future__ import
annotations``: FastAPI reads the route functions' annotations, which name classes imported late.
"""

import argparse
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

KEY_FILE_ENV = "SAF_SERVE_API_KEY_FILE"
READY_MARKER = "SAF-SERVE ready "
DEFAULTS = {
    "app_name": "saf-serve",
    "host": "127.0.0.1",
    "port": 8000,
    "replicas": 1,
    "resource": "saf_serve",  # "" places replicas on any node (still at most one per node)
    # Per replica. 1: a replica generates one answer at a time anyway, and Serve's proxy prefers the
    # replica on its own node (the head) until that one is full: beyond 1, the head's replica would
    # queue requests while the other nodes' sit idle. The others wait in the proxy for a free replica.
    "max_ongoing_requests": 1,
    "default_max_tokens": 256,
    "max_tokens_limit": 4096,
    "ready_timeout_s": 600,
    "watch_interval_s": 5,
}
REQUIRED = ("address", "model_path", "model_id")
MAX_STOPS = 4
ROLES = ("system", "user", "assistant", "tool", "developer")


# --- configuration and the key ---------------------------------------------------------------


class ConfigError(Exception):
    """The config file cannot be served as it is; the message names the field and the fix."""


def load_config(text: str, source: str = "the serve config") -> Dict[str, Any]:
    """The config (JSON) with defaults filled in; ConfigError naming the field when one is wrong."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{source} is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a JSON object")
    missing = [key for key in REQUIRED if not data.get(key)]
    if missing:
        raise ConfigError(f"{source} lacks {', '.join(missing)}")
    config = {**DEFAULTS, **data}
    for key in ("port", "replicas", "max_ongoing_requests", "default_max_tokens", "max_tokens_limit"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{source}: {key} must be a positive integer, not {value!r}")
    if config["port"] > 65535:
        raise ConfigError(f"{source}: port {config['port']} is not a TCP port (1-65535)")
    if config["default_max_tokens"] > config["max_tokens_limit"]:
        raise ConfigError(f"{source}: default_max_tokens is above max_tokens_limit")
    return config


def key_digest(key: str) -> str:
    """What the replicas hold instead of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_api_key(environ: Dict[str, str]) -> Optional[str]:
    """The key in the file that ``SAF_SERVE_API_KEY_FILE`` names; None when unset. ConfigError when
    unreadable or empty."""
    path = environ.get(KEY_FILE_ENV, "")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as stream:
            key = stream.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{KEY_FILE_ENV} names {path}, which cannot be read ({error.__class__.__name__})") from None
    if not key:
        raise ConfigError(f"{KEY_FILE_ENV} names {path}, which is empty: write the key into it")
    return key


def authorized(header: Optional[str], digest: Optional[str]) -> bool:
    """Whether an ``Authorization`` header carries the key whose SHA-256 is ``digest`` (always, without a key)."""
    if digest is None:
        return True
    if not header:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(key_digest(token.strip()), digest)


# --- requests ----------------------------------------------------------------------------------


class RequestError(Exception):
    """A request the API refuses: its HTTP status and OpenAI's error body."""

    def __init__(
        self,
        message: str,
        param: Optional[str] = None,
        status: int = 400,
        code: Optional[str] = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.body = status, error_body(message, kind, param, code)


class Sampling:
    """What a request asks of the generation."""

    def __init__(
        self,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stops: List[str],
        seed: Optional[int],
        stream: bool,
        include_usage: bool,
    ) -> None:
        self.max_tokens, self.temperature, self.top_p = max_tokens, temperature, top_p
        self.stops, self.seed, self.stream, self.include_usage = stops, seed, stream, include_usage


def parse_completion(body: Any, model_id: str, config: Dict[str, Any]) -> Tuple[Any, Sampling]:
    """(prompt, sampling) of a ``/v1/completions`` body; the prompt is a string or a list of token ids."""
    body = _object(body)
    _check_model(body, model_id)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, list):
        if not prompt or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt):
            raise RequestError("prompt must be a string or a list of token ids (one prompt per request)", "prompt")
    elif not isinstance(prompt, str) or not prompt:
        raise RequestError("prompt must be a non-empty string", "prompt")
    return prompt, _sampling(body, config, "max_tokens")


def parse_chat(body: Any, model_id: str, config: Dict[str, Any]) -> Tuple[List[Dict[str, str]], Sampling]:
    """(messages, sampling) of a ``/v1/chat/completions`` body; each message's content made plain text."""
    body = _object(body)
    _check_model(body, model_id)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list of {role, content}", "messages")
    plain = [_plain_message(message, index) for index, message in enumerate(messages)]
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return plain, _sampling(body, config, key)


def _object(body: Any) -> Dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _check_model(body: Dict[str, Any], model_id: str) -> None:
    model = body.get("model")
    if model is not None and model != model_id:
        raise RequestError(
            f"model {model!r} is not served here; this endpoint serves {model_id!r}",
            "model",
            status=404,
            code="model_not_found",
        )


def _plain_message(message: Any, index: int) -> Dict[str, str]:
    param = f"messages[{index}]"
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise RequestError(f"{param} must be an object with a role ({', '.join(ROLES)})", param)
    content = message.get("content")
    if isinstance(content, list):  # content parts: only text can be served by a text model
        if not all(
            isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            for part in content
        ):
            raise RequestError(f"{param}.content: only text parts are supported", f"{param}.content")
        content = "".join(part["text"] for part in content)
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise RequestError(f"{param}.content must be a string or a list of text parts", f"{param}.content")
    return {"role": message["role"], "content": content}


def _sampling(body: Dict[str, Any], config: Dict[str, Any], max_key: str) -> Sampling:
    limit = config["max_tokens_limit"]
    max_tokens = _number(body, max_key, int, config["default_max_tokens"], 1, limit)
    temperature = _number(body, "temperature", float, 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", float, 1.0, 0.0, 1.0)
    if top_p == 0.0:
        raise RequestError("top_p must be above 0", "top_p")
    n = _number(body, "n", int, 1, 1, 1)
    del n  # one choice per request: more are more requests
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("seed must be an integer", "seed")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("stream must be true or false", "stream")
    options = body.get("stream_options") or {}
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return Sampling(max_tokens, temperature, top_p, _stops(body.get("stop")), seed, stream, include_usage)


def _number(body: Dict[str, Any], key: str, kind: type, default: Any, low: float, high: float) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise RequestError(f"{key} must be {'an integer' if kind is int else 'a number'}", key)
    if not low <= value <= high:
        raise RequestError(f"{key} must be between {low:g} and {high:g}, not {value}", key)
    return kind(value)


def _stops(stop: Any) -> List[str]:
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOPS:
        raise RequestError(f"stop must be a non-empty string or a list of at most {MAX_STOPS} of them", "stop")
    return stops


# --- responses -----------------------------------------------------------------------------------


def error_body(
    message: str, kind: str = "invalid_request_error", param: Optional[str] = None, code: Optional[str] = None
) -> Dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def usage_body(prompt_tokens: int, completion_tokens: int) -> Dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def models_body(model_id: str, created: int) -> Dict[str, Any]:
    return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created, "owned_by": "saf"}]}


def completion_body(
    request_id: str,
    created: int,
    model_id: str,
    text: str,
    finish_reason: Optional[str],
    usage: Optional[Dict[str, int]] = None,
    chunk: bool = False,
) -> Dict[str, Any]:
    """A ``text_completion`` (whole, or one streamed chunk: a chunk's usage, when asked, is its own last chunk)."""
    body = {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model_id,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None or not chunk:
        body["usage"] = usage
    return body


def chat_body(
    request_id: str, created: int, model_id: str, text: str, finish_reason: Optional[str], usage: Dict[str, int]
) -> Dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


def chat_chunk(
    request_id: str, created: int, model_id: str, delta: Dict[str, str], finish_reason: Optional[str]
) -> Dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model_id,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(request_id: str, created: int, model_id: str, obj: str, usage: Dict[str, int]) -> Dict[str, Any]:
    """The last chunk of a stream that asked for usage (``stream_options.include_usage``): no choices."""
    return {"id": request_id, "object": obj, "created": created, "model": model_id, "choices": [], "usage": usage}


def sse(body: Any) -> str:
    return "data: " + json.dumps(body, separators=(",", ":")) + "\n\n"


SSE_DONE = "data: [DONE]\n\n"


class StopScanner:
    """Cuts generated text at the first stop string; holds back a tail that may be the start of one."""

    def __init__(self, stops: List[str]) -> None:
        self.stops, self.pending, self.stopped = stops, "", False

    def feed(self, segment: str) -> str:
        """The text that is safe to emit now (``stopped`` turns true at a stop string)."""
        if self.stopped:
            return ""
        self.pending += segment
        hits = [index for index in (self.pending.find(stop) for stop in self.stops) if index >= 0]
        if hits:
            self.stopped = True
            text, self.pending = self.pending[: min(hits)], ""
            return text
        hold = max(
            (n for stop in self.stops for n in range(1, len(stop)) if self.pending.endswith(stop[:n])), default=0
        )
        text, self.pending = self.pending[: len(self.pending) - hold], self.pending[len(self.pending) - hold :]
        return text

    def flush(self) -> str:
        text, self.pending = ("" if self.stopped else self.pending), ""
        return text


class Event:
    """One step of a generation: new text, and on the last step why it ended and the counts."""

    def __init__(self, text: str, finish_reason: Optional[str], prompt_tokens: int, completion_tokens: int) -> None:
        self.text, self.finish_reason = text, finish_reason
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens


def shaped_events(steps: Iterator[Tuple[str, Optional[str], int, int]], stops: List[str]) -> Iterator[Event]:
    """mlx-lm's steps (text, finish_reason, prompt tokens, generated tokens) cut at the stop strings.

    The caller closes ``steps`` when the last event comes early (a stop string): generation stops there.
    """
    scanner = StopScanner(stops)
    prompt_tokens = completion_tokens = 0
    for text, finish_reason, prompt_tokens, completion_tokens in steps:
        emit = scanner.feed(text)
        if scanner.stopped:
            yield Event(emit, "stop", prompt_tokens, completion_tokens)
            return
        if finish_reason is not None:
            yield Event(emit + scanner.flush(), finish_reason, prompt_tokens, completion_tokens)
            return
        if emit:
            yield Event(emit, None, prompt_tokens, completion_tokens)
    yield Event(scanner.flush(), "stop", prompt_tokens, completion_tokens)


def merged(events: List[Event]) -> Event:
    """Consecutive events as one: their text, the last one's end and counts."""
    last = events[-1]
    return Event(
        "".join(event.text for event in events), last.finish_reason, last.prompt_tokens, last.completion_tokens
    )


# --- the model (mlx-lm), in one thread per replica ------------------------------------------------


class Engine:
    """The model and tokenizer (``mlx_lm.load``), and greedy or sampled generation with ``stream_generate``."""

    def __init__(self, model_path: str) -> None:
        from mlx_lm import load

        self.model, self.tokenizer = load(model_path)

    def completion_tokens(self, prompt: Any) -> List[int]:
        """The prompt's tokens, encoded as mlx_lm.generate encodes a string (a BOS only when the text lacks it)."""
        if isinstance(prompt, list):
            return prompt
        bos = self.tokenizer.bos_token
        return self.tokenizer.encode(prompt, add_special_tokens=bos is None or not prompt.startswith(bos))

    def chat_tokens(self, messages: List[Dict[str, str]]) -> List[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant: "
            return self.completion_tokens(text)
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True))

    def steps(
        self, tokens: List[int], sampling: Sampling, cancelled: Callable[[], bool]
    ) -> Iterator[Tuple[str, Optional[str], int, int]]:
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        if sampling.seed is not None:
            mx.random.seed(sampling.seed)
        sampler = make_sampler(sampling.temperature, sampling.top_p)  # temperature 0: argmax (greedy)
        for response in stream_generate(
            self.model, self.tokenizer, tokens, max_tokens=sampling.max_tokens, sampler=sampler
        ):
            yield response.text, response.finish_reason, response.prompt_tokens, response.generation_tokens
            if cancelled():
                return


class Worker:
    """One thread owns the model and runs one generation at a time (MLX's streams belong to a thread)."""

    def __init__(self, model_path: str) -> None:
        import queue

        self._jobs: queue.Queue[Callable[[Engine], None]] = queue.Queue()
        self._loaded = threading.Event()
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, args=(model_path,), name="saf-mlx", daemon=True)
        self.thread.start()
        self._loaded.wait()
        if self.error is not None:
            raise RuntimeError(f"the model at {model_path} did not load: {self.error}")

    def _run(self, model_path: str) -> None:
        try:
            engine = Engine(model_path)
        except BaseException as error:  # noqa: BLE001  (reported by the constructor)
            self.error = error
            self._loaded.set()
            return
        self._loaded.set()
        while True:
            self._jobs.get()(engine)

    def submit(self, job: Callable[[Engine], None]) -> None:
        self._jobs.put(job)

    def alive(self) -> bool:
        return self.thread.is_alive()


# --- Ray Serve -------------------------------------------------------------------------------------


def build_application(config: Dict[str, Any], digest: Optional[str]) -> Any:
    """The Serve application: the deployment, its FastAPI routes, bound to the config and the key's digest."""
    import asyncio
    import socket

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from ray import serve

    api = FastAPI(title="SAF serve", docs_url=None, redoc_url=None, openapi_url=None)
    options = {"num_cpus": 0}
    if config["resource"]:
        options["resources"] = {config["resource"]: 1}

    deployment = {
        "num_replicas": config["replicas"],
        "max_replicas_per_node": 1,
        "ray_actor_options": options,
        "max_ongoing_requests": config["max_ongoing_requests"],
        "health_check_period_s": 10,
    }

    @serve.deployment(**deployment)
    @serve.ingress(api)
    class MLXModel:
        def __init__(self, config: Dict[str, Any], digest: Optional[str]) -> None:
            self.config, self.digest, self.model_id = config, digest, config["model_id"]
            import ray

            self.node, self.node_id = socket.gethostname(), ray.get_runtime_context().get_node_id()
            self.created = int(time.time())
            # Ray sets OMP_NUM_THREADS=1 in an actor without CPUs; MLX's CPU backend (its BLAS) would
            # then compute on one core. The replica is the node's model: all its cores (no effect on a GPU).
            os.environ["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)
            self.worker = Worker(config["model_path"])

        def saf_config_digest(self) -> str:
            return config_digest(self.config, self.digest)

        def check_health(self) -> None:
            if not self.worker.alive():
                raise RuntimeError("the model's thread has stopped")

        def _refusal(self, request: Request) -> Optional[JSONResponse]:
            if authorized(request.headers.get("authorization"), self.digest):
                return None
            body = error_body("a valid API key is required: Authorization: Bearer <key>", code="invalid_api_key")
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})

        async def _body(self, request: Request) -> Any:
            try:
                return await request.json()
            except ValueError:
                raise RequestError("the request body is not JSON") from None

        def _events(self, tokens_of: Callable[[Engine], List[int]], sampling: Sampling) -> Any:
            """An async iterator of Events, generated in the model's thread; stops generating when dropped."""
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            cancel = threading.Event()
            done = object()

            def job(engine: Engine) -> None:
                try:
                    if cancel.is_set():
                        return
                    steps = engine.steps(tokens_of(engine), sampling, cancel.is_set)
                    for event in shaped_events(steps, sampling.stops):
                        loop.call_soon_threadsafe(queue.put_nowait, event)
                    steps.close()
                except BaseException as error:  # noqa: BLE001  (handed to the request)
                    loop.call_soon_threadsafe(queue.put_nowait, error)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, done)

            async def events() -> Any:
                # What the model made while the last chunk was on its way goes out as one chunk: a
                # model faster than the HTTP path is not slowed to one round of it per token.
                self.worker.submit(job)
                try:
                    finished = False
                    while not finished:
                        items = [await queue.get()]
                        while not queue.empty():
                            items.append(queue.get_nowait())
                        if done in items:
                            finished, items = True, items[: items.index(done)]
                        for item in items:
                            if isinstance(item, BaseException):
                                raise item
                        if items:
                            yield merged(items)
                finally:
                    cancel.set()

            return events()

        def _headers(self) -> Dict[str, str]:
            return {"x-saf-replica": self.node, "x-saf-node-id": self.node_id}

        @api.get("/v1/models")
        async def models(self, request: Request) -> Any:
            return self._refusal(request) or JSONResponse(
                models_body(self.model_id, self.created), headers=self._headers()
            )

        @api.post("/v1/completions")
        async def completions(self, request: Request) -> Any:
            refusal = self._refusal(request)
            if refusal:
                return refusal
            try:
                prompt, sampling = parse_completion(await self._body(request), self.model_id, self.config)
            except RequestError as error:
                return JSONResponse(error.body, status_code=error.status)
            events = self._events(lambda engine: engine.completion_tokens(prompt), sampling)
            request_id, created = "cmpl-" + uuid.uuid4().hex, int(time.time())
            if sampling.stream:
                return StreamingResponse(
                    self._completion_stream(events, request_id, created, sampling),
                    media_type="text/event-stream",
                    headers=self._headers(),
                )
            text, last = await self._collect(events)
            usage = usage_body(last.prompt_tokens, last.completion_tokens)
            return JSONResponse(
                completion_body(request_id, created, self.model_id, text, last.finish_reason, usage),
                headers=self._headers(),
            )

        @api.post("/v1/chat/completions")
        async def chat(self, request: Request) -> Any:
            refusal = self._refusal(request)
            if refusal:
                return refusal
            try:
                messages, sampling = parse_chat(await self._body(request), self.model_id, self.config)
            except RequestError as error:
                return JSONResponse(error.body, status_code=error.status)
            events = self._events(lambda engine: engine.chat_tokens(messages), sampling)
            request_id, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())
            if sampling.stream:
                return StreamingResponse(
                    self._chat_stream(events, request_id, created, sampling),
                    media_type="text/event-stream",
                    headers=self._headers(),
                )
            text, last = await self._collect(events)
            usage = usage_body(last.prompt_tokens, last.completion_tokens)
            return JSONResponse(
                chat_body(request_id, created, self.model_id, text, last.finish_reason, usage), headers=self._headers()
            )

        async def _collect(self, events: Any) -> Tuple[str, Event]:
            parts, last = [], None
            async for event in events:
                parts.append(event.text)
                last = event
            return "".join(parts), last

        async def _completion_stream(self, events: Any, request_id: str, created: int, sampling: Sampling) -> Any:
            last = None
            async for event in events:
                last = event
                yield sse(
                    completion_body(request_id, created, self.model_id, event.text, event.finish_reason, chunk=True)
                )
            if sampling.include_usage and last is not None:
                usage = usage_body(last.prompt_tokens, last.completion_tokens)
                yield sse(usage_chunk(request_id, created, self.model_id, "text_completion", usage))
            yield SSE_DONE

        async def _chat_stream(self, events: Any, request_id: str, created: int, sampling: Sampling) -> Any:
            yield sse(chat_chunk(request_id, created, self.model_id, {"role": "assistant", "content": ""}, None))
            last = None
            async for event in events:
                last = event
                delta = {"content": event.text} if event.text else {}
                if delta or event.finish_reason:
                    yield sse(chat_chunk(request_id, created, self.model_id, delta, event.finish_reason))
            if sampling.include_usage and last is not None:
                usage = usage_body(last.prompt_tokens, last.completion_tokens)
                yield sse(usage_chunk(request_id, created, self.model_id, "chat.completion.chunk", usage))
            yield SSE_DONE

    return MLXModel.bind(config, digest)


# --- the program: deploy, watch, remove on stop -----------------------------------------------------


def serve_http_differs(host: str, port: int) -> bool:
    """Whether a Serve already running in the cluster listens elsewhere (its proxy keeps its first options)."""
    try:
        from ray.serve.context import _get_global_client  # Ray 2.49; no public way to read the options

        client = _get_global_client()
    except Exception:  # noqa: BLE001  (no Serve running, or the private API moved: start as asked)
        return False
    http = client.http_config
    return (http.host, http.port) != (host, port)


def config_digest(config: Dict[str, Any], digest: Optional[str]) -> str:
    """What a running application was deployed with (this program's text, the config, the key's digest):
    equal means nothing to redeploy."""
    return hashlib.sha256(json.dumps([own_source(), config, digest], sort_keys=True).encode()).hexdigest()


def own_source() -> str:
    """This program's text ("" when run from ``python -c``: the deployer's ``version`` in the config tells then)."""
    try:
        with open(__file__, encoding="utf-8") as stream:
            return stream.read()
    except (NameError, OSError):
        return ""


def deployed_digest(name: str) -> Optional[str]:
    """The config digest the running application answers with; None when it is not running or does not answer."""
    from ray import serve

    if not app_status(name).endswith("RUNNING"):
        return None
    try:
        return serve.get_app_handle(name).saf_config_digest.remote().result(timeout_s=30)
    except Exception:  # noqa: BLE001  (an older or broken application: deploy over it)
        return None


def deploy(config: Dict[str, Any], digest: Optional[str]) -> None:
    import ray
    from ray import serve

    ray.init(address=config["address"], logging_level="warning", log_to_driver=False)
    if serve_http_differs(config["host"], config["port"]):
        print(f"SAF-SERVE: Serve listens elsewhere; restarting it on {config['host']}:{config['port']}", flush=True)
        serve.shutdown()
    serve.start(proxy_location="HeadOnly", http_options={"host": config["host"], "port": config["port"]})
    if deployed_digest(config["app_name"]) == config_digest(config, digest):
        print("SAF-SERVE: the application already runs this config; watching it", flush=True)
    else:
        serve.run(build_application(config, digest), name=config["app_name"], route_prefix="/", blocking=False)
        wait_running(config)
    print(
        f"{READY_MARKER}http://{config['host']}:{config['port']}/v1 model={config['model_id']} "
        f"replicas={config['replicas']}",
        flush=True,
    )


def app_status(name: str) -> str:
    from ray import serve

    application = serve.status().applications.get(name)
    return str(application.status) if application is not None else "MISSING"


def wait_running(config: Dict[str, Any]) -> None:
    deadline = time.monotonic() + config["ready_timeout_s"]
    while True:
        status = app_status(config["app_name"])
        if status.endswith("RUNNING"):
            return
        if status.endswith("DEPLOY_FAILED") or time.monotonic() > deadline:
            from ray import serve

            details = serve.status().applications.get(config["app_name"])
            raise SystemExit(f"SAF-SERVE: the application is {status}: {getattr(details, 'message', '')}")
        time.sleep(1)


def watch(config: Dict[str, Any], stopping: threading.Event) -> int:
    """Until stopped: 0. When the application or the cluster is gone: 1, so the supervisor deploys again."""
    while not stopping.wait(config["watch_interval_s"]):
        try:
            status = app_status(config["app_name"])
        except Exception as error:  # noqa: BLE001  (the cluster went away)
            print(f"SAF-SERVE: lost the cluster ({error.__class__.__name__}: {error})", file=sys.stderr, flush=True)
            return 1
        if status == "MISSING":
            print("SAF-SERVE: the application was deleted", file=sys.stderr, flush=True)
            return 1
    return 0


def remove(config: Dict[str, Any]) -> None:
    """Delete the application; stop Serve (and free the port) when no other application is left."""
    from ray import serve

    serve.delete(config["app_name"])
    if not serve.status().applications:
        serve.shutdown()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="SAF's replicas serving program (Ray Serve + mlx-lm)")
    parser.add_argument("--config", required=True, help="the serve config (JSON)")
    args = parser.parse_args(argv)
    try:
        with open(args.config, encoding="utf-8") as stream:
            config = load_config(stream.read(), args.config)
        key = read_api_key(dict(os.environ))
    except (OSError, ConfigError) as error:
        print(f"SAF-SERVE: {error}", file=sys.stderr)
        return 2
    digest = key_digest(key) if key is not None else None
    deploy(config, digest)
    stopping = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which sets its own SIGTERM handler
        signal.signal(number, lambda *_: stopping.set())
    code = watch(config, stopping)
    if stopping.is_set():
        remove(config)
        print("SAF-SERVE: stopped; the application is removed", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
