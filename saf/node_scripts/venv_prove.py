"""Prove a freshly built venv before it becomes ``current``: Ray and MLX import, and the
Python, Ray and MLX versions are the pinned ones.

Run on the node by the new venv's own Python::

    python venv_prove.py python=3.9.23 ray=2.49.1 mlx=0.29.1

It prints the versions it found, and exits non-zero naming every version that differs from its
pin (a failed import fails it too, with Python's own traceback).
"""

import importlib.metadata as md  # noqa: I001  (`import ray, mlx.core` stays one line: plan tests find the proof by it)
import platform
import sys

import ray, mlx.core  # noqa: E401, F401  (importing both is part of the proof)


def found_versions() -> dict:
    return {"python": platform.python_version(), "ray": ray.__version__, "mlx": md.version("mlx")}


def main(pins: list) -> "int | str":
    """0 when every ``name=version`` pin matches, else the message to exit with."""
    want = dict(arg.split("=", 1) for arg in pins)
    have = found_versions()
    print(f"python {have['python']} ray {have['ray']} mlx {have['mlx']}")
    wrong = [f"{k} {have[k]} (pinned {v})" for k, v in want.items() if have[k] != v]
    return "SAF: the new venv has " + ", ".join(wrong) if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
