"""The model directory check and digest (saf/serve/model_dir.py), and the tiny model SAF makes offline
(saf/serve/tiny_model.py), loaded and run with mlx-lm for real where the ``serve`` extra is installed."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from saf.serve.model_dir import model_digest, model_directory_problems, model_files


def write_model_dir(path: Path) -> Path:
    """A directory with the files mlx-lm reads (contents not a model: the check reads names and JSON only)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (path / "tokenizer.json").write_text("{}")
    (path / "tokenizer_config.json").write_text("{}")
    return path


# --- the check --------------------------------------------------------------------------------------


def test_a_complete_directory_has_no_problems(tmp_path):
    assert model_directory_problems(write_model_dir(tmp_path / "m")) == []


def test_a_missing_path_is_named(tmp_path):
    [problem] = model_directory_problems(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in problem and "does not exist" in problem


def test_a_file_is_not_a_model_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    [problem] = model_directory_problems(tmp_path / "f")
    assert "is a file" in problem


def test_each_missing_part_is_its_own_problem(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    problems = model_directory_problems(path)
    assert len(problems) == 3
    assert "no config.json" in problems[0] and "no weights" in problems[1] and "no tokenizer" in problems[2]
    assert "mlx_lm.convert" in problems[1]  # the fix


@pytest.mark.parametrize("config, words", [
    ("{not json", "not valid JSON"),
    ("[]", "no model_type"),
    (json.dumps({"model_type": ""}), "no model_type"),
    (json.dumps({"hidden_size": 64}), "no model_type"),
])
def test_a_bad_config_is_refused(tmp_path, config, words):
    path = write_model_dir(tmp_path / "m")
    (path / "config.json").write_text(config)
    [problem] = model_directory_problems(path)
    assert words in problem and "config.json" in problem


def test_weights_mlx_lm_does_not_read_are_named(tmp_path):
    path = write_model_dir(tmp_path / "m")
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"x")
    [problem] = model_directory_problems(path)
    assert "pytorch_model.bin" in problem and "model*.safetensors" in problem


def test_empty_weights_are_refused(tmp_path):
    path = write_model_dir(tmp_path / "m")
    (path / "model.safetensors").write_bytes(b"")
    [problem] = model_directory_problems(path)
    assert "model.safetensors" in problem and "empty" in problem


def test_a_shard_named_in_the_index_must_be_there(tmp_path):
    path = write_model_dir(tmp_path / "m")
    (path / "model.safetensors").rename(path / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    [problem] = model_directory_problems(path)
    assert "model-00002-of-00002.safetensors" in problem and "model-00001" not in problem


@pytest.mark.parametrize("files", [("tokenizer.model",), ("vocab.json", "merges.txt")])
def test_other_tokenizer_forms_are_accepted(tmp_path, files):
    path = write_model_dir(tmp_path / "m")
    (path / "tokenizer.json").unlink()
    for name in files:
        (path / name).write_text("{}")
    assert model_directory_problems(path) == []


def test_half_a_tokenizer_is_no_tokenizer(tmp_path):
    path = write_model_dir(tmp_path / "m")
    (path / "tokenizer.json").unlink()
    (path / "vocab.json").write_text("{}")  # merges.txt missing
    [problem] = model_directory_problems(path)
    assert "no tokenizer" in problem


def test_a_broken_tokenizer_json_is_refused(tmp_path):
    path = write_model_dir(tmp_path / "m")
    (path / "tokenizer.json").write_text("{")
    [problem] = model_directory_problems(path)
    assert "tokenizer.json" in problem and "not valid JSON" in problem


# --- the digest ---------------------------------------------------------------------------------------


def test_the_digest_follows_content_and_names_not_place(tmp_path):
    first = write_model_dir(tmp_path / "a")
    second = tmp_path / "b"
    shutil.copytree(first, second)
    assert model_digest(first) == model_digest(second)
    (second / "config.json").write_text(json.dumps({"model_type": "llama", "x": 1}))
    assert model_digest(first) != model_digest(second)
    third = tmp_path / "c"
    shutil.copytree(first, third)
    (third / "tokenizer.json").rename(third / "tokenizer2.json")
    assert model_digest(first) != model_digest(third)


def test_hidden_files_are_not_the_model(tmp_path):
    path = write_model_dir(tmp_path / "a")
    before = model_digest(path)
    (path / ".DS_Store").write_bytes(b"finder")
    (path / ".cache").mkdir()
    (path / ".cache" / "x").write_text("y")
    assert model_digest(path) == before
    assert [p.name for p in model_files(path)] == sorted(p.name for p in path.iterdir() if p.is_file()
                                                         and not p.name.startswith("."))


# --- the tiny model, for real ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    pytest.importorskip("mlx_lm")
    pytest.importorskip("tokenizers")
    from saf.serve.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_the_tiny_model_is_a_model_directory(tiny):
    assert model_directory_problems(tiny) == []
    config = json.loads((tiny / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("llama", 2, 64)


def test_the_tiny_model_is_made_the_same_from_the_same_seed(tiny, tmp_path):
    from saf.serve.tiny_model import make_tiny_model

    assert model_digest(make_tiny_model(tmp_path / "again")) == model_digest(tiny)
    assert model_digest(make_tiny_model(tmp_path / "other", seed=1)) != model_digest(tiny)


def test_mlx_lm_loads_and_generates_it_greedily_in_well_under_a_second(tiny):
    from mlx_lm import generate, load
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer = load(str(tiny))
    generate(model, tokenizer, "warm up", max_tokens=2, sampler=make_sampler(0.0))
    start = time.perf_counter()
    text = generate(model, tokenizer, "The quick brown fox", max_tokens=32, sampler=make_sampler(0.0))
    elapsed = time.perf_counter() - start
    assert text and elapsed < 1.0, (text, elapsed)
    model2, tokenizer2 = load(str(tiny))
    assert generate(model2, tokenizer2, "The quick brown fox", max_tokens=32, sampler=make_sampler(0.0)) == text


def test_transformers_reads_its_tokenizer_and_chat_template(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    text = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "What is the capital of France?"}],
                                         add_generation_prompt=True, tokenize=False)
    assert text == "<s><|system|>\nBe brief.</s>\n<|user|>\nWhat is the capital of France?</s>\n<|assistant|>\n"
    ids = tokenizer("Paris is the capital of France.").input_ids
    assert tokenizer.decode(ids) == "Paris is the capital of France."
    assert tokenizer.eos_token == "</s>" and tokenizer.convert_tokens_to_ids("</s>") == \
        json.loads((tiny / "config.json").read_text())["eos_token_id"]


def test_the_default_sizes_are_the_tiny_config_and_bigger_ones_keep_its_shape():
    from saf.serve.tiny_model import MODEL_CONFIG, scaled

    assert {key: MODEL_CONFIG[key] for key in scaled(64, 2)} == scaled(64, 2)
    big = scaled(1024, 8)
    assert (big["num_attention_heads"], big["num_key_value_heads"], big["intermediate_size"]) == (64, 32, 2048)
    for hidden, layers in ((100, 2), (16, 2), (64, 0)):
        with pytest.raises(ValueError, match="hidden_size must be a multiple of 32"):
            scaled(hidden, layers)


def test_a_bigger_model_of_the_same_kind_loads(tmp_path):
    pytest.importorskip("mlx_lm")
    from mlx_lm import load

    from saf.serve.tiny_model import make_tiny_model

    path = make_tiny_model(tmp_path / "bigger", hidden_size=128, layers=3)
    model, _ = load(str(path))
    assert model_directory_problems(path) == [] and len(model.layers) == 3


def test_its_greedy_text_varies_reads_as_ascii_and_runs_to_max_tokens(tiny):
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer = load(str(tiny))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True)
    responses = list(stream_generate(model, tokenizer, prompt, max_tokens=40, sampler=make_sampler(0.0)))
    text = "".join(r.text for r in responses)
    assert responses[-1].finish_reason == "length" and responses[-1].generation_tokens == 40
    assert text.isascii() and all(c.isprintable() or c in " \n" for c in text), text
    assert len(set(r.token for r in responses)) >= 5, text  # not one token over and over
