"""Facts read once per host while the deploy is prepared, not once per question.

pyinfra 3 reads a fact afresh every time a task asks for it (it keeps no cache, because a fact
may change once operations run). While the deploy is *prepared* nothing runs on the nodes, so a
fact cannot change: there, the same question (fact, arguments) gets the answer it already got.
On a converged 3-node lab this took the same fact (the kernel, the home directory, the unit
files...) from 85 reads a host to about half, each an SSH round trip. Once operations execute,
every read goes to the node again, as pyinfra intends.
"""

from __future__ import annotations

import copy
from typing import Any

from pyinfra.api.host import Host
from pyinfra.api.state import StateStage


def cache_facts_while_preparing(host: Host) -> None:
    """Wrap ``host.get_fact`` so that, during the Prepare stage, a repeated question is answered from
    memory; a deep copy, so that a task that changes what it got cannot change the next answer."""
    ask = host.get_fact
    cache: dict[Any, Any] = {}

    def get_fact(fact_cls, *args, **kwargs):
        if host.state.current_stage != StateStage.Prepare:
            return ask(fact_cls, *args, **kwargs)
        try:
            key = (fact_cls, args, tuple(sorted(kwargs.items())))
            hash(key)
        except TypeError:  # an unhashable argument: ask the node
            return ask(fact_cls, *args, **kwargs)
        if key not in cache:
            cache[key] = ask(fact_cls, *args, **kwargs)
        return copy.deepcopy(cache[key])

    host.get_fact = get_fact
