"""A launchd job definition that replaces the installed one only once ``plutil -lint`` accepts it.

pyinfra's ``files.template`` writes the destination first: a plist launchd cannot read would be in
place (and loaded at the next boot) before any check. This operation renders the template the same
way, uploads it beside the installed file (``<dest>.saf-new``: the same directory, so the final
``mv`` is atomic), lints it there, gives it its owner and mode, and only then moves it over the
old one. A plist that fails the lint is removed and the old one stays.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Mapping
from io import StringIO
from typing import Any

from pyinfra import host, state
from pyinfra.api import FileUploadCommand, operation
from pyinfra.api.util import get_template
from pyinfra.facts.files import Directory, File, Sha1File

STAGED_SUFFIX = ".saf-new"


def render(src: str, context: dict) -> str:
    """The template rendered as ``files.template`` renders it (relative to the deploy's directory)."""
    path = os.path.join(state.cwd, src) if state.cwd else src
    return get_template(path).render({"host": host, "state": state, "inventory": state.inventory, **context})


def _attribute_commands(
    path: str, user: str | None, group: str | None, mode: str, found: Mapping[str, Any] | None
) -> list[str]:
    found = found or {}
    commands = []
    if user and (found.get("user") != user or (group and found.get("group") != group)):
        commands.append(f"chown {user}{':' + group if group else ''} {shlex.quote(path)}")
    if str(found.get("mode")) != mode.lstrip("0"):
        commands.append(f"chmod {mode} {shlex.quote(path)}")
    return commands


@operation()
def linted_plist(src: str, dest: str, user: str | None = None, group: str | None = None, mode: str = "644", **context):
    """
    Install a plist rendered from the template ``src`` at ``dest``, checked by ``plutil -lint`` first.

    + src: the Jinja2 template, relative to the deploy's directory
    + dest: where launchd reads it (/Library/LaunchDaemons/<label>.plist, ~/Library/LaunchAgents/...)
    + user, group, mode: its owner and mode (root:wheel 644 for a LaunchDaemon)
    + context: the template's variables
    """
    content = render(src, context)
    installed = host.get_fact(File, path=dest)
    if installed and host.get_fact(Sha1File, path=dest) == hashlib.sha1(content.encode()).hexdigest():
        fixes = _attribute_commands(dest, user, group, mode, installed)
        if not fixes:
            host.noop(f"{dest} is up to date")
        yield from fixes
        return
    staged = f"{dest}{STAGED_SUFFIX}"
    directory = os.path.dirname(dest)
    if not host.get_fact(Directory, path=directory):  # ~/Library/LaunchAgents of a user who never had one
        yield f"mkdir -p {shlex.quote(directory)}"
    yield FileUploadCommand(StringIO(content), staged)
    yield f"plutil -lint {shlex.quote(staged)} || {{ rm -f {shlex.quote(staged)}; exit 1; }}"
    yield from _attribute_commands(staged, user, group, mode, None)
    yield f"mv {shlex.quote(staged)} {shlex.quote(dest)}"
