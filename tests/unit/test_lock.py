"""The cluster's deploy lock (saf/lock.py), with its real head-side script run by ``sh`` in a
temporary home standing for the head's: ``ssh`` is a stand-in that runs the remote command
locally, so mkdir's atomicity, the holder file, the heartbeat, the release and the takeovers are
the real ones. Also the pyinfra CLI refusing a second run before it connects to any node."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saf import lock
from saf.lock import LOCK_DIR, DeployLock, LockHeld, parse_holder, run_changes_nodes
from saf.spec import NodeSpec
from tests.conftest import PROJECT_DIR

HEAD = NodeSpec(name="alpha", role="head", address="10.0.0.1")


@pytest.fixture
def head_home(tmp_path, monkeypatch) -> Path:
    """The head's home; ``ssh`` on PATH runs its last argument there with ``sh``, logging each call."""
    home = tmp_path / "head"
    home.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/ssh.log\nfor last; do :; done\n'
                   f'HOME={home} exec sh -c "$last"\n')
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return home


def holder_file(home: Path) -> Path:
    return home / LOCK_DIR / "holder"


def test_a_second_run_is_refused_naming_the_first_and_runs_once_it_is_released(head_home):
    first = DeployLock(HEAD, "pyinfra inventory.py deploy.py -y")
    first.acquire()
    fields = dict(line.split("=", 1) for line in holder_file(head_home).read_text().splitlines())
    assert fields["host"] == socket.gethostname() and fields["pid"] == str(os.getpid())
    assert fields["command"] == "pyinfra inventory.py deploy.py -y" and fields["token"] == first.token
    with pytest.raises(LockHeld) as refused:
        DeployLock(HEAD, "saf rollback").acquire()
    message = str(refused.value)
    assert f"{fields['user']}@{socket.gethostname()}, pid {os.getpid()}, running `pyinfra inventory.py deploy.py -y`" in message
    assert f"since {fields['started']}" in message and "on the head alpha" in message and "Nothing was changed" in message
    first.release()
    assert not (head_home / LOCK_DIR).exists()
    second = DeployLock(HEAD, "saf rollback")
    second.acquire()
    assert holder_file(head_home).exists()
    second.release()
    assert not (head_home / LOCK_DIR).exists()


def test_the_heartbeat_keeps_the_holder_fresh(head_home, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.2)
    held = DeployLock(HEAD, "deploy")
    held.acquire()
    os.utime(holder_file(head_home), (time.time() - 600, time.time() - 600))
    time.sleep(1)
    assert time.time() - holder_file(head_home).stat().st_mtime < 5
    held.release()


def write_holder(home: Path, age_s: int, host: str, pid: int, token: str = "old") -> None:
    path = holder_file(home)
    path.parent.mkdir(parents=True)
    path.write_text(f"token={token}\nhost={host}\nuser=bob\npid={pid}\nstarted=2026-12-06 12:00:00 UTC\n"
                    "command=pyinfra inventory.py deploy.py\n")
    os.utime(path, (time.time() - age_s, time.time() - age_s))


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_lock_of_a_dead_pid_of_this_machine_is_taken_over_at_once(head_home):
    write_holder(head_home, age_s=2, host=socket.gethostname(), pid=dead_pid())
    taker = DeployLock(HEAD, "deploy")
    taker.acquire()
    assert f"token={taker.token}" in holder_file(head_home).read_text()
    taker.release()


def test_another_machines_lock_is_held_until_its_heartbeat_is_older_than_the_lease(head_home):
    write_holder(head_home, age_s=5, host="laptop-2", pid=dead_pid())  # its pid means nothing here
    with pytest.raises(LockHeld) as refused:
        DeployLock(HEAD, "deploy").acquire()
    assert "bob@laptop-2" in str(refused.value) and "last heartbeat 5 s ago" in str(refused.value)
    os.utime(holder_file(head_home), (time.time() - lock.LEASE_S - 5,) * 2)
    taker = DeployLock(HEAD, "deploy")
    taker.acquire()
    assert "host=laptop-2" not in holder_file(head_home).read_text()
    taker.release()


def test_a_takeover_removes_only_the_lock_it_judged_stale(head_home, tmp_path):
    write_holder(head_home, age_s=600, host="laptop-2", pid=1, token="fresh-one")  # replaced since it was read
    taker = DeployLock(HEAD, "deploy")
    # what the script does with a takeover whose stale token no longer is the holder's: refuses
    assert taker._try("takeover", "the-stale-one").fields["token"] == "fresh-one"
    assert "token=fresh-one" in holder_file(head_home).read_text()


