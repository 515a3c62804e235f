"""Booting, entering and stopping lab nodes: systemd-nspawn containers that run real systemd.

Isolation comes first: each container has its own root filesystem, mount, PID, UTS and IPC
namespaces and the node's network namespace, and only then does systemd start in it, so it
never sees (or cleans) this machine's /tmp, services or users.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from saf.lab.layout import NODE_NAMES, LabLayout, LabNode
from saf.lab.system import LabError, run


def _pid_file(layout: LabLayout, node: LabNode) -> Path:
    return layout.node_dir(node.name) / "nspawn.pid"


def nspawn_pid(layout: LabLayout, node: LabNode) -> int | None:
    """The node's systemd-nspawn process, if it is running."""
    try:
        pid = int(_pid_file(layout, node).read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    return pid if f"--machine=saf-{node.name}".encode() in cmdline else None


def init_pid(layout: LabLayout, node: LabNode) -> int | None:
    """PID (on this machine) of the node's systemd, the container's PID 1."""
    pid = nspawn_pid(layout, node)
    if pid is None:
        return None
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    return None


def boot(layout: LabLayout, node: LabNode) -> None:
    """Start the node's container (systemd as PID 1) in the background, unless it runs."""
    if nspawn_pid(layout, node):
        return
    node_dir = layout.node_dir(node.name)
    log = open(node_dir / "console.log", "ab")
    process = subprocess.Popen(
        [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--machine=saf-{node.name}",
            f"--hostname={node.name}",
            f"--directory={node_dir / 'root'}",
            f"--network-namespace-path=/run/netns/{node.netns}",
            "--console=passive",
            # the node's own network namespace is its to configure (MTU, nftables), as on a real machine
            "--capability=CAP_NET_ADMIN",
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _pid_file(layout, node).write_text(str(process.pid))


def wait_for_ssh(node: LabNode, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((node.address, 22), timeout=2) as conn:
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.5)
    raise LabError(
        f"lab node {node.name} did not answer SSH on {node.address}:22 within {timeout:.0f} s; "
        f"see .saf/lab/nodes/{node.name}/console.log"
    )


def node_exec(
    layout: LabLayout, node: LabNode, argv: list[str], user: str | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run a command inside the node (all its namespaces), as root or as ``user``."""
    pid = init_pid(layout, node)
    if pid is None:
        raise LabError(f"lab node {node.name} is not running; run `saf lab up`.")
    if user:
        argv = ["runuser", "-l", user, "-c", shlex.join(argv)]
    return run(["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--", *argv], check=check, timeout=timeout)


def stop(layout: LabLayout, node: LabNode, timeout: float = 20) -> None:
    """Power the node off (SIGTERM to nspawn halts systemd), killing it if it does not stop."""
    pid = nspawn_pid(layout, node)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and nspawn_pid(layout, node):
        time.sleep(0.2)
    if nspawn_pid(layout, node):
        init = init_pid(layout, node)
        os.killpg(pid, signal.SIGKILL)
        if init:  # its own session: killing nspawn alone would leave the node's systemd running
            os.kill(init, signal.SIGKILL)
    _pid_file(layout, node).unlink(missing_ok=True)


def _is_lab_node_init(proc: Path, own_mount_ns: str) -> bool:
    """Whether ``proc`` is a lab node's systemd: PID 1 of its own PID namespace, started by
    systemd-nspawn, in another mount namespace, with a lab node's hostname. Its root may be
    deleted already, so the hostname is read from its UTS namespace, not from its files."""
    try:
        if (proc / "comm").read_text().strip() != "systemd" or os.readlink(proc / "ns/mnt") == own_mount_ns:
            return False
        nspid = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("NSpid:"))
        if nspid.split()[-1] != "1" or b"container=systemd-nspawn" not in (proc / "environ").read_bytes().split(b"\0"):
            return False
    except (OSError, StopIteration):
        return False
    hostname = run(["nsenter", "-t", proc.name, "-u", "hostname"], check=False, timeout=10).stdout.strip()
    return hostname in NODE_NAMES


def stray_inits() -> list[int]:
    """Lab nodes' systemd left running without their systemd-nspawn (nspawn killed before it could
    halt the node): they keep the node's network namespace, and its veth, alive."""
    own_mount_ns = os.readlink("/proc/self/ns/mnt")
    return [
        int(proc.name)
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit() and _is_lab_node_init(proc, own_mount_ns)
    ]


def stray_nspawns() -> list[int]:
    """Lab containers running without a pid file (e.g. after a crash of `lab up`)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"systemd-nspawn") and any(a.startswith(b"--machine=saf-") for a in cmdline):
            found.append(int(proc.name))
    return found
