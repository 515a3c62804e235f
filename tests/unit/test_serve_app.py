"""The serving program's parts that run without Ray (saf/node_scripts/serve_app.py): its config, the
API key check, request parsing, response shapes, stop strings and streaming chunks; and its mlx-lm
engine on the tiny model, against ``mlx_lm.generate`` itself, where the ``serve`` extra is installed.
The program under Ray Serve is proven end to end by hand and on the lab (see serve-design notes)."""

from __future__ import annotations

import json
import threading

import pytest

from saf.node_scripts import serve_app as app

CONFIG = app.load_config(json.dumps({"address": "10.0.0.1:6380", "model_path": "/m", "model_id": "tiny"}))


# --- config -------------------------------------------------------------------------------------------


def test_the_config_gets_its_defaults():
    assert (CONFIG["host"], CONFIG["port"], CONFIG["replicas"], CONFIG["resource"]) == ("127.0.0.1", 8000, 1, "saf_serve")


@pytest.mark.parametrize("text, words", [
    ("nope", "not JSON"),
    ("[]", "JSON object"),
    (json.dumps({"address": "a", "model_path": "/m"}), "lacks model_id"),
    (json.dumps({"address": "a", "model_path": "/m", "model_id": "t", "port": 70000}), "not a TCP port"),
    (json.dumps({"address": "a", "model_path": "/m", "model_id": "t", "replicas": 0}), "replicas must be a positive"),
    (json.dumps({"address": "a", "model_path": "/m", "model_id": "t", "port": True}), "port must be a positive"),
    (json.dumps({"address": "a", "model_path": "/m", "model_id": "t", "default_max_tokens": 9000}), "max_tokens_limit"),
])
def test_a_bad_config_is_refused_by_field(text, words):
    with pytest.raises(app.ConfigError, match=words):
        app.load_config(text, "serve.json")


# --- the key ------------------------------------------------------------------------------------------


def test_without_a_key_everyone_is_let_in():
    assert app.authorized(None, None) and app.authorized("Bearer anything", None)


@pytest.mark.parametrize("header, allowed", [
    ("Bearer s3cret-key", True),
    ("bearer s3cret-key", True),
    ("Bearer  s3cret-key ", True),
    ("Bearer s3cret-kez", False),
    ("Bearer ", False),
    ("Basic s3cret-key", False),
    ("s3cret-key", False),
    ("", False),
    (None, False),
])
def test_a_key_is_checked_as_a_bearer_token(header, allowed):
    assert app.authorized(header, app.key_digest("s3cret-key")) is allowed


def test_the_key_comes_from_the_file_the_environment_names(tmp_path):
    (tmp_path / "key").write_text("s3cret-key\n")
    assert app.read_api_key({app.KEY_FILE_ENV: str(tmp_path / "key")}) == "s3cret-key"
    assert app.read_api_key({}) is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(app.ConfigError, match="empty"):
        app.read_api_key({app.KEY_FILE_ENV: str(tmp_path / "empty")})
    with pytest.raises(app.ConfigError, match="cannot be read") as refused:
        app.read_api_key({app.KEY_FILE_ENV: str(tmp_path / "absent")})
    assert "s3cret" not in str(refused.value)


def test_the_replicas_hold_only_the_digest():
    digest = app.key_digest("s3cret-key")
    assert "s3cret" not in digest and len(digest) == 64
    assert app.config_digest(CONFIG, digest) != app.config_digest(CONFIG, app.key_digest("other"))
    assert app.config_digest(CONFIG, digest) == app.config_digest(dict(CONFIG), digest)


# --- requests -------------------------------------------------------------------------------------------


def test_a_completion_request_is_parsed():
    prompt, sampling = app.parse_completion({"model": "tiny", "prompt": "Hi", "max_tokens": 7, "temperature": 0,
                                             "stop": "\n", "stream": True, "seed": 3}, "tiny", CONFIG)
    assert prompt == "Hi"
    assert (sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.stops, sampling.stream,
            sampling.seed, sampling.include_usage) == (7, 0.0, 1.0, ["\n"], True, 3, False)


def test_openai_defaults_apply():
    _, sampling = app.parse_completion({"prompt": "Hi"}, "tiny", CONFIG)
    assert (sampling.max_tokens, sampling.temperature, sampling.stream, sampling.stops) == (256, 1.0, False, [])


