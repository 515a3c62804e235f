"""The lab as a whole: up, status, down, and the cluster file that points SAF at it.

from saf.lab import api
lab = api.Lab(project_dir)
lab.up(3)                         # alpha (head), beta, gamma: booted and reachable over SSH
lab.exec("beta", ["systemctl", "is-system-running"])
lab.write_cluster_file(["alpha", "beta"])   # a cluster of a subset (onboarding tests)
lab.down()
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from saf.lab import inputs, network, nodes, rootfs
from saf.lab.layout import NODE_NAMES, NODE_USER, LabLayout, LabNode, lab_nodes
from saf.lab.network import OUTSIDER
from saf.lab.system import LabError, check_prerequisites, run


@dataclass
class NodeStatus:
    name: str
    address: str
    namespace: bool
    running: bool
    systemd: str
    ssh: bool


class Lab:
    """The lab of one project directory."""

    def __init__(self, project_dir: Path | str):
        self.layout = LabLayout(Path(project_dir).resolve())

    # --- nodes --------------------------------------------------------------------------------

    def nodes(self) -> list[LabNode]:
        """The nodes made so far (by `up`), in order."""
        made = [name for name in NODE_NAMES if (self.layout.node_dir(name) / "root").exists()]
        return lab_nodes(len(made)) if made else []

    def node(self, name: str) -> LabNode:
        for node in self.nodes():
            if node.name == name:
                return node
        raise LabError(f"the lab has no node {name!r}; its nodes: {', '.join(n.name for n in self.nodes()) or 'none'}")

    # --- up -----------------------------------------------------------------------------------

    def up(self, count: int = 3) -> list[LabNode]:
        """Make and boot ``count`` nodes (keeping any already up), and write the cluster file."""
        check_prerequisites()
        wanted = lab_nodes(max(count, len(self.nodes())))
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self._ensure_ssh_key()
        pyenv = inputs.pyenv_source()
        inputs.ensure_python_source(self.layout, pyenv)
        inputs.ensure_pyenv_mirror(self.layout, pyenv)
        rootfs.ensure_base(self.layout)
        network.ensure_bridge()
        network.ensure_namespace(OUTSIDER)
        inputs.start_git_daemon(self.layout)
        public_key = self.layout.ssh_key.with_suffix(".pub").read_text()
        host_keys = {}
        for node in wanted:
            network.ensure_namespace(node)
            host_keys[node.name] = rootfs.make_node_root(self.layout, node, wanted, public_key)
            nodes.boot(self.layout, node)
        for node in wanted:
            nodes.wait_for_ssh(node)
        self._write_known_hosts(wanted, host_keys)
        self.write_cluster_file([node.name for node in wanted[:count]])
        return wanted

    def _ensure_ssh_key(self) -> None:
        if not self.layout.ssh_key.exists():
            self.layout.ssh_dir.mkdir(parents=True, exist_ok=True)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "saf-lab", "-f", str(self.layout.ssh_key)])

    def _write_known_hosts(self, wanted: list[LabNode], host_keys: dict[str, str]) -> None:
        lines = [f"{node.address} {host_keys[node.name]}" for node in wanted]
        self.layout.known_hosts.write_text("\n".join(lines) + "\n")

    def write_cluster_file(
        self, names: list[str], settings: dict | None = None, path: Path | None = None, serve: dict | None = None
    ) -> Path:
        """A cluster file for these lab nodes (default: .saf/lab/cluster.yaml); ``serve``: its serve: part
        (none by default: Ray Serve's processes would slow every test on the lab's two cores)."""
        chosen = [self.node(name) for name in names]
        content = {
            "nodes": [
                {
                    "name": node.name,
                    "role": node.role,
                    "address": node.address,
                    "ssh_user": NODE_USER,
                    "ssh_key": str(self.layout.ssh_key),
                    "ssh_known_hosts_file": str(self.layout.known_hosts),
                }
                for node in chosen
            ],
            "settings": {
                "python_version": inputs.PYTHON_VERSION,
                "python_source_cache": str(self.layout.python_cache),
                "pyenv_git_url": inputs.pyenv_url(),
                # the lab's bridge is private to this machine: Ray without token auth needs no firewall here,
                # and its pyenv mirror may be served over plain git:// (a test's settings may say otherwise)
                "trusted_network": True,
                **(settings or {}),
            },
            **({"serve": serve} if serve else {}),
        }
        target = path or self.layout.cluster_file
        target.parent.mkdir(parents=True, exist_ok=True)
        header = "# Written by `saf lab up`: the lab's nodes, for SAF_CLUSTER. Regenerated on every up.\n"
        target.write_text(header + yaml.safe_dump(content, sort_keys=False))
        return target

    # --- using nodes ----------------------------------------------------------------------------

    def exec(
        self, name: str, argv: list[str], user: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        """Run a command inside a node, as root (default) or as ``user``."""
        return nodes.node_exec(self.layout, self.node(name), argv, user=user, check=check, timeout=timeout)

    def outsider_exec(self, argv: list[str], check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command from the outsider: on the lab bridge, but not a cluster node."""
        return run(["ip", "netns", "exec", OUTSIDER.netns, *argv], check=check, timeout=timeout)

    def reboot(self, name: str) -> None:
        """Power the node off and boot it again (its files stay): what a reboot of a machine does."""
        node = self.node(name)
        nodes.stop(self.layout, node)
        nodes.boot(self.layout, node)
        nodes.wait_for_ssh(node)

    def stop_sshd(self, name: str) -> None:
        self.exec(name, ["systemctl", "stop", "ssh.socket", "ssh.service"], check=False)

    def start_sshd(self, name: str) -> None:
        self.exec(name, ["systemctl", "start", "ssh.service"])
        nodes.wait_for_ssh(self.node(name))

    def ssh_argv(self, name: str, command: list[str] | None = None) -> list[str]:
        node = self.node(name)
        return [
            "ssh",
            "-i",
            str(self.layout.ssh_key),
            "-o",
            f"UserKnownHostsFile={self.layout.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{NODE_USER}@{node.address}",
            *(command or []),
        ]

    # --- status and down --------------------------------------------------------------------------

    def status(self) -> list[NodeStatus]:
        namespaces = set(network.namespaces())
        result = []
        for node in self.nodes():
            running = nodes.init_pid(self.layout, node) is not None
            systemd = "-"
            if running:
                systemd = self.exec(node.name, ["systemctl", "is-system-running"], check=False).stdout.strip() or "?"
            result.append(
                NodeStatus(node.name, node.address, node.netns in namespaces, running, systemd, _ssh_answers(node))
            )
        return result

    def down(self, purge: bool = False) -> None:
        """Remove every node, namespace, process and file the lab made (caches too with purge)."""
        for node in lab_nodes(len(NODE_NAMES)):
            nodes.stop(self.layout, node)
        for pid in nodes.stray_nspawns():
            run(["kill", "-9", str(pid)], check=False)
        _wait_until(lambda: not nodes.stray_nspawns(), 20)
        for pid in nodes.stray_inits():  # a killed nspawn leaves its node's systemd behind
            run(["kill", "-9", str(pid)], check=False)
        _wait_until(lambda: not nodes.stray_inits(), 20)
        inputs.stop_git_daemon(self.layout)
        network.remove_all()
        shutil.rmtree(self.layout.nodes_dir, ignore_errors=True)
        shutil.rmtree(self.layout.ssh_dir, ignore_errors=True)
        self.layout.cluster_file.unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.layout.root, ignore_errors=True)


def _ssh_answers(node: LabNode) -> bool:
    import socket

    try:
        with socket.create_connection((node.address, 22), timeout=1) as conn:
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()
