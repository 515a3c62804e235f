"""Values written into files of another language, quoted for it: systemd units and launchd plists.

A value that reaches a unit file or a plist comes from the cluster file or from a node's facts; the
spec refuses hostile ones first, and this module is the second line: whatever gets past it, the
rendered file keeps its shape (a unit has exactly its lines and keys, a plist exactly its keys).

Units (systemd.syntax(7), systemd.exec(5)):

- ``systemd_word``: one ``ExecStart=`` argument; unless it is plain (letters, digits, ``_./:=@+,-``),
  in double quotes (a value with a space stays one argument), ``\\`` and ``"`` escaped, control
  characters written as C escapes, ``%`` doubled (systemd expands specifiers) and ``$`` written
  ``$$`` (systemd expands variables in Exec lines). A lone ``;`` (which separates commands) is refused.
- ``systemd_environment``: an ``Environment=`` assignment, ``"KEY=value"`` quoted the same way
  (no ``$`` there: Environment= does not expand variables); the key must be a variable name.
- ``systemd_value``: a value written bare (``User=``, ``WorkingDirectory=``, ``Description=``):
  ``%`` doubled; a control character (a newline would start a new line of the unit) is refused.

The filters are registered once, by :class:`SystemdFilters`, a Jinja2 extension: a template that
uses them is rendered with ``jinja_env_kwargs=unit_template_env()`` (pyinfra's ``files.template``).
Plists need no extension: their templates escape every value with Jinja2's ``| e``.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension
from pyinfra.api.exceptions import PyinfraError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_C_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
# a word of only these is written bare (no quotes, nothing systemd expands): units of ordinary
# values render exactly as before quoting was added, so an upgrade does not restart anyone's Ray
_BARE = re.compile(r"^[A-Za-z0-9_./:=@+,-]+$")


class UnsafeValueError(PyinfraError):
    """A value cannot be written into a file of another language without changing its shape.

    A PyinfraError: raised while the deploy is prepared, it stops the run before any host changes,
    and pyinfra shows the message without a traceback.
    """


def _refuse(value: str, where: str, why: str) -> UnsafeValueError:
    return UnsafeValueError(
        f"SAF refuses to write {value!r} into a systemd unit's {where}: {why}. The value comes from the cluster "
        "file (a path, user name or address in its settings or nodes) or from a node's facts: fix it there "
        "(paths and names of letters, digits, '.', '_', '-' and '/'), then re-run."
    )


def _quoted(value: str, dollar: bool) -> str:
    escaped = []
    for char in str(value):
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif char in _C_ESCAPES:
            escaped.append(_C_ESCAPES[char])
        elif _CONTROL.match(char):
            escaped.append(f"\\x{ord(char):02x}")
        elif char == "%":
            escaped.append("%%")
        elif char == "$" and dollar:
            escaped.append("$$")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def systemd_word(value: Any) -> str:
    """One ``ExecStart=`` argument: bare when it holds only plain characters, else double-quoted and
    escaped, so it stays one argument whatever it holds."""
    text = str(value)
    if text.strip() == ";":
        raise _refuse(text, "ExecStart= line", "a lone ';' starts another command there")
    return text if _BARE.match(text) else _quoted(text, dollar=True)


def systemd_words(values: Any) -> str:
    """An Exec line: the program, an absolute path (a first word starting with ``+``, ``-``, ``@``, ``:``
    or ``!`` would be read as a prefix: ``+`` runs it as root), then its arguments, each quoted by
    :func:`systemd_word`, joined by spaces."""
    words = [str(value) for value in values]
    if not words or not words[0].startswith("/"):
        raise _refuse(words[0] if words else "", "Exec line", "the program it runs must be an absolute path")
    return " ".join(systemd_word(word) for word in words)


def systemd_environment(pair: Any) -> str:
    """``"KEY=value"`` for an ``Environment=`` line (from a ``(key, value)`` pair)."""
    key, value = pair
    if not _ENV_KEY.match(str(key)):
        raise _refuse(str(key), "Environment= line", "an environment variable's name is letters, digits and '_'")
    assignment = f"{key}={value}"
    return assignment if _BARE.match(str(value) or "-") else _quoted(assignment, dollar=False)


def systemd_value(value: Any, where: str = "setting") -> str:
    """A value written bare after ``Key=``: ``%`` doubled; a control character refused (a newline would
    start a line of its own in the unit)."""
    text = str(value)
    if _CONTROL.search(text):
        raise _refuse(text, f"{where}=", "it holds a newline or another control character")
    return text.replace("%", "%%")


class SystemdFilters(Extension):
    """The filters ``systemd_word``, ``systemd_words``, ``systemd_environment`` and ``systemd_value``."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(
            systemd_word=systemd_word,
            systemd_words=systemd_words,
            systemd_environment=systemd_environment,
            systemd_value=systemd_value,
        )


def unit_template_env() -> dict[str, Any]:
    """``jinja_env_kwargs`` for ``files.template`` when the template is a systemd unit (a new dict each
    time: pyinfra pops from it)."""
    return {"extensions": [SystemdFilters]}
