"""An operation that orders the nodes: it runs nothing, and pyinfra's plan puts it after every
operation the first role's nodes add before it and before every operation the others add after it."""

from __future__ import annotations

from pyinfra.api import operation


@operation(is_idempotent=True)
def role_barrier(first: str):
    """
    Nothing to run: one operation every node shares, between the ``first`` role's operations and
    the others' (see :func:`saf.service.in_role_order`).

    + first: the role whose operations come before it (for the run's output)
    """
    yield from ()
