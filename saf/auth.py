"""Ray token authentication: which mode a cluster runs, and its token on the control machine.

Ray 2.52 added token authentication (``RAY_AUTH_MODE=token``): every RPC and HTTP entry point
(GCS, raylets, dashboard, job API) then needs one shared bearer token. SAF generates the token
once on the control machine (a 0600 file, git-ignored), pushes it to every node as a 0600 file
owned by the service user, and points the services and the verification driver at it with
``RAY_AUTH_TOKEN_PATH``. The token itself never appears in argv, a plist or unit, or a log.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

from packaging.version import Version
from pyinfra.api.exceptions import PyinfraError

RAY_AUTH_SINCE = Version("2.52.0")  # the first Ray with token authentication
NODE_TOKEN_FILE = ".saf/ray/auth-token"  # on each node, under the SSH user's home
TOKEN_BYTES = 32  # as `ray get-auth-token --generate`: 64 hex characters
TOKEN_FORM = re.compile(rb"[0-9a-f]{64}\n?")  # what SAF writes; one final newline (echo's) is fine too
NEW_TOKEN = "delete it to have a new one generated (then re-run; every node gets the new one)"


class TokenFileError(PyinfraError):
    """The control-side token file cannot be used; raised while the deploy is prepared, so the run
    stops before any host changes and pyinfra shows the message without a traceback."""


def ray_has_auth(ray_version: str) -> bool:
    return Version(ray_version) >= RAY_AUTH_SINCE


def auth_mode(ray_auth: str, ray_version: str) -> str | None:
    """``RAY_AUTH_MODE`` for the services: ``token``, ``disabled``, or None for a Ray without auth.

    ``off`` is written out as ``disabled`` on a Ray that knows the variable: newer Rays turn
    token authentication on by default, and each node would then invent its own token.
    """
    if not ray_has_auth(ray_version):
        return None
    return "disabled" if ray_auth == "off" else "token"


def has_token_auth(ray_auth: str, ray_version: str) -> bool:
    """Whether the cluster's Ray asks every caller for the token (auto or token on a Ray that has it)."""
    return auth_mode(ray_auth, ray_version) == "token"


def protection(settings: Any) -> str:
    """What keeps strangers from running code through Ray's job API, in words for doctor and reports.

    ``settings`` is the validated :class:`saf.spec.Settings` or a pyinfra ``host.data``: anything
    with ``ray_auth``, ``ray_version``, ``firewall`` and ``trusted_network``. One of ``token auth and
    firewall``, ``token auth``, ``firewall``, ``none: trusted network``, or ``none`` (which the
    cluster file's validation refuses, so a deploy never runs with it).
    """
    token = has_token_auth(settings.ray_auth, settings.ray_version)
    if token and settings.firewall:
        return "token auth and firewall"
    if token:
        return "token auth"
    if settings.firewall:
        return "firewall"
    return "none: trusted network" if settings.trusted_network else "none"


def auth_environment(mode: str | None, token_path: str) -> tuple[tuple[str, str], ...]:
    """The environment a Ray process (service or driver) needs for ``mode``: never the token."""
    if mode is None:
        return ()
    if mode == "disabled":
        return (("RAY_AUTH_MODE", "disabled"),)
    return (("RAY_AUTH_MODE", "token"), ("RAY_AUTH_TOKEN_PATH", token_path))


def _write_private(path: Path, token: str, exclusive: bool) -> None:
    """Write ``token`` to ``path`` with mode 0600 from the start (never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token)
    os.chmod(path, 0o600)


def ensure_control_token(path: Path) -> Path:
    """The control-side token file, generated on first use; an existing one is kept if SAF can use it
    (:func:`token_file_problem`), else TokenFileError: it is never pushed."""
    if not os.path.lexists(path):
        try:
            _write_private(path, secrets.token_hex(TOKEN_BYTES), exclusive=True)
        except FileExistsError:  # another host of the same run made it first
            pass
    problem = token_file_problem(path)
    if problem:
        raise TokenFileError(f"the Ray auth token file {path} {problem}")
    return path


def token_file_problem(path: Path) -> str | None:
    """Why an existing token file must not be pushed as the cluster's secret (the rest of a sentence
    about it, with the fix), or None. It must be this user's regular file, private (0600), and hold a
    token of SAF's form: 64 lowercase hex characters, never a key or anything else."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "is a link to nothing; remove the link, or point ray_auth_token_file at the token file"
    except OSError as error:
        return f"cannot be read ({error.strerror or error}); make it this user's, or {NEW_TOKEN}"
    if stat.S_ISDIR(info.st_mode):
        return (
            "is a folder, not a file; point ray_auth_token_file at the token file itself (like "
            ".saf/secrets/ray-auth-token), or remove the folder to have a token generated there"
        )
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a device, a pipe or a socket); point ray_auth_token_file at the token file"
    if info.st_uid != os.geteuid():
        return (
            f"belongs to another user (uid {info.st_uid}); the token is this user's secret: "
            f"chown it to this user, or {NEW_TOKEN}"
        )
    if info.st_mode & 0o077:
        return (
            f"can be read or changed by other users (mode {stat.S_IMODE(info.st_mode):04o}); make it private "
            f"with chmod 600 {path}, then run `saf rotate-token`, since others may have read it"
        )
    return _token_content_problem(path)


def _token_content_problem(path: Path) -> str | None:
    with open(path, "rb") as handle:
        content = handle.read(4096)
    if not content.strip():
        return f"is empty: {NEW_TOKEN}, or put the cluster's token in it"
    if not TOKEN_FORM.fullmatch(content):
        return (
            "does not hold a token of SAF's form (64 lowercase hex characters, and nothing else: never a key "
            "or a certificate), and it would be pushed to every node; point ray_auth_token_file at the "
            f"cluster's token, or {NEW_TOKEN}"
        )
    return None


def rotate_control_token(path: Path) -> Path:
    """Replace the control-side token with a new one (atomically: a reader sees old or new)."""
    staging = path.with_name(f".{path.name}.new")
    if staging.exists():
        staging.unlink()
    _write_private(staging, secrets.token_hex(TOKEN_BYTES), exclusive=True)
    os.replace(staging, path)
    return path
