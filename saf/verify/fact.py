"""The verification as a fact: a read-only look at the whole cluster, from one of its nodes.

Reading it runs the verification driver (``node/driver.py`` with the node-side package it runs,
sent inline with ``python -c`` by ``shipping.py``) with the venv's Python; nothing on the node
changes, which is why a converged deploy still reports zero changes. The fact is what the driver
observed; ``judgement.py`` judges it.
"""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase, StringCommand
from pyinfra.api.command import QuoteString

from saf.verify.shipping import driver_program

DRIVER_PROGRAM = driver_program()
MARKER = "SAF-VERIFY "


class ClusterVerification(FactBase[dict]):
    """What the verification driver (node/driver.py) observed, as a dict: ``nodes`` and its own ``problems``."""

    @staticmethod
    def default() -> dict:
        return {"nodes": [], "problems": ["the verification printed nothing (is the venv there?)"]}

    def command(self, python: str, address: str, expect: str, timeout: int, environment: str = "") -> StringCommand:
        # environment: ``KEY=value`` shell words for the driver, e.g. RAY_AUTH_TOKEN_PATH (a path, not the token)
        env = ["env", *(QuoteString(word) for word in shlex.split(environment))] if environment else []
        return StringCommand(
            *env,
            QuoteString(python),
            "-c",
            QuoteString(DRIVER_PROGRAM),
            "--address",
            QuoteString(address),
            "--expect",
            QuoteString(expect),
            "--timeout",
            str(timeout),
            "2>&1 || true",
        )

    def process(self, output: list[str]) -> dict:
        for line in output:
            if line.startswith(MARKER):
                return json.loads(line[len(MARKER) :])
        tail = " | ".join(line.strip() for line in output[-5:])
        return {"nodes": [], "problems": [f"the verification printed no report: {tail[:800]}"]}
