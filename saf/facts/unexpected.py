"""What a fact does with output it does not understand: say so by name, never guess.

Raising :class:`UnexpectedOutput` from ``process()`` is pyinfra's own way (it is a
``FactProcessError``): pyinfra logs the message, without a traceback, and fails that host, so
the deploy stops there; ``saf doctor`` shows it as the node's problem.
"""

from __future__ import annotations

from pyinfra.api.exceptions import FactProcessError

SHOWN_LINES = 3


class UnexpectedOutput(FactProcessError):
    """``command`` printed something SAF cannot read; the message quotes its first lines."""

    def __init__(self, command: str, output: list[str]):
        self.command = command
        self.output = output
        shown = " | ".join(line.strip() for line in output[:SHOWN_LINES] if line.strip()) or "(nothing)"
        super().__init__(
            f"SAF does not understand the output of `{command}`: {shown}. Nothing was guessed; please "
            "report this output (it is new to SAF) and re-run when SAF reads it."
        )
