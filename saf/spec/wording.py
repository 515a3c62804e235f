"""How the cluster file's problems are worded: :class:`ClusterFileError` and pydantic's errors in words.

Every problem is one line that names where it is (``node 'beta' (nodes[1]), key ip`` or
``key settings.mtu``) and what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from saf.spec.schema import NodeSpec

# pydantic error types of a value of the wrong type, and what the value must be instead
EXPECTED_TYPE = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "bool_type": "true or false",
    "float_type": "a number",
    "float_parsing": "a number",
    "list_type": "a list",
    "dict_type": "a mapping of key: value",
    "model_type": "a mapping of key: value",
}


class ClusterFileError(Exception):
    """A cluster file or setting that cannot be used; the message says where and how to fix it."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        head = f"Cannot use the cluster file {self.path}:"
        if len(self.problems) == 1:
            return f"{head} {self.problems[0]}"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def node_label(index: int, name: Any) -> str:
    """``node 'beta' (nodes[1])``, or ``nodes[1]`` when the entry has no usable name."""
    return f"node {name!r} (nodes[{index}])" if isinstance(name, str) and name else f"nodes[{index}]"


def describe_location(loc: tuple[Any, ...], raw: Any) -> str:
    """Turn a pydantic error location into words: ``node 'beta' (nodes[1]), key ip``."""
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        index = loc[1]
        entries = raw.get("nodes") if isinstance(raw, dict) else None
        entry = entries[index] if isinstance(entries, list) and index < len(entries) else None
        where = node_label(index, entry.get("name") if isinstance(entry, dict) else None)
        rest = [str(part) for part in loc[2:] if not str(part).startswith("function-after")]
        return f"{where}, key {'.'.join(rest)}" if rest else where
    return "key " + ".".join(str(part) for part in loc) if loc else "the file"


def describe_error(error: dict[str, Any]) -> str:
    """What is wrong with the value and what it must be instead."""
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"is not a known key; check its spelling ({known_keys_hint(error['loc'])})"
    if kind == "missing":
        return "is required but missing; add it"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"is {value!r}; it must be one of {expected}{_unquoted_word_hint(value)}"
    if kind in EXPECTED_TYPE:
        hint = ' (quote versions and names: python_version: "3.9.23")' if kind == "string_type" else ""
        return f"is {value!r}; it must be {EXPECTED_TYPE[kind]}{hint}"
    if kind == "greater_than_equal":
        return f"is {value!r}; it must be at least {error['ctx']['ge']}"
    if kind == "greater_than":
        return f"is {value!r}; it must be more than {error['ctx']['gt']}"
    if kind == "less_than_equal":
        return f"is {value!r}; it must be at most {error['ctx']['le']}"
    if kind == "too_short":
        return "is empty; list at least one node"
    return error["msg"].removeprefix("Value error, ")


def _unquoted_word_hint(value: Any) -> str:
    # YAML reads an unquoted on/off/yes/no as a boolean: `ray_auth: off` arrives as False
    if isinstance(value, bool):
        return ' (YAML reads an unquoted off, no, on or yes as true/false: quote the word, like ray_auth: "off")'
    return ""


def known_keys_hint(loc: tuple[Any, ...]) -> str:
    if loc and loc[0] == "nodes":
        return "node keys: " + ", ".join(NodeSpec.model_fields)
    if loc and loc[0] == "settings":
        return "settings are listed in group_data/all.py"
    return "top-level keys: nodes, settings, and x-<anything> to hold YAML anchors"


def format_errors(errors: Iterable[dict[str, Any]], raw: Any, prefix: tuple[Any, ...] = ()) -> list[str]:
    """pydantic's errors as problem lines, located in the file as written (``raw``)."""
    problems = []
    for error in errors:
        loc = prefix + tuple(error["loc"])
        problems.append(f"{describe_location(loc, raw)}: {describe_error({**error, 'loc': loc})}")
    return problems
