"""Booting nodes spares the machine's /tmp, and `saf lab down` leaves nothing behind.

Runs last: it takes the session's lab down.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from saf.lab import nodes


def lab_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if ("systemd-nspawn" in line and "--machine=saf-" in line) or ("git daemon" in line and ".saf/lab" in line)]


def test_booting_a_node_spares_the_machines_tmp(lab, tmp_path):
    sentinel = Path("/tmp") / f"saf-lab-sentinel-{tmp_path.name}"
    sentinel.write_text("mine")
    try:
        lab.down()
        lab.up(1)  # a fresh boot of systemd, whose tmpfiles would clean a shared /tmp
        assert lab.exec("alpha", ["systemctl", "is-system-running", "--wait"], check=False).stdout.strip() in (
            "running", "degraded")
        assert sentinel.read_text() == "mine"
        assert not [p for p in Path("/tmp").iterdir() if p.name.startswith("systemd-private-")]
    finally:
        sentinel.unlink()


def test_down_removes_a_node_whose_nspawn_was_killed(lab):
    lab.up(1)
    alpha = lab.node("alpha")
    orphan = nodes.init_pid(lab.layout, alpha)
    subprocess.run(["kill", "-9", str(nodes.nspawn_pid(lab.layout, alpha))], check=True)  # its systemd runs on
    assert orphan in nodes.stray_inits()
    lab.down()
    assert nodes.stray_inits() == []
    assert subprocess.run(["ip", "link", "show", "saf-alpha"], capture_output=True).returncode != 0


def test_down_removes_everything_and_twice_is_fine(lab):
    lab.down()
    lab.down()
    assert "saf-" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert subprocess.run(["ip", "link", "show", "saf-br0"], capture_output=True).returncode != 0
    assert nodes.stray_nspawns() == [] and nodes.stray_inits() == [] and lab_processes() == []
    assert ".saf/lab" not in Path("/proc/self/mountinfo").read_text()
    assert not lab.layout.nodes_dir.exists() and not lab.layout.cluster_file.exists()
    assert lab.layout.base_rootfs.exists()  # the cache stays for the next `lab up` (down --purge removes it)
