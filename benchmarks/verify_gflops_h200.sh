#!/bin/sh
# The verification's throughput probe on an NVIDIA GPU with MLX's CUDA backend (run on the device
# machine, an H200, from the repository root): benchmarks/verify_gflops.py --here, with MLX 0.32.4
# and mlx-cuda-13 0.32.4 for CPython 3.12 unpacked under /tmp/site.
#
# The two wheels, unpacked and packed with `tar c mlx mlx_cuda_13.libs *.dist-info | xz -6`, are 75 MB,
# over one call's 64 MiB carry: `split -n 2` makes two halves, .devwhl/a/part and .devwhl/b/part
# (git-ignored). The first call only parks half a:   cp .devwhl/a/part /tmp/mlx-cuda.part-a
# (carry .devwhl/a); the second, within the machine's warm window, runs this script (carry .devwhl/b).
#
# libmlx.so finds CUDA's libraries through its RPATH ($ORIGIN/../../nvidia/...): /tmp/site/nvidia is
# linked to the image's own NVIDIA wheels (CUDA 13, beside its PyTorch).
set -eu
mkdir -p /tmp/site
cat /tmp/mlx-cuda.part-a .devwhl/b/part | xz -d | tar x -C /tmp/site
ln -sfn "$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])')" /tmp/site/nvidia
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/verify_gflops.py --here
