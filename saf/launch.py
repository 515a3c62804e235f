"""``saf launch``: an MLX distributed program with one rank on every node (or the named ones), through Ray.

The control machine sends the working directory and the driver to the head as one tar stream over
SSH, then runs the driver there (``saf/node_scripts/launch_driver.py``) with the venv's Python in
a second SSH session that has a terminal: Ctrl-C reaches the driver, and a lost session hangs it
up, so the ranks stop either way. The driver ships the directory on to every node with Ray's
``runtime_env`` and streams the ranks' output back. Nothing needs SSH between nodes; Ray's token
reaches the driver as a path, as it does the verification's.

What is shipped is the program's project, never a home: ``/``, the home folder (or one above it)
and a person's own folders are refused; credentials and keys (``.ssh/``, ``.aws/``, ``.env``,
``*.pem`` ...) and what git ignores are left out wherever they are, and stderr says what was; the
tree is walked and its size checked before anything is read.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from saf.auth import NODE_TOKEN_FILE, auth_environment, auth_mode
from saf.mlx_ring import launch_nodes
from saf.node_scripts import node_script
from saf.spec import Cluster
from saf.ssh import ssh_argv
from saf.verify.shipping import package_files

LAUNCH_ROOT = ".saf/launch"  # under the head's SSH user's home; each launch's own directory, removed after
# never shipped: version control, virtual environments, SAF's own state, caches
EXCLUDED = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".saf",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "node_modules",
    }
)
# never shipped, wherever they are under the directory: credentials and keys
SECRET_DIRS = frozenset({".ssh", ".aws", ".gnupg", ".azure", ".kube"})  # by name
SECRET_DIR_PATHS = (".config/gcloud",)  # by the end of their path
SECRET_FILE_PATHS = (".docker/config.json",)
SECRET_FILES = (
    ".netrc",
    ".pgpass",
    ".git-credentials",
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_ed25519*",
    "id_ecdsa*",
    "id_dsa*",
)  # by name (shell patterns)
# folders of a home that are never a program's project: refused as the directory to ship (those
# holding credentials with everything under them)
PERSONAL_FOLDERS = ("Desktop", "Documents", "Downloads", "Library", ".config", ".local", ".docker")
MAX_WORKDIR_BYTES = 100 << 20  # what a runtime_env working_dir should stay under: it goes through Ray's GCS
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a program stopped by Ctrl-C
SSH_HANGUP_GRACE_S = 5.0  # how long ssh has to quit on Ctrl-C before it is terminated
SHOWN_NAMES = 8  # names of what was left out, per reason, on stderr (then a count)
SECRET, IGNORED, NOT_SOURCE = ("credentials and keys", "ignored by .gitignore", "version control, venvs, caches")


class LaunchError(Exception):
    """A launch that cannot start: the message says why and what to do."""


@dataclass
class Shipment:
    """What ``saf launch`` sends from a working directory: its files (``/``-separated relative
    paths), their total size, and what was left out (reason -> relative paths, folders with ``/``)."""

    root: Path
    files: list[str] = field(default_factory=list)
    total: int = 0
    left_out: dict[str, list[str]] = field(default_factory=dict)

    def leave_out(self, reason: str, relative: str) -> None:
        self.left_out.setdefault(reason, []).append(relative)

    def summary(self) -> str:
        """One line for stderr: what is shipped (count, size) and what was left out (names, counts)."""
        line = f"saf launch: shipping {len(self.files)} files ({_size(self.total)}) from {self.root}"
        parts = []
        for reason in (SECRET, IGNORED, NOT_SOURCE):
            names = sorted(self.left_out.get(reason, []))
            if names:
                shown = ", ".join(names[:SHOWN_NAMES]) + (
                    f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
                )
                parts.append(f"{len(names)} {reason} ({shown})")
        return line + ("; left out: " + "; ".join(parts) if parts else "")


def _size(total: int) -> str:
    return f"{total / (1 << 20):.1f} MiB" if total >= 1 << 20 else f"{total / 1024:.1f} KiB"


def refuse_non_project(workdir: Path, home: Path) -> None:
    """LaunchError for a directory that is no program's project: ``/``, the home folder or one
    above it, a folder of the home that holds a person's documents, or a credentials folder (or
    a folder inside one)."""
    workdir, home = Path(os.path.realpath(workdir)), Path(os.path.realpath(home))
    credentials = [home / name for name in (*sorted(SECRET_DIRS), *SECRET_DIR_PATHS)]
    if workdir == Path(workdir.anchor):
        why = "the root of the file system"
    elif workdir == home:
        why = "your home folder"
    elif workdir in home.parents:
        why = f"a folder that holds your home folder ({home})"
    elif any(workdir == folder or folder in workdir.parents for folder in credentials):
        why = "a folder of your credentials"
    elif workdir in [home / name for name in PERSONAL_FOLDERS]:
        why = "a folder of your own files"
    else:
        return
    raise LaunchError(
        f"saf launch ships the directory it runs from to every node, and {workdir} is {why}: that "
        "would send your files (keys, credentials, documents) to the cluster. cd into the program's "
        "own project folder (its code and small data files) and run saf launch there"
    )


def is_secret(relative: str, is_dir: bool) -> bool:
    """Whether ``relative`` (a ``/``-separated path under the working directory) is a credential
    or key, never shipped wherever it is."""
    name = relative.rsplit("/", 1)[-1]
    if is_dir:
        return name in SECRET_DIRS or any(relative == p or relative.endswith("/" + p) for p in SECRET_DIR_PATHS)
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_FILES) or any(
        relative == p or relative.endswith("/" + p) for p in SECRET_FILE_PATHS
    )


def _reason(relative: str, is_dir: bool, ignored: IgnoreRules) -> str | None:
    """Why ``relative`` is left out, or None when it is shipped."""
    if is_dir and relative.rsplit("/", 1)[-1] in EXCLUDED:
        return NOT_SOURCE
    if is_secret(relative, is_dir):
        return SECRET
    if ignored.ignores(relative, is_dir):
        return IGNORED
    return None


def shipment(workdir: Path) -> Shipment:
    """What ``saf launch`` ships from ``workdir``: every file that is not EXCLUDED, a secret, or
    ignored by git, found by walking the tree (sizes from ``lstat``: nothing is read). A symbolic
    link is shipped as a link, never followed. LaunchError when the total is over MAX_WORKDIR_BYTES."""
    shipped = Shipment(workdir)
    ignored = IgnoreRules.for_directory(workdir)
    for top, dirs, files in os.walk(workdir):
        base = "" if top == str(workdir) else os.path.relpath(top, workdir).replace(os.sep, "/") + "/"
        walked, links = [], []
        for name in sorted(dirs):
            if os.path.islink(os.path.join(top, name)):
                links.append(name)
                continue
            reason = _reason(base + name, True, ignored)
            if reason:
                shipped.leave_out(reason, base + name + "/")
            else:
                walked.append(name)
        dirs[:] = walked
        for name in sorted(files + links):
            # a link to a folder is shipped as a link; still never one named as a credentials folder
            reason = (name in links and _reason(base + name, True, ignored)) or _reason(base + name, False, ignored)
            if reason:
                shipped.leave_out(reason, base + name)
                continue
            shipped.files.append(base + name)
            shipped.total += os.lstat(os.path.join(top, name)).st_size
    if shipped.total > MAX_WORKDIR_BYTES:
        raise LaunchError(
            f"the working directory {workdir} holds {shipped.total >> 20} MiB to ship to every node "
            f"(at most {MAX_WORKDIR_BYTES >> 20} MiB); run saf launch from a directory with only the "
            "program and its small files, and let the ranks read large data from where it lives"
        )
    return shipped


def pack(workdir: Path, shipped: Shipment | None = None) -> bytes:
    """A gzip tar of ``work/`` (the shipment's files of ``workdir``), the driver and the verification's
    node-side package (its ring and scheduling helpers); LaunchError when the directory is too large to ship."""
    shipped = shipped or shipment(workdir)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for relative in shipped.files:
            tar.add(str(workdir / relative), arcname=f"work/{relative}", recursive=False)
        for name, text in (("driver.py", node_script("launch_driver.py")), *package_files().items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- .gitignore -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    """One .gitignore line, as a regular expression over a path relative to its file's folder."""

    regex: re.Pattern
    negated: bool
    dir_only: bool


def gitignore_pattern(line: str) -> IgnorePattern | None:
    """A .gitignore line (gitignore(5), without the rare escapes): None for a blank line or a comment."""
    line = line.rstrip("\n").rstrip()
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    line = line[1:] if negated else line
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    anchored = "/" in line  # a slash at the start or in the middle: relative to the file's folder
    line = line.lstrip("/")
    if not line:
        return None
    regex = ""
    i = 0
    while i < len(line):
        if line.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif line.startswith("/**", i) and i + 3 == len(line):
            regex, i = regex + "/.*", i + 3
        elif line[i] == "*":  # other runs of asterisks are single ones
            regex, i = regex + "[^/]*", i + 1
        elif line[i] == "?":
            regex, i = regex + "[^/]", i + 1
        elif line[i] == "[" and "]" in line[i + 2 :]:
            end = line.index("]", i + 2)
            body = line[i + 1 : end]
            regex, i = regex + "[" + ("^" + body[1:] if body[:1] == "!" else body) + "]", end + 1
        else:
            regex, i = regex + re.escape(line[i]), i + 1
    prefix = "" if anchored else "(?:.*/)?"
    return IgnorePattern(re.compile(f"^{prefix}{regex}$"), negated, dir_only)


@dataclass
class IgnoreRules:
    """What git would not ship from a directory: its ignored paths as git itself lists them in a
    work tree, or the directory's .gitignore files read with :func:`gitignore_pattern` elsewhere."""

    listed: frozenset[str] | None = None  # git's answer: ignored files, and folders ending in /
    patterns: dict[str, list[IgnorePattern]] = field(default_factory=dict)  # folder ("" or "a/b/") -> its rules

    @classmethod
    def for_directory(cls, workdir: Path) -> IgnoreRules:
        listed = _git_ignored(workdir)
        if listed is not None:
            return cls(listed=listed)
        rules = cls()
        for top, dirs, files in os.walk(workdir):
            dirs[:] = [name for name in dirs if name not in EXCLUDED and not os.path.islink(os.path.join(top, name))]
            if ".gitignore" in files:
                base = "" if top == str(workdir) else os.path.relpath(top, workdir).replace(os.sep, "/") + "/"
                with open(os.path.join(top, ".gitignore"), encoding="utf-8", errors="replace") as handle:
                    rules.patterns[base] = [p for p in map(gitignore_pattern, handle) if p]
        return rules

    def ignores(self, relative: str, is_dir: bool) -> bool:
        if self.listed is not None:
            return (relative + "/" if is_dir else relative) in self.listed
        ignored = False
        for base, patterns in self.patterns.items():  # parents' files before their children's: walk order
            if base and not relative.startswith(base):
                continue
            rest = relative[len(base) :]
            for pattern in patterns:
                if (is_dir or not pattern.dir_only) and pattern.regex.match(rest):
                    ignored = not pattern.negated
        return ignored


def _git_ignored(workdir: Path) -> frozenset[str] | None:
    """The paths under ``workdir`` that its git work tree ignores (folders as ``name/``); None when
    it is not in a work tree (or git is missing), or the whole directory is ignored there (then
    its own .gitignore files count, as for a folder outside git)."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(workdir), "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listed.returncode != 0:
        return None
    paths = frozenset(path for path in listed.stdout.decode(errors="surrogateescape").split("\0") if path)
    return None if "./" in paths else paths


def home_path(path: str) -> str:
    """A node path as a remote shell word: ``~/x`` and relative paths under ``"$HOME"``."""
    if path.startswith("/"):
        return shlex.quote(path)
    rest = path[2:] if path.startswith("~/") else path
    return '"$HOME"/' + shlex.quote(rest)


def driver_command(cluster: Cluster, names: str | None, launch_dir: str, command: list[str]) -> str:
    """The remote shell line that runs the driver in ``launch_dir`` for the chosen nodes."""
    settings = cluster.settings
    nodes = [{"name": node.name, "ip": node.ip} for node in launch_nodes(cluster.nodes, names)]
    mode = auth_mode(settings.ray_auth, settings.ray_version)
    environment = [
        f"{key}={home_path(value) if key == 'RAY_AUTH_TOKEN_PATH' else shlex.quote(value)}"
        for key, value in auth_environment(mode, NODE_TOKEN_FILE)
    ]
    python = home_path(f"{settings.venv_root.rstrip('/')}/current/bin/python")
    driver = [
        f"--address={cluster.head.ip}:{settings.ray_port}",
        f"--nodes={json.dumps(nodes)}",
        f"--port={settings.mlx_ring_port}",
        f"--backend={settings.mlx_backend}",
        "--",
        *command,
    ]
    # stty -onlcr: the terminal gives lines as the ranks print them, without a carriage return added
    return (
        f"stty -onlcr 2>/dev/null; cd {launch_dir} && exec env {' '.join(environment)} {python} driver.py "
        + " ".join(shlex.quote(word) for word in driver)
    )


def launch(cluster: Cluster, names: str | None, command: list[str], workdir: Path) -> int:
    """Run ``command`` as one MLX rank per node; the worst rank's exit status."""
    if not command:
        raise LaunchError("no command to launch; write it after --, like: saf launch -- python train.py")
    refuse_non_project(workdir, Path.home())
    shipped = shipment(workdir)
    print(shipped.summary(), file=sys.stderr)
    launch_dir = home_path(f"{LAUNCH_ROOT}/{uuid.uuid4().hex[:12]}")
    line = driver_command(cluster, names, launch_dir, command)
    sent = subprocess.run(
        ssh_argv(cluster.head, f"umask 077 && mkdir -p {launch_dir} && tar -xzf - -C {launch_dir}"),
        input=pack(workdir, shipped),
        capture_output=True,
    )
    if sent.returncode != 0:
        raise LaunchError(
            f"could not send the working directory to {cluster.head.name} over SSH: "
            f"{sent.stderr.decode(errors='replace').strip()[:300] or sent.returncode}"
        )
    # -tt: a terminal on the head even without one here, so that Ctrl-C and a lost session reach the driver
    ran = subprocess.Popen(ssh_argv(cluster.head, line, options=("-tt", "-q")))
    try:
        return ran.wait()
    except KeyboardInterrupt:  # ssh got it too and hangs up, so the driver on the head stops every rank
        hang_up(ran)
        return INTERRUPTED


def hang_up(session: subprocess.Popen, grace_s: float = SSH_HANGUP_GRACE_S) -> None:
    """End the SSH session after Ctrl-C within a bound: ssh normally quits on the SIGINT it got with
    us; if it is still there after ``grace_s`` (seen on a loaded machine), it is terminated, then
    killed. Either way the head's terminal hangs up and the driver stops every rank."""
    for stop in (None, session.terminate, session.kill):
        if stop is not None:
            stop()
        try:
            session.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
