"""A first MLX distributed program: every rank adds its number, everyone gets the sum.

    saf launch -- python examples/allsum.py

Each rank prints its rank, the group's size and the sum; all must agree. `saf launch` gives
each rank MLX_RANK and MLX_HOSTFILE (the ring on the cluster ips); `mx.distributed.init` reads them.
"""

import mlx.core as mx

group = mx.distributed.init(strict=True, backend="ring")
rank, size = group.rank(), group.size()
total = mx.distributed.all_sum(mx.array([float(rank + 1)]), group=group, stream=mx.cpu)
expected = size * (size + 1) / 2
print(f"rank {rank} of {size}: all_sum of 1..{size} = {total.item():g}", flush=True)
if total.item() != expected:
    raise SystemExit(f"rank {rank}: expected {expected:g}")
