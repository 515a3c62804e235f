"""pyinfra inventory: the nodes of the cluster file as the groups `head` and `workers`.

The cluster file is cluster.yaml beside this file, or the path in $SAF_CLUSTER; it is validated
(with the settings of group_data/all.py it overrides) before any host is contacted.
"""

from pathlib import Path

from saf.inventory import load_groups_or_exit

_groups = load_groups_or_exit(Path(__file__).resolve().parent)
head = _groups["head"]
workers = _groups["workers"]
