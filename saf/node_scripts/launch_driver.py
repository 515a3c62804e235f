"""``saf launch``'s driver, run on the head with the venv's Python: one MLX rank per node through Ray.

    python launch_driver.py --address IP:PORT --nodes '[{"name": "alpha", "ip": "10.0.0.1"}, ...]'
                            --port 6390 --backend ring -- COMMAND ARGS...

It sits in a launch directory that ``saf launch`` unpacked over SSH: ``work/`` (the user's working
directory, shipped to every node by Ray's ``runtime_env``) and ``saf_verify_node/`` (the
verification's node-side package, whose ring and scheduling helpers this reuses). Each rank is an
actor pinned hard to its node that runs COMMAND there in the shipped directory, with ``MLX_RANK`` and
``MLX_HOSTFILE`` (rank r on port + r) and the venv first on PATH; its output streams back here
line by line, prefixed with the node's name. Ctrl-C (SIGINT), a lost SSH session (SIGHUP) or
SIGTERM stop every rank. The exit status is the worst rank's; the launch directory is removed.
Python 3.9 (the pinned Python's oldest): nothing newer in here.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
READ_WAIT_S = 0.5  # a rank's read returns after this with what it has (maybe nothing)
STOP_GRACE_S = 3.0  # SIGTERM first, SIGKILL after this
JOIN_PATIENCE_S = 30.0  # every node alive in Ray within this, or the launch does not start
SIGNAL_STATUS = 128  # a rank killed by signal N exits 128 + N, as a shell reports it


class Rank:
    """One rank on its node: the user's command as a child process group, its output in a queue."""

    def start(self, rank: int, hosts: list, command: list, name: str) -> str:
        """ "" once started; else why not."""
        handle, self.hostfile = tempfile.mkstemp(prefix="saf-launch-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump(hosts, out)
        env = dict(
            os.environ,
            MLX_RANK=str(rank),
            MLX_HOSTFILE=self.hostfile,
            SAF_NODE=name,
            PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        )
        self.lines: queue.Queue = queue.Queue()
        try:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as error:
            self.process = None
            return f"cannot run {command[0]}: {error.strerror or error}"
        threading.Thread(target=self._pump, daemon=True).start()
        return ""

    def _pump(self) -> None:
        for raw in iter(self.process.stdout.readline, b""):
            self.lines.put(raw.decode(errors="replace").rstrip("\r\n"))
        self.lines.put(None)  # the end of its output

    def read(self) -> dict:
        """What the rank printed since the last read, and its exit status once it ended."""
        lines, ended = [], False
        deadline = time.monotonic() + READ_WAIT_S
        while time.monotonic() < deadline and len(lines) < 1000:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if line is None:
                ended = True
                break
            lines.append(line)
        if ended:
            code = self.process.wait()
            self._remove_hostfile()
            return {"lines": lines, "exit": SIGNAL_STATUS - code if code < 0 else code}
        return {"lines": lines, "exit": None}

    def _remove_hostfile(self) -> None:
        try:
            os.unlink(self.hostfile)
        except OSError:  # already removed (stopped, then read to its end)
            pass

    def stop(self) -> None:
        """SIGTERM to the rank's whole process group, SIGKILL after a grace period."""
        self._remove_hostfile()
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 1.0)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return


class Stop(Exception):
    """Ctrl-C, SIGHUP or SIGTERM reached the driver."""


def _raise_stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def exit_status(codes: dict) -> int:
    """The worst rank's status: the largest, so any failure (or a signal's 128 + N) wins over 0."""
    return max(codes.values(), default=0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--nodes", required=True, help="JSON: [{name, ip}] in rank order")
    parser.add_argument("--port", type=int, required=True, help="the ring's base port: rank r on port + r")
    parser.add_argument("--backend", default="ring")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    nodes = json.loads(args.nodes)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _raise_stop)
    try:
        return launch(args.address, nodes, args.port, command)
    except Stop as why:
        print(f"saf launch: stopped ({why}): every rank was stopped", file=sys.stderr, flush=True)
        return SIGNAL_STATUS + signal.SIGINT
    finally:
        shutil.rmtree(HERE, ignore_errors=True)


def launch(address: str, nodes: list, port: int, command: list) -> int:
    import ray
    import ray.util.scheduling_strategies  # noqa: F401 - on_node reaches it as an attribute

    sys.path.insert(0, str(HERE))  # saf_verify_node/ is shipped beside this file
    from saf_verify_node.ring import ring_hosts
    from saf_verify_node.scheduling import on_node, wait_for_nodes

    ray.init(
        address=address, logging_level="ERROR", log_to_driver=False, runtime_env={"working_dir": str(HERE / "work")}
    )
    alive = wait_for_nodes(ray, [node["ip"] for node in nodes], JOIN_PATIENCE_S)
    absent = [node["name"] for node in nodes if len(alive.get(node["ip"], [])) != 1]
    if absent:
        print(
            f"saf launch: not one Ray node alive at the address of {', '.join(absent)}; run `saf verify` to see why",
            file=sys.stderr,
            flush=True,
        )
        return 2
    hosts = ring_hosts([node["ip"] for node in nodes], port)
    actor = ray.remote(num_cpus=0, max_concurrency=2)(Rank)
    ranks = {
        node["name"]: actor.options(scheduling_strategy=on_node(ray, alive[node["ip"]][0])).remote() for node in nodes
    }
    try:
        return _run(ray, ranks, hosts, command)
    finally:
        _stop(ray, ranks)


def _run(ray, ranks: dict, hosts: list, command: list) -> int:
    """Start every rank, print each one's lines as they come, and return the worst exit status."""
    width = max(len(name) for name in ranks)
    codes = {}
    for index, (name, rank) in enumerate(ranks.items()):
        why = ray.get(rank.start.remote(index, hosts, command, name))
        if why:
            print(f"saf launch: {name} (rank {index}): {why}", file=sys.stderr, flush=True)
            codes[name] = 127
    reads_under_way = {rank.read.remote(): name for name, rank in ranks.items() if name not in codes}
    while reads_under_way:
        done, _ = ray.wait(list(reads_under_way), num_returns=1, timeout=1.0)
        for ref in done:
            name = reads_under_way.pop(ref)
            answer = ray.get(ref)
            for line in answer["lines"]:
                print(f"{name:<{width}} | {line}", flush=True)
            if answer["exit"] is None:
                reads_under_way[ranks[name].read.remote()] = name
            else:
                codes[name] = answer["exit"]
    for index, name in enumerate(ranks):
        if codes[name]:
            print(f"saf launch: {name} (rank {index}) exited with status {codes[name]}", file=sys.stderr, flush=True)
    return exit_status(codes)


def _stop(ray, ranks: dict) -> None:
    """Every rank's process group stopped (those that already ended are left), then the actors."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
    try:
        ray.get([rank.stop.remote() for rank in ranks.values()], timeout=STOP_GRACE_S + 5)
    except Exception:  # noqa: BLE001 - killing the actors below ends their processes anyway
        pass
    for rank in ranks.values():
        ray.kill(rank)


if __name__ == "__main__":
    sys.exit(main())
