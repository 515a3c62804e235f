"""A real, tiny MLX LLM made offline: mlx-lm's llama, random weights, a byte-level BPE tokenizer.

    python -m saf.serve.tiny_model DIR [--seed 0]

No model hub is reachable from the lab, so SAF makes its own model: the architecture is mlx-lm's
own ``llama`` (``mlx_lm.models.llama``) built from a small config, with weights drawn from a fixed
seed, saved the way ``mlx_lm.convert`` saves (``config.json``, ``model.safetensors``); the
tokenizer is a byte-level BPE trained with ``tokenizers`` on a short built-in text, saved as
``tokenizer.json`` and ``tokenizer_config.json`` (with a chat template) that both
``mlx_lm.load`` and ``transformers.AutoTokenizer`` read. It talks nonsense, deterministically:
the same seed gives the same bytes, so a re-made model has the same digest and is not staged again.
Its output layer is not tied to the embeddings and never picks special or unprintable tokens, so
its greedy text varies (a fair check that two nodes computed the same) and reads as ASCII; it
never says EOS, so an answer always runs to ``max_tokens`` (``finish_reason`` "length").

Needs mlx, mlx-lm and tokenizers (the ``serve`` extra).
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from pathlib import Path

BOS, EOS = "<s>", "</s>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (BOS, EOS, *ROLE_TOKENS)
VOCAB_SIZE = 512  # 256 byte symbols, the special tokens, the rest merges
# One turn per message, the role's token first, ended by EOS; the assistant's turn is opened for generation.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
MODEL_CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
    "vocab_size": VOCAB_SIZE,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,  # tied, a random model repeats its last input token forever
}
TRAINING_TEXT = """\
Studio Air Fabric turns a few Macs into one verified Ray and MLX cluster.
The head runs the control store, every node runs a raylet, and the verification proves the whole.
A model is declared once, staged on every serving node, and answered through one endpoint.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
What is the capital of France? Paris is the capital of France.
How many nodes serve the model? Every node that the cluster file names.
Hello! How can I help you today? Tell me about distributed inference on Apple silicon.
"""


def train_tokenizer(vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE (GPT-2 style) trained on TRAINING_TEXT, with SAF's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_TEXT.splitlines(), trainer=trainer)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def tokenizer_config(tokenizer) -> dict:
    """tokenizer_config.json: what AutoTokenizer needs besides tokenizer.json (class, special tokens, template)."""
    decoder = {
        str(tokenizer.token_to_id(token)): {
            "content": token,
            "special": True,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "single_word": False,
        }
        for token in SPECIAL_TOKENS
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": EOS,
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_CONFIG["max_position_embeddings"],
        "chat_template": CHAT_TEMPLATE,
    }


def scaled(hidden_size: int, layers: int) -> dict:
    """The config's sizes for ``hidden_size`` and ``layers`` (head size 16, kv heads half the heads, MLP 2x)."""
    if hidden_size < 32 or hidden_size % 32 or layers < 1:
        raise ValueError(f"hidden_size must be a multiple of 32 (got {hidden_size}), layers at least 1 (got {layers})")
    heads = hidden_size // 16
    return {
        "hidden_size": hidden_size,
        "num_hidden_layers": layers,
        "intermediate_size": 2 * hidden_size,
        "num_attention_heads": heads,
        "num_key_value_heads": heads // 2,
    }


def build_model(config: dict, seed: int):
    """mlx-lm's llama from ``config``, its weights drawn from ``seed`` (MLX's own initialisers)."""
    import mlx.core as mx
    from mlx_lm.models import llama

    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    return model


def silenced_tokens(tokenizer) -> list[int]:
    """Tokens the model never says: the special ones and those that decode to anything but printable
    ASCII (lone bytes of UTF-8 sequences would read as U+FFFD, control bytes as noise)."""
    printable = set(string.printable) - set("\t\r\x0b\x0c")
    return [
        index
        for index in range(tokenizer.get_vocab_size())
        if tokenizer.id_to_token(index) in SPECIAL_TOKENS
        or not set(tokenizer.decode([index])) <= printable
        or not tokenizer.decode([index])
    ]


def silence(model, token_ids: list[int]) -> None:
    """Zero the output rows of ``token_ids``: their logit is 0 while the best of the others is well above."""
    import mlx.core as mx

    weight = model.lm_head.weight
    weight[mx.array(token_ids)] = 0.0
    model.lm_head.weight = weight
    mx.eval(model.parameters())


def make_tiny_model(directory: Path, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """Write the tiny model into ``directory`` (created; files of the same name are replaced) and return it.

    ``hidden_size`` and ``layers`` make a bigger one of the same kind, e.g. for benchmarks that need
    a token to cost what a real model's does (the heads and the MLP scale with the hidden size).
    """
    from mlx_lm.utils import save_config, save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(tokenizer), indent=2) + "\n")
    config = {
        **MODEL_CONFIG,
        **scaled(hidden_size, layers),
        "bos_token_id": tokenizer.token_to_id(BOS),
        "eos_token_id": tokenizer.token_to_id(EOS),
    }
    model = build_model(config, seed)
    silence(model, silenced_tokens(tokenizer))
    save_model(directory, model)
    save_config(dict(config), config_path=directory / "config.json")
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saf.serve.tiny_model", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="where to write the model (created)")
    parser.add_argument("--seed", type=int, default=0, help="the weights' random seed (default 0)")
    parser.add_argument("--hidden-size", type=int, default=MODEL_CONFIG["hidden_size"], help="(a multiple of 32)")
    parser.add_argument("--layers", type=int, default=MODEL_CONFIG["num_hidden_layers"])
    args = parser.parse_args(argv)
    from saf.serve.model_dir import model_digest

    try:
        path = make_tiny_model(args.directory, args.seed, args.hidden_size, args.layers)
    except ValueError as error:
        parser.error(str(error))
    print(
        f"{path}: tiny llama ({args.layers} layers, hidden {args.hidden_size}, vocab {VOCAB_SIZE}), "
        f"digest {model_digest(path)[:16]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
