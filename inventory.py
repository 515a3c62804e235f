"""pyinfra inventory: the nodes of the cluster file as the groups `head` and `workers`.

The cluster file is cluster.yaml beside this file, or the path in $SAF_CLUSTER; it is validated
(with the settings of group_data/all.py it overrides) before any host is contacted. A run that may
change nodes then takes the cluster's deploy lock on the head (saf/lock.py), or stops naming the
run that holds it.
"""

from pathlib import Path

from saf.inventory import load_groups_or_exit
from saf.lock import hold_lock_or_exit

_groups = load_groups_or_exit(Path(__file__).resolve().parent)
head = _groups["head"]
workers = _groups["workers"]
_lock = hold_lock_or_exit(Path(__file__).resolve().parent)
