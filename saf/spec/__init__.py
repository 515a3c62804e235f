"""The cluster spec: the cluster file and the merged settings, loaded and validated.

The cluster file (``cluster.yaml`` beside ``inventory.py``, or the path in ``SAF_CLUSTER``) is the
only file a user writes: the node list and optional overrides of the defaults in
``group_data/all.py``. Everything is validated here, before any host is contacted; every problem
becomes one line of a :class:`ClusterFileError` that names the file, the node or key, and the fix.

One module per job:

- :mod:`saf.spec.schema`: what a node and the settings may be (pydantic models);
- :mod:`saf.spec.values`: values that reach another language (user names, scope ids, paths, URLs) and
  the folders SAF must not own;
- :mod:`saf.spec.pins`: which Python the Ray and MLX pins support (a small table from PyPI's wheels);
- :mod:`saf.spec.files`: where the cluster file is, and why a file cannot be used;
- :mod:`saf.spec.yaml_loader`: YAML as people write it (anchors, merge keys), nothing more;
- :mod:`saf.spec.wording`: every problem in words that name the place and the fix;
- :mod:`saf.spec.loading`: all of it together, plus the rules across nodes.
"""

from saf.spec.files import CLUSTER_ENV, DEFAULT_CLUSTER_FILE, cluster_file_path
from saf.spec.loading import GROUP_DATA_ALL, load_cluster, load_defaults
from saf.spec.schema import Cluster, ClusterFile, NodeSpec, Settings
from saf.spec.wording import ClusterFileError

__all__ = [
    "CLUSTER_ENV",
    "DEFAULT_CLUSTER_FILE",
    "GROUP_DATA_ALL",
    "Cluster",
    "ClusterFile",
    "ClusterFileError",
    "NodeSpec",
    "Settings",
    "cluster_file_path",
    "load_cluster",
    "load_defaults",
]