def test_a_prompt_may_be_token_ids_or_a_batch_of_one():
    assert app.parse_completion({"prompt": [1, 2, 3]}, "tiny", CONFIG)[0] == [1, 2, 3]
    assert app.parse_completion({"prompt": ["Hi"]}, "tiny", CONFIG)[0] == "Hi"


@pytest.mark.parametrize("body, param", [
    ({"prompt": ""}, "prompt"),
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": [1, -2]}, "prompt"),
    ({"prompt": [True]}, "prompt"),
    ({}, "prompt"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 5000}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 1.5}, "max_tokens"),
    ({"prompt": "x", "temperature": -0.1}, "temperature"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "n": 2}, "n"),
    ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": "x", "stop": [""]}, "stop"),
    ({"prompt": "x", "stream": "yes"}, "stream"),
    ({"prompt": "x", "seed": "1"}, "seed"),
])
def test_bad_completion_requests_are_refused_naming_the_field(body, param):
    with pytest.raises(app.RequestError) as refused:
        app.parse_completion(body, "tiny", CONFIG)
    assert refused.value.status == 400 and refused.value.body["error"]["param"] == param


def test_another_model_is_not_found():
    with pytest.raises(app.RequestError) as refused:
        app.parse_completion({"model": "gpt-4", "prompt": "x"}, "tiny", CONFIG)
    assert refused.value.status == 404 and refused.value.body["error"]["code"] == "model_not_found"
    assert "tiny" in refused.value.body["error"]["message"]


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(app.RequestError):
        app.parse_chat(["messages"], "tiny", CONFIG)


def test_chat_messages_are_made_plain_text():
    messages, sampling = app.parse_chat({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": None},
    ], "max_completion_tokens": 9, "max_tokens": 100}, "tiny", CONFIG)
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"},
                        {"role": "assistant", "content": ""}]
    assert sampling.max_tokens == 9  # max_completion_tokens wins, as in OpenAI's API


