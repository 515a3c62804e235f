"""A wall-clock bound for the verification's unit tests: a change that blocks (a socket without a
timeout, a wait loop that never ends) fails the test instead of hanging the run."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

TEST_LIMIT_S = 20


class OutOfTime(BaseException):
    """Not an OSError or an Exception: code under test that catches those cannot swallow it."""


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    def out_of_time(signum, frame):
        raise OutOfTime(f"the test ran past {TEST_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, out_of_time)
    signal.setitimer(signal.ITIMER_REAL, TEST_LIMIT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
