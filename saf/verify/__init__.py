"""The verification: MLX jobs pinned to every node through Ray, versions, throughput and network.

- ``node/``: what runs on the nodes, one module per job (measure, netprobe, transfer, ring, census)
  and the driver that runs them all (``node/driver.py``), with the venv's Python (only ray, mlx
  and numpy there; nothing of saf): it observes every node and prints one JSON line;
- ``shipping.py``: how that package reaches a node (one inline program; the files for saf launch);
- ``fact.py``: the pyinfra fact that sends the driver inline and reads that line;
- ``judgement.py``: the verdicts on what was observed (plain Python, on the control machine);
- ``operation.py``: the pyinfra operation that judges, reports and fails the run when needed;
- ``report.py``: the table for people and the JSON files for tools;
- ``placement.py``: which node drives the verification and what it expects of the cluster.
"""
