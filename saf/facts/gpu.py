"""The node's GPU as the OS sees it: an Apple GPU with Metal (what MLX computes on on a Mac), or
an NVIDIA GPU (MLX's CUDA backend on Linux)."""

from __future__ import annotations

import re

from pyinfra.api import FactBase

from saf.facts.unexpected import UnexpectedOutput

APPLE_GPU_COMMAND = "system_profiler SPDisplaysDataType"


class AppleGPU(FactBase[dict | None]):
    """``{"model": "Apple M3 Ultra", "cores": 80, "metal": "Metal 3"}`` from ``system_profiler``;
    None when it lists no GPU. ``metal`` is None when the GPU has no Metal support.

    ``Metal Support: Metal 3`` (macOS 13 and later) was ``Metal Family: Supported, Metal GPUFamily
    Apple 7`` on macOS 12 and ``Metal: Supported, feature set ...`` before; all are read.
    """

    pure_read = True  # reads the hardware's description only: may be kept and asked ahead (saf/fact_cache.py)

    def requires_command(self) -> str:
        return "system_profiler"

    def command(self) -> str:
        return APPLE_GPU_COMMAND

    def process(self, output: list[str]) -> dict | None:
        fields: dict[str, str] = {}
        for line in output:
            key, colon, value = line.strip().partition(":")
            if colon and value.strip() and key not in fields:
                fields[key] = value.strip()
        if not any(line.strip() for line in output):
            return None
        if "Chipset Model" not in fields:
            raise UnexpectedOutput(APPLE_GPU_COMMAND, output)
        cores = re.match(r"\d+", fields.get("Total Number of Cores", ""))
        metal = fields.get("Metal Support") or fields.get("Metal Family") or fields.get("Metal")  # 10.14-10.15
        return {
            "model": fields["Chipset Model"],
            "cores": int(cores.group()) if cores else None,
            "metal": metal if metal and not metal.lower().startswith("not supported") else None,
        }


class NvidiaGPUs(FactBase[list]):
    """The NVIDIA GPUs ``nvidia-smi`` lists by name (empty without nvidia-smi or a GPU)."""

    pure_read = True  # reads the GPUs' names only: may be kept and asked ahead (saf/fact_cache.py)

    default = list

    def requires_command(self) -> str:
        return "nvidia-smi"

    def command(self) -> str:
        return "nvidia-smi --query-gpu=name --format=csv,noheader"

    def process(self, output: list[str]) -> list:
        return [line.strip() for line in output if line.strip()]