def test_a_killed_holder_leaves_the_lock_and_the_next_run_here_takes_it_over(head_home):
    code = ("import time; from saf.lock import DeployLock; from saf.spec import NodeSpec; "
            "DeployLock(NodeSpec(name='alpha', role='head', address='10.0.0.1'), 'deploy').acquire(); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=PROJECT_DIR)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    time.sleep(0.5)
    assert holder_file(head_home).exists()  # nobody released it
    started = time.monotonic()
    taker = DeployLock(HEAD, "deploy")
    taker.acquire()
    assert time.monotonic() - started < 5
    taker.release()


def test_a_holder_file_is_read_back_field_by_field():
    holder = parse_holder(["token=t", "host=h", "user=u", "pid=12", "started=s", "command=pyinfra x=y"], 3)
    assert holder.fields["command"] == "pyinfra x=y" and holder.token == "t"
    assert holder.is_stale("h", alive=lambda pid: False) and not holder.is_stale("h", alive=lambda pid: True)
    assert not holder.is_stale("other", alive=lambda pid: False)
    assert parse_holder([], lock.LEASE_S + 1).is_stale("h")


@pytest.mark.parametrize("argv,changes", [
    (["pyinfra", "inventory.py", "deploy.py", "-y"], True),
    (["pyinfra", "inventory.py", "tasks/rollback.py", "-y"], True),
    (["pyinfra", "-y", "inventory.py", "./tasks/verify.py", "--json"], False),
    (["pyinfra", "inventory.py", "tasks/doctor.py", "--limit", "beta"], False),
    (["pyinfra", "inventory.py", "deploy.py", "--dry"], False),
    (["pyinfra", "inventory.py", "debug-inventory"], False),
    (["pyinfra", "inventory.py", "fact", "server.Os"], False),
    (["pyinfra", "inventory.py", "exec", "--", "reboot"], True),
    (["pyinfra", "--limit", "gamma", "inventory.py", "deploy.py"], True),
])
def test_which_pyinfra_runs_take_the_lock(argv, changes):
    assert run_changes_nodes(argv) is changes


def test_the_pyinfra_cli_refuses_a_second_deploy_before_connecting(head_home, write_cluster):
    path = write_cluster({"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}], "settings": {"firewall": True}})
    first = DeployLock(HEAD, "pyinfra inventory.py deploy.py -y")
    first.acquire()
    try:
        env = {key: value for key, value in os.environ.items() if key != lock.ENV_HELD}
        second = subprocess.run([sys.executable, "-m", "pyinfra", "inventory.py", "deploy.py", "-y"], cwd=PROJECT_DIR,
                                env={**env, "SAF_CLUSTER": str(path)}, capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
    finally:
        first.release()
    output = second.stdout + second.stderr
    assert second.returncode == lock.LOCK_HELD_STATUS, output
    assert f"pid {os.getpid()}, running `pyinfra inventory.py deploy.py -y`" in output
    assert "Connecting" not in output and "Traceback" not in output


def test_a_pyinfra_run_holds_the_lock_and_releases_it_when_it_ends(head_home, write_cluster, tmp_path):
    # pyinfra cannot connect (the name resolves to nothing), so the run fails; the lock goes with it
    path = write_cluster({"nodes": [{"name": "alpha", "role": "head", "address": "no-such-node.invalid", "ip": "10.0.0.1"}],
                          "settings": {"firewall": True}})
    env = {key: value for key, value in os.environ.items() if key != lock.ENV_HELD}
    run = subprocess.run([sys.executable, "-m", "pyinfra", "inventory.py", "deploy.py", "-y"], cwd=PROJECT_DIR,
                         env={**env, "SAF_CLUSTER": str(path)}, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert "Connecting" in run.stdout + run.stderr  # it got past the lock
    assert "sh -c" in (tmp_path / "ssh.log").read_text()  # the lock was asked of the head
    assert not (head_home / LOCK_DIR).exists()  # and released at exit


def test_rotate_token_takes_the_lock_before_it_writes_a_new_token(head_home, write_cluster, tmp_path):
    token_file = tmp_path / "ray-auth-token"
    token_file.write_text("0" * 64 + "\n")
    token_file.chmod(0o600)
    path = write_cluster({"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}],
                          "settings": {"python_version": "3.12.8", "ray_version": "2.60.0", "mlx_version": "0.32.4",
                                       "ray_auth_token_file": str(token_file)}})
    first = DeployLock(HEAD, "pyinfra inventory.py deploy.py -y")
    first.acquire()
    try:
        env = {key: value for key, value in os.environ.items() if key != lock.ENV_HELD}
        saf = Path(sys.executable).parent / "saf"
        rotated = subprocess.run([str(saf), "rotate-token"], cwd=PROJECT_DIR, env={**env, "SAF_CLUSTER": str(path)},
                                 capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        first.release()
    assert rotated.returncode == lock.LOCK_HELD_STATUS, rotated.stderr
    assert "another deploy is running on this cluster" in rotated.stderr
    assert token_file.read_text() == "0" * 64 + "\n"  # no new token while another run deploys