@pytest.mark.parametrize("messages, param", [
    ([], "messages"),
    ("hi", "messages"),
    ([{"role": "robot", "content": "x"}], "messages[0]"),
    ([{"role": "user", "content": "x"}, {"content": "y"}], "messages[1]"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages[0].content"),
    ([{"role": "user", "content": 5}], "messages[0].content"),
])
def test_bad_chat_messages_are_refused_naming_the_message(messages, param):
    with pytest.raises(app.RequestError) as refused:
        app.parse_chat({"messages": messages}, "tiny", CONFIG)
    assert refused.value.body["error"]["param"] == param


# --- responses --------------------------------------------------------------------------------------------


def test_a_completion_has_openai_shape():
    body = app.completion_body("cmpl-1", 100, "tiny", "Paris", "stop", app.usage_body(5, 2))
    assert body == {"id": "cmpl-1", "object": "text_completion", "created": 100, "model": "tiny",
                    "choices": [{"index": 0, "text": "Paris", "logprobs": None, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    assert "usage" not in app.completion_body("cmpl-1", 100, "tiny", "P", None, chunk=True)


def test_a_chat_completion_and_its_chunks_have_openai_shape():
    body = app.chat_body("chatcmpl-1", 100, "tiny", "Paris", "length", app.usage_body(5, 2))
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Paris"}
    chunk = app.chat_chunk("chatcmpl-1", 100, "tiny", {"content": "Pa"}, None)
    assert chunk["object"] == "chat.completion.chunk" and chunk["choices"][0]["delta"] == {"content": "Pa"}
    last = app.usage_chunk("chatcmpl-1", 100, "tiny", "chat.completion.chunk", app.usage_body(5, 2))
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 7


def test_models_lists_the_served_model():
    assert app.models_body("tiny", 100)["data"] == [{"id": "tiny", "object": "model", "created": 100,
                                                     "owned_by": "saf"}]


def test_server_sent_events_are_one_json_line_each():
    event = app.sse({"text": "a\nb"})
    assert event == 'data: {"text":"a\\nb"}\n\n' and event.count("\n") == 2
    assert app.SSE_DONE == "data: [DONE]\n\n"


# --- stop strings and streaming ------------------------------------------------------------------------------


def feed_all(stops, pieces):
    scanner = app.StopScanner(stops)
    emitted = [scanner.feed(piece) for piece in pieces]
    return emitted, scanner.flush(), scanner.stopped


def test_text_is_cut_at_the_first_stop_string():
    emitted, rest, stopped = feed_all(["\n\n", "END"], ["Hello", " wor", "ld\n", "\nmore"])
    assert "".join(emitted) + rest == "Hello world" and stopped


def test_a_possible_start_of_a_stop_string_is_held_back_then_released():
    emitted, rest, stopped = feed_all(["END"], ["abcE", "N", "x"])
    assert emitted == ["abc", "", "ENx"] and rest == "" and not stopped


def test_a_stop_string_split_across_pieces_is_found():
    emitted, rest, stopped = feed_all(["END"], ["abcE", "N", "Dtail"])
    assert "".join(emitted) == "abc" and rest == "" and stopped


def test_without_stop_strings_everything_passes():
    emitted, rest, stopped = feed_all([], ["a", "b"])
    assert emitted == ["a", "b"] and rest == "" and not stopped


def steps(*texts, finish="length", prompt=4):
    for index, text in enumerate(texts):
        yield text, finish if index == len(texts) - 1 else None, prompt, index + 1


def test_events_end_with_the_reason_and_the_counts():
    events = list(app.shaped_events(steps("a", "b", "c"), []))
    assert [e.text for e in events] == ["a", "b", "c"]
    assert (events[-1].finish_reason, events[-1].prompt_tokens, events[-1].completion_tokens) == ("length", 4, 3)
    assert all(e.finish_reason is None for e in events[:-1])


def test_a_stop_string_ends_the_events_early_with_stop():
    source = steps("Hello", " wor", "ld.", " More", " text")
    events = list(app.shaped_events(source, ["."]))
    assert "".join(e.text for e in events) == "Hello world"
    assert (events[-1].finish_reason, events[-1].completion_tokens) == ("stop", 3)
    assert next(source)[0] == " More"  # the generation was left where it stopped (the caller closes it)


def test_merged_events_keep_the_text_and_the_last_counts():
    event = app.merged([app.Event("a", None, 4, 1), app.Event("b", None, 4, 2), app.Event("", "stop", 4, 3)])
    assert (event.text, event.finish_reason, event.completion_tokens) == ("ab", "stop", 3)


# --- the engine on the tiny model, against mlx_lm.generate ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("mlx_lm")
    pytest.importorskip("tokenizers")
    from saf.serve.tiny_model import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


def greedy(max_tokens, stops=()):
    return app.Sampling(max_tokens, 0.0, 1.0, list(stops), None, False, False)


def test_greedy_text_equals_mlx_lm_generate(tiny):
    from mlx_lm import generate, load
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer = load(tiny)
    expected = generate(model, tokenizer, "The quick brown fox", max_tokens=24, sampler=make_sampler(0.0))
    engine = app.Engine(tiny)
    tokens = engine.completion_tokens("The quick brown fox")
    assert tokens == tokenizer.encode("The quick brown fox")
    events = list(app.shaped_events(engine.steps(tokens, greedy(24), lambda: False), []))
    assert "".join(e.text for e in events) == expected
    assert events[-1].prompt_tokens == len(tokens) and events[-1].completion_tokens == 24


def test_chat_tokens_follow_the_template(tiny):
    engine = app.Engine(tiny)
    tokens = engine.chat_tokens([{"role": "user", "content": "Hi"}])
    assert engine.tokenizer.decode(tokens) == "<s><|user|>\nHi</s>\n<|assistant|>\n"


def test_a_cancelled_generation_stops_at_the_next_token(tiny):
    engine = app.Engine(tiny)
    produced = list(engine.steps(engine.completion_tokens("Hello"), greedy(50), lambda: True))
    assert len(produced) == 1


def test_the_worker_runs_jobs_in_its_own_thread_one_at_a_time(tiny):
    worker = app.Worker(tiny)
    seen, finished = [], threading.Event()

    def job(engine):
        seen.append((threading.current_thread().name, type(engine).__name__))
        if len(seen) == 2:
            finished.set()

    worker.submit(job)
    worker.submit(job)
    assert finished.wait(10) and seen == [("saf-mlx", "Engine")] * 2 and worker.alive()


def test_a_model_that_does_not_load_fails_the_replica_by_path(tmp_path):
    pytest.importorskip("mlx_lm")
    with pytest.raises(RuntimeError, match=str(tmp_path)):
        app.Worker(str(tmp_path))
