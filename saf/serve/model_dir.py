"""What makes a directory an MLX model that mlx-lm loads, and the digest it is staged under.

Standard library only: the cluster file is checked on the control machine before any host is
contacted, where mlx may not be installed. The rules follow what ``mlx_lm.load`` (0.28) reads:
``config.json`` with a ``model_type``, weights in ``model*.safetensors`` (a sharded model's
``model.safetensors.index.json`` names its shards), and a Hugging Face tokenizer
(``tokenizer.json``, or ``tokenizer.model`` for SentencePiece, or ``vocab.json`` with
``merges.txt``) that ``transformers.AutoTokenizer`` reads, usually beside ``tokenizer_config.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

WEIGHTS_GLOB = "model*.safetensors"  # mlx_lm.utils.load_model: glob(model_path / "model*.safetensors")
SHARD_INDEX = "model.safetensors.index.json"
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"))
DIGEST_CHUNK = 1 << 20


def model_directory_problems(path: Path) -> list[str]:
    """Every reason ``path`` is not a model directory mlx-lm can load, each with its fix; [] when it is."""
    path = Path(path)
    if not path.exists():
        return [
            f"{path} does not exist: give the path of an MLX model directory (config.json, "
            "model*.safetensors and the tokenizer files)"
        ]
    if not path.is_dir():
        return [f"{path} is a file, not a directory: give the directory that holds config.json"]
    return [*_config_problems(path), *_weight_problems(path), *_tokenizer_problems(path)]


def _config_problems(path: Path) -> list[str]:
    config = path / "config.json"
    if not config.is_file():
        return [
            f"{path} has no config.json: an MLX model directory names its architecture there "
            "(convert a Hugging Face model with `mlx_lm.convert`)"
        ]
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return [f"{config} is not valid JSON ({error}): restore it from the model's source"]
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str) or not data["model_type"]:
        return [
            f'{config} has no model_type (such as "llama"): mlx-lm picks the model\'s code by it; '
            "restore the file from the model's source"
        ]
    return []


def _weight_problems(path: Path) -> list[str]:
    shards = sorted(p for p in path.glob(WEIGHTS_GLOB) if p.is_file())
    if not shards:
        other = sorted(p.name for p in path.glob("*") if p.suffix in (".safetensors", ".bin", ".gguf", ".pth"))
        seen = f" (found {', '.join(other)}: mlx-lm reads only model*.safetensors)" if other else ""
        return [
            f"{path} has no weights{seen}: mlx-lm loads model*.safetensors; "
            "convert the model with `mlx_lm.convert --hf-path <repo> --mlx-path <dir>`"
        ]
    empty = [p.name for p in shards if p.stat().st_size == 0]
    if empty:
        return [f"{path}: weight file(s) {', '.join(empty)} are empty: copy the model again"]
    return _shard_index_problems(path)


def _shard_index_problems(path: Path) -> list[str]:
    index = path / SHARD_INDEX
    if not index.is_file():
        return []
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        return [f"{index} is not a valid shard index ({error}): restore it from the model's source"]
    missing = sorted({name for name in weight_map.values() if not (path / name).is_file()})
    if missing:
        return [
            f"{path} lacks the weight shard(s) {', '.join(missing)} named in {SHARD_INDEX}: "
            "copy the whole model directory"
        ]
    return []


def _tokenizer_problems(path: Path) -> list[str]:
    if any(all((path / name).is_file() for name in names) for names in TOKENIZER_FILE_SETS):
        return _tokenizer_json_problems(path)
    wanted = " or ".join(" + ".join(names) for names in TOKENIZER_FILE_SETS)
    return [
        f"{path} has no tokenizer ({wanted}): copy the tokenizer files from the model's source "
        "into the directory (mlx_lm.convert does)"
    ]


def _tokenizer_json_problems(path: Path) -> list[str]:
    problems = []
    for name in ("tokenizer.json", "tokenizer_config.json"):
        file = path / name
        if file.is_file():
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as error:
                problems.append(f"{file} is not valid JSON ({error}): restore it from the model's source")
    return problems


def model_files(path: Path) -> list[Path]:
    """The regular files of the model directory, in a stable order (what is digested and staged)."""
    path = Path(path)
    return sorted(
        (p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))),
        key=lambda p: p.relative_to(path).as_posix(),
    )


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)  # .cache/, .git/, .DS_Store: not the model


def model_digest(path: Path) -> str:
    """sha256 over every file's relative path and content: the same model gives the same name on every node."""
    path = Path(path)
    total = hashlib.sha256()
    for file in model_files(path):
        total.update(file.relative_to(path).as_posix().encode() + b"\0")
        total.update(_file_sha256(file).encode() + b"\n")
    return total.hexdigest()


def _file_sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as stream:
        for chunk in iter(lambda: stream.read(DIGEST_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
