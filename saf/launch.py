"""``saf launch``: an MLX distributed program with one rank on every node (or the named ones), through Ray.

The control machine sends the working directory and the driver to the head as one tar stream over
SSH, then runs the driver there (``saf/node_scripts/launch_driver.py``) with the venv's Python in
a second SSH session that has a terminal: Ctrl-C reaches the driver, and a lost session hangs it
up, so the ranks stop either way. The driver ships the directory on to every node with Ray's
``runtime_env`` and streams the ranks' output back. Nothing needs SSH between nodes; Ray's token
reaches the driver as a path, as it does the verification's.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import tarfile
import uuid
from pathlib import Path

from saf.auth import NODE_TOKEN_FILE, auth_environment, auth_mode
from saf.mlx_ring import launch_nodes
from saf.node_scripts import node_script
from saf.spec import Cluster
from saf.ssh import ssh_argv

LAUNCH_ROOT = ".saf/launch"  # under the head's SSH user's home; each launch's own directory, removed after
JOB = Path(__file__).resolve().parent / "verify" / "job.py"
# never shipped: version control, virtual environments, SAF's own state, caches
EXCLUDED = frozenset({".git", ".hg", ".svn", ".venv", "venv", ".saf", "__pycache__", ".pytest_cache",
                      ".mypy_cache", ".ruff_cache", "node_modules"})
MAX_WORKDIR_BYTES = 100 << 20  # what a runtime_env working_dir should stay under: it goes through Ray's GCS
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a program stopped by Ctrl-C


class LaunchError(Exception):
    """A launch that cannot start: the message says why and what to do."""


def pack(workdir: Path) -> bytes:
    """A gzip tar of ``work/`` (``workdir`` without EXCLUDED), the driver and the verification
    module it reuses; LaunchError when the directory is too large to ship."""
    buffer, total = io.BytesIO(), 0

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        nonlocal total
        if set(Path(info.name).parts) & EXCLUDED:
            return None
        total += info.size
        return info

    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(str(workdir), arcname="work", filter=keep)
        for name, text in (("driver.py", node_script("launch_driver.py")), ("saf_verify_job.py", JOB.read_text())):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    if total > MAX_WORKDIR_BYTES:
        raise LaunchError(f"the working directory {workdir} holds {total >> 20} MiB to ship to every node (at most "
                          f"{MAX_WORKDIR_BYTES >> 20} MiB); run saf launch from a directory with only the program "
                          "and its small files, and let the ranks read large data from where it lives")
    return buffer.getvalue()


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
    environment = [f"{key}={home_path(value) if key == 'RAY_AUTH_TOKEN_PATH' else shlex.quote(value)}"
                   for key, value in auth_environment(mode, NODE_TOKEN_FILE)]
    python = home_path(f"{settings.venv_root.rstrip('/')}/current/bin/python")
    driver = [f"--address={cluster.head.ip}:{settings.ray_port}", f"--nodes={json.dumps(nodes)}",
              f"--port={settings.mlx_ring_port}", f"--backend={settings.mlx_backend}", "--", *command]
    # stty -onlcr: the terminal gives lines as the ranks print them, without a carriage return added
    return (f"stty -onlcr 2>/dev/null; cd {launch_dir} && exec env {' '.join(environment)} {python} driver.py "
            + " ".join(shlex.quote(word) for word in driver))


def launch(cluster: Cluster, names: str | None, command: list[str], workdir: Path) -> int:
    """Run ``command`` as one MLX rank per node; the worst rank's exit status."""
    if not command:
        raise LaunchError("no command to launch; write it after --, like: saf launch -- python train.py")
    launch_dir = home_path(f"{LAUNCH_ROOT}/{uuid.uuid4().hex[:12]}")
    line = driver_command(cluster, names, launch_dir, command)
    sent = subprocess.run(ssh_argv(cluster.head, f"umask 077 && mkdir -p {launch_dir} && tar -xzf - -C {launch_dir}"),
                          input=pack(workdir), capture_output=True)
    if sent.returncode != 0:
        raise LaunchError(f"could not send the working directory to {cluster.head.name} over SSH: "
                          f"{sent.stderr.decode(errors='replace').strip()[:300] or sent.returncode}")
    # -tt: a terminal on the head even without one here, so that Ctrl-C and a lost session reach the driver
    ran = subprocess.Popen(ssh_argv(cluster.head, line, options=("-tt", "-q")))
    try:
        return ran.wait()
    except KeyboardInterrupt:  # no terminal here: ssh got it too and hung up, so the driver stops every rank
        ran.wait()
        return INTERRUPTED
