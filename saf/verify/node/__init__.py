"""The verification's node-side programs: one module per job, run on cluster nodes with the venv's Python.

- ``scheduling``: where Ray runs a task (a hard affinity to one node) and which nodes Ray holds alive;
- ``measure``: the device MLX computes on, MLX's correctness and matmul throughput, probed one node at a time;
- ``netprobe``: the UDP path check (don't-fragment datagrams filling an MTU frame, to every peer's echo);
- ``transfer``: the head's object to every node, TCP throughput and the link speed;
- ``ring``: MLX's ring backend (the hostfile, the ring ports' reach, one rank of the collective);
- ``census``: what each node's Ray looks like (processes, listeners), read raw for the control side;
- ``agent``: the one actor each node keeps for the driver (UDP echo, TCP sink, MLX probe and rank);
- ``driver``: the verification driver, which runs the jobs above and prints one JSON line;
- ``system``: the little each job asks of the OS (a command's output, which OS this is).

Only the standard library at import time (ray, mlx and numpy inside the functions that need them),
and nothing of saf: the node has no SAF installed. The modules import each other relatively, at
module level only, so the package runs under any name: ``saf.verify.node`` here, the name
saf/verify/shipping.py gives it on a node. Ray pickles the actors and tasks of this package by
value there (the driver registers it), since no worker can import it.
"""
