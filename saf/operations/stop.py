"""Operations that steer the run itself rather than change a host."""

from __future__ import annotations

from pyinfra import logger
from pyinfra.api import FunctionCommand, operation


def fail_host(state, host, reason: str) -> bool:
    host.log_styled(reason, fg="red", log_func=logger.error)
    return False  # a False status fails the host: pyinfra runs nothing more on it


@operation(is_idempotent=False)
def stop_host(reason: str):
    """
    Stop this host here with ``reason`` (no traceback); other hosts carry on.

    + reason: what is wrong and how to fix it, shown as the host's error
    """
    yield FunctionCommand(fail_host, (reason,), {})
