"""The verification: MLX jobs pinned to every node through Ray, versions, throughput and network.

``job.py`` runs on a cluster node with the venv's Python (only ray, mlx and numpy there);
``report.py`` turns its JSON into the table and files on the control machine.
"""
