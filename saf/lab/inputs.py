"""The lab's offline inputs, as an air-gapped site would have them: the CPython source tarball
(from Debian's archive) and a mirror of pyenv served on the lab bridge."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
from pathlib import Path

from saf.lab.layout import PYTHON_VERSION, LabLayout, gateway
from saf.lab.system import LabError, run

DEB_SRC = "deb-src http://deb.debian.org/debian bookworm main\n"


def _apt_options(state: Path) -> list[str]:
    """apt options that use the lab's own sources and lists, never the machine's /etc/apt."""
    return [
        "-o",
        f"Dir::Etc::SourceList={state / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={state / 'lists'}",
        "-o",
        f"Dir::Cache={state / 'cache'}",
        "-o",
        "APT::Sandbox::User=root",
    ]


def ensure_python_source(layout: LabLayout, pyenv_source: Path) -> Path:
    """``Python-3.11.2.tar.gz``: Debian's orig tarball, checked against pyenv's checksum."""
    target = layout.python_cache / f"Python-{PYTHON_VERSION}.tar.gz"
    if target.exists():
        return target
    state = layout.cache / "apt"
    for directory in (state / "lists" / "partial", state / "cache" / "archives" / "partial", state / "src"):
        directory.mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(DEB_SRC)
    run(["apt-get", *_apt_options(state), "-qq", "update"])
    run(
        ["apt-get", *_apt_options(state), "-qq", "source", "--download-only", "python3.11"],
        timeout=900,
        cwd=state / "src",
    )
    orig = next((state / "src").glob(f"python3.11_{PYTHON_VERSION}.orig.tar.gz"), None)
    if orig is None:
        raise LabError(f"Debian's archive did not give python3.11_{PYTHON_VERSION}.orig.tar.gz")
    _check_against_pyenv(orig, pyenv_source)
    layout.python_cache.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(orig, target)
    shutil.rmtree(state / "src")
    return target


def _check_against_pyenv(tarball: Path, pyenv_source: Path) -> None:
    definition = pyenv_source / "plugins/python-build/share/python-build" / PYTHON_VERSION
    expected = re.findall(r"Python-[\d.]+\.tgz#([0-9a-f]{64})", definition.read_text())
    actual = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if expected and actual not in expected:
        raise LabError(f"{tarball.name} from Debian does not match pyenv's checksum for Python-{PYTHON_VERSION}.tgz")


def pyenv_source() -> Path:
    """A pyenv checkout on this machine to mirror (GitHub is out of reach)."""
    candidates = [os.environ.get("SAF_LAB_PYENV_SOURCE"), os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    for candidate in filter(None, candidates):
        if (Path(candidate) / ".git").exists() and (Path(candidate) / "plugins/python-build").exists():
            return Path(candidate)
    raise LabError(
        "the lab needs a git checkout of pyenv on this machine to mirror for its nodes (GitHub is out of "
        "reach here): none was found in $SAF_LAB_PYENV_SOURCE, $PYENV_ROOT or ~/.pyenv. Clone pyenv "
        "somewhere this machine can read and set SAF_LAB_PYENV_SOURCE to it."
    )


def ensure_pyenv_mirror(layout: LabLayout, source: Path) -> None:
    if not (layout.pyenv_mirror / "HEAD").exists():
        staging = layout.pyenv_mirror.with_name("pyenv.git.partial")
        shutil.rmtree(staging, ignore_errors=True)
        run(["git", "clone", "--quiet", "--bare", "--no-hardlinks", str(source), str(staging)])
        staging.rename(layout.pyenv_mirror)


def git_daemon_running(layout: LabLayout) -> int | None:
    try:
        pid = int(layout.git_daemon_pid.read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def start_git_daemon(layout: LabLayout) -> None:
    """Serve the pyenv mirror as git://<gateway>/pyenv.git, on the lab bridge only."""
    if git_daemon_running(layout):
        return
    run(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--detach",
            f"--listen={gateway()}",
            f"--pid-file={layout.git_daemon_pid}",
            f"--base-path={layout.cache}",
            str(layout.cache),
        ]
    )


def stop_git_daemon(layout: LabLayout) -> None:
    pid = git_daemon_running(layout)
    if pid:
        os.kill(pid, signal.SIGTERM)
    layout.git_daemon_pid.unlink(missing_ok=True)


def pyenv_url() -> str:
    return f"git://{gateway()}/pyenv.git"
