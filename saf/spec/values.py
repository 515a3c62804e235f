"""Values that reach another language: user names, scope ids, paths and URLs, refused unless plain.

A setting ends up in a systemd unit, a launchd plist, a shell command, an ssh argv, an nft or pf
rule. Rather than trust every renderer to quote it, the cluster file may only hold values that
mean the same in all of them: a user name of POSIX's portable form, an interface name as an IPv6
scope id, paths of letters, digits and ``. _ - /``, and https URLs. A path setting must also name a
folder of SAF's own: never a system folder, a home directory, a personal folder in it (``~/.ssh``,
``~/Documents``, ...) or a parent of one, since SAF prunes and tears down what it finds there.
Each check returns why a value is refused (the end of a sentence, with the fix), or None.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
SCOPE_ID = re.compile(r"[A-Za-z0-9_.-]{1,15}")
PATH_CHARACTER = re.compile(r"[A-Za-z0-9._/-]")
PATH_CHARACTERS = "ASCII letters, digits, '.', '_', '-' and '/' (and a leading ~/ for the home directory)"
HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?")
FILE_URL = "file://"
PLAIN_SCHEMES = ("http://", "git://")  # no transport security: only on a trusted network

# Folders of the system: a path setting may not be one of them, nor a parent of one.
SYSTEM_FOLDERS = frozenset(
    {
        "/",
        "/etc",
        "/usr",
        "/usr/local",
        "/usr/local/bin",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/usr/share",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64",
        "/boot",
        "/dev",
        "/proc",
        "/sys",
        "/run",
        "/srv",
        "/mnt",
        "/media",
        "/var",
        "/var/lib",
        "/var/log",
        "/var/tmp",
        "/opt",
        "/opt/homebrew",
        "/tmp",
        "/home",
        "/Users",
        "/root",
        "/Library",
        "/System",
        "/Applications",
        "/Volumes",
        "/private",
        "/private/etc",
        "/private/var",
        "/private/tmp",
    }
)
# System folders nothing of SAF's belongs in, at any depth.
SYSTEM_ONLY = frozenset(
    {
        "/etc",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64",
        "/boot",
        "/dev",
        "/proc",
        "/sys",
        "/System",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/private/etc",
    }
)
# Folders in a home directory that hold the user's own things ("" is the home itself).
PERSONAL_FOLDERS = frozenset(
    {
        "",
        ".ssh",
        ".config",
        ".aws",
        ".gnupg",
        ".kube",
        ".docker",
        ".local",
        ".cache",
        ".saf",
        "Library",
        "Desktop",
        "Documents",
        "Downloads",
        "Pictures",
        "Movies",
        "Music",
        "Public",
        "Applications",
    }
)
# Folders in a home directory that hold secrets: nothing of SAF's belongs in them, at any depth.
SECRET_FOLDERS = frozenset({".ssh", ".aws", ".gnupg"})
HOMES = ("/home", "/Users")  # /home/<user>, /Users/<user> (and /root) are home directories


def user_name_problem(value: str) -> str | None:
    if USER_NAME.fullmatch(value):
        return None
    return (
        f"{value!r} is not a user name SAF accepts; a user name is lowercase letters, digits, '_', '.' and '-', "
        "starting with a letter or '_' (at most 32 characters), like arthurdell"
    )


def scope_id_problem(scope_id: str) -> str | None:
    """An IPv6 scope id (``fe80::1%en0``) is written into units and rules: only an interface name will do."""
    if SCOPE_ID.fullmatch(scope_id):
        return None
    return (
        f"its scope id {scope_id!r} is not an interface name; write the interface the address is on, "
        "like fe80::1%en0 (letters, digits, '_', '.' and '-', at most 15 characters)"
    )


def path_characters_problem(value: str) -> str | None:
    """Why ``value`` cannot be written as it is into a unit, a plist or a shell command, or None."""
    rest = value[1:] if value == "~" or value.startswith("~/") else value
    for character in rest:
        if not PATH_CHARACTER.fullmatch(character):
            return f"holds {_named(character)}; a path here may hold only {PATH_CHARACTERS}"
    if value.startswith("-"):
        return "starts with '-', which a command reads as an option; write it as ./" + value
    if ".." in PurePosixPath(value).parts:
        return "holds '..'; write the path without it, as the folder it ends up in"
    return None


def _named(character: str) -> str:
    names = {
        "\n": "a newline",
        "\r": "a carriage return",
        "\t": "a tab",
        " ": "a space",
        "~": "a '~' that is not a leading ~/",
    }
    if character in names:
        return names[character]
    if not character.isprintable():
        return f"the control character {character!r}"
    return f"{character!r}"


def folder_parts(value: str) -> tuple[bool, tuple[str, ...]]:
    """``(under_home, parts)``: a path as the folders it names, ``~`` and home directories as under_home.

    ``~/saf/venv``, ``saf/venv`` (node paths are under the home) and ``/Users/a/saf/venv`` are all
    ``(True, ("saf", "venv"))``; ``/opt/saf`` is ``(False, ("opt", "saf"))``.
    """
    parts = tuple(part for part in value.split("/") if part not in ("", "."))
    if value == "~" or value.startswith("~/"):
        return True, parts[1:]
    if not value.startswith("/"):
        return True, parts
    if parts[:1] == ("root",):
        return True, parts[1:]
    if len(parts) >= 2 and f"/{parts[0]}" in HOMES:
        return True, parts[2:]
    return False, parts


def folder_problem(value: str) -> str | None:
    """Why SAF must not own the folder ``value`` (a node path, or a control path made absolute), or None."""
    under_home, parts = folder_parts(value)
    if under_home:
        return _home_folder_problem(parts)
    path = "/" + "/".join(parts)
    inside = next((folder for folder in SYSTEM_ONLY if path.startswith(folder + "/")), None)
    if inside:
        return f"is inside {inside}, a folder of the system"
    if any(_holds(parts, folder) for folder in SYSTEM_FOLDERS):
        return f"is {path}, a folder of the system"
    return None


def _home_folder_problem(parts: tuple[str, ...]) -> str | None:
    if not parts:
        return "is a home directory"
    if parts[0] in SECRET_FOLDERS:
        return f"is {'inside ' if len(parts) > 1 else ''}~/{parts[0]}, where the user's secrets are"
    if len(parts) == 1 and parts[0] in PERSONAL_FOLDERS:
        return f"is ~/{parts[0]}, a folder of the user's own"
    return None


def _holds(parts: tuple[str, ...], folder: str) -> bool:
    """Whether ``parts`` names ``folder`` or one of its parents."""
    inner = tuple(part for part in folder.split("/") if part)
    return inner[: len(parts)] == parts


def git_url_problem(value: str, trusted_network: bool) -> str | None:
    """pyenv is cloned on every node from this URL: https, or a local path (plain ones only on a trusted network)."""
    if value.startswith("/") or value.startswith(FILE_URL + "/"):
        path = value.removeprefix(FILE_URL)
        problem = path_characters_problem(path)
        return None if problem is None else f"is a local path that {problem}"
    if HTTPS_URL.fullmatch(value):
        return None
    plain = next((scheme for scheme in PLAIN_SCHEMES if value.startswith(scheme)), None)
    if plain and _plain_url(value):
        if trusted_network:
            return None
        return (
            f"is a plain {plain} URL: anyone on the network between a node and the server can change the "
            "pyenv it clones, and so the Python every node runs; use an https:// URL or a local path "
            "(or trusted_network: true, if no one else is on that network)"
        )
    return (
        f"{value!r} is not an https:// URL or a local path; pyenv is cloned from it on every node, so write "
        "it like https://github.com/pyenv/pyenv.git (no user name or password in it, letters, digits and "
        "'. _ ~ / -' in its path), or an absolute path or file:// URL on the nodes"
    )


def _plain_url(value: str) -> bool:
    return bool(HTTPS_URL.fullmatch("https://" + value.split("://", 1)[1]))
