"""Serving a model from the cluster (issue 25): the parts that run without a cluster.

- ``model_dir``: what makes a directory an MLX model mlx-lm can load (checked before any host is
  contacted) and its content digest (the name it is staged under on the nodes).
- ``tiny_model``: a real, tiny MLX LLM made offline (mlx-lm's llama classes, random weights, a
  ``tokenizers`` byte-level BPE with a chat template), for the lab and the tests.

The serving program itself runs on the head and is sent there like the verification driver:
``saf/node_scripts/serve_app.py``.
"""
