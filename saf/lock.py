"""One deploy at a time per cluster: a lock on the head node, taken before any host changes.

Where: ``~/.saf/deploy.lock/`` in the SSH user's home on the **head**. Two operators on two laptops
deploy the same cluster through the same head (every run reaches it: a worker joins the head's
Ray), so a lock there is seen by both; one on the control machine would not see the other laptop,
and one on every node would let two runs each hold part of the cluster. ``mkdir`` is atomic on
macOS and Linux alike, and the lock's ``holder`` file names who holds it: the control machine's
host name, the user, the pid, the start time, the command, and a random token.

How long: the holder keeps one SSH session to the head open for the whole run and writes a line
to it every ``HEARTBEAT_S`` seconds; the head touches ``holder`` on each. At the end the holder
sends ``release`` and the head removes the lock (only if it still carries the holder's token). A
run that dies without releasing it (SIGKILL, a lost laptop) stops the heartbeat: another run takes
the lock over once ``holder`` is older than ``LEASE_S`` (the head's own clock on both sides, so the
laptops' clocks do not matter), or at once from the same control machine when the holder's pid is
gone. A takeover is itself serialised (``mkdir deploy.lock.takeover``) and removes the lock only
if it still carries the token judged stale.

The second run refuses at once (exit status ``LOCK_HELD_STATUS``), naming the holder, before
pyinfra connects to any node. Read-only runs (``saf verify``, ``saf doctor``, ``--dry``, pyinfra's
``fact`` and ``debug-inventory``) take no lock. A head that cannot be reached cannot hold a lock:
the run goes on without one and says so (it cannot change the head either).
"""

from __future__ import annotations

import atexit
import getpass
import os
import secrets
import shlex
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from saf.spec import NodeSpec
from saf.ssh import ssh_argv

LOCK_DIR = ".saf/deploy.lock"  # under the head's SSH user's home
HEARTBEAT_S = 10
LEASE_S = 60  # a holder silent this long is gone (6 heartbeats missed)
LOCK_HELD_STATUS = 3
ENV_HELD = "SAF_DEPLOY_LOCK_HELD"  # set by a `saf` verb holding the lock for the pyinfra run it starts
READ_ONLY_RUNS = ("tasks/verify.py", "tasks/doctor.py", "fact", "debug-inventory", "all-facts")
_TAKEN, _HELD, _END, _RELEASED = "SAF-LOCK taken", "SAF-LOCK held", "SAF-LOCK end", "SAF-LOCK released"

# $1 mode (take | takeover), $2 the stale token a takeover replaces, $3 our token, $4 the holder file
LOCK_SCRIPT = r"""
d="$HOME/%(dir)s"; mode=$1; old=$2; mine=$3; info=$4
mkdir -p "${d%%/*}" || exit 1
mtime() { stat -c %%Y "$1" 2>/dev/null || stat -f %%m "$1" 2>/dev/null || echo 0; }
token() { sed -n 's/^token=//p' "$d/holder" 2>/dev/null; }
if [ "$mode" = takeover ]; then
  if mkdir "$d.takeover" 2>/dev/null; then
    [ "$(token)" = "$old" ] && rm -rf "$d"
    rmdir "$d.takeover"
  elif [ $(( $(date +%%s) - $(mtime "$d.takeover") )) -gt 60 ]; then
    rmdir "$d.takeover"
  fi
fi
if mkdir "$d" 2>/dev/null; then
  printf '%%s\n' "$info" > "$d/holder"
  echo "%(taken)s"
else
  at=$(mtime "$d/holder"); [ "$at" = 0 ] && at=$(mtime "$d")
  echo "%(held)s $(( $(date +%%s) - at ))"
  cat "$d/holder" 2>/dev/null
  echo "%(end)s"
  exit 0
fi
while IFS= read -r line; do
  case $line in
    beat) touch "$d/holder" ;;
    release) [ "$(token)" = "$mine" ] && rm -rf "$d"; echo "%(released)s"; exit 0 ;;
  esac
done
""" % {"dir": LOCK_DIR, "taken": _TAKEN, "held": _HELD, "end": _END, "released": _RELEASED}  # noqa: UP031 (the script's own braces)


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as its ``holder`` file says, and how long ago it last beat."""

    fields: dict[str, str]
    age_s: int

    @property
    def token(self) -> str:
        return self.fields.get("token", "")

    def describe(self) -> str:
        f = self.fields
        if not f.get("host"):
            return f"a run that left no holder file (the lock is {self.age_s} s old)"
        return (
            f"{f.get('user', '?')}@{f['host']}, pid {f.get('pid', '?')}, running `{f.get('command', '?')}` "
            f"since {f.get('started', '?')} (last heartbeat {self.age_s} s ago)"
        )

    def is_stale(self, here: str, alive=None) -> bool:
        """Gone: silent longer than the lease, or a pid of this control machine that no longer runs."""
        if self.age_s > LEASE_S:
            return True
        pid = self.fields.get("pid", "")
        return self.fields.get("host") == here and pid.isdigit() and not (alive or _pid_alive)(int(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LockHeld(Exception):
    """Another run holds the cluster's deploy lock."""

    def __init__(self, head: str, holder: Holder):
        self.holder = holder
        super().__init__(
            f"saf: another deploy is running on this cluster: {holder.describe()}; it holds the lock "
            f"~/{LOCK_DIR} on the head {head}. Nothing was changed. Wait for it to end and run again. "
            f"The lock goes with its run; one left by a run that was killed is taken over once its "
            f"heartbeat is older than {LEASE_S} s (at once from the same control machine when its pid is gone)."
        )


class LockUnavailable(Exception):
    """The head could not be asked for the lock (unreachable, refused)."""


def holder_info(command: str, token: str) -> str:
    """The lines of the ``holder`` file for this process."""
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    fields = {
        "token": token,
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "pid": str(os.getpid()),
        "started": started,
        "command": command.replace("\n", " "),
    }
    return "\n".join(f"{key}={value}" for key, value in fields.items())


def parse_holder(lines: list[str], age_s: int) -> Holder:
    fields = dict(line.split("=", 1) for line in lines if "=" in line)
    return Holder(fields, age_s)


class DeployLock:
    """The cluster's deploy lock, held by this process over one SSH session to the head."""

    def __init__(self, head: NodeSpec, command: str):
        self.head = head
        self.command = command
        self.token = secrets.token_hex(8)
        self.session: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lock, taking over a stale one once; LockHeld names a live holder."""
        holder = self._try("take", "")
        if holder and holder.is_stale(socket.gethostname()):
            holder = self._try("takeover", holder.token)
        if holder:
            raise LockHeld(self.head.name, holder)
        self._beat = threading.Thread(target=self._heartbeat, name="saf-deploy-lock", daemon=True)
        self._beat.start()

    def _try(self, mode: str, old: str) -> Holder | None:
        remote = " ".join(
            shlex.quote(word)
            for word in (
                "sh",
                "-c",
                LOCK_SCRIPT,
                "saf-lock",
                mode,
                old,
                self.token,
                holder_info(self.command, self.token),
            )
        )
        # its own session: a Ctrl-C in the terminal reaches pyinfra, which releases the lock, not ssh
        session = subprocess.Popen(
            ssh_argv(self.head, remote, options=("-o", "ConnectTimeout=10")),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        first = session.stdout.readline().strip()
        if first == _TAKEN:
            self.session = session
            return None
        if first.startswith(_HELD):
            lines = []
            for line in session.stdout:
                if line.strip() == _END:
                    break
                lines.append(line.rstrip("\n"))
            session.stdin.close()
            session.wait(timeout=10)
            return parse_holder(lines, int(first.split()[-1]))
        session.stdin.close()
        error = session.stderr.read().strip()
        session.wait(timeout=10)
        raise LockUnavailable(error.splitlines()[-1] if error else f"ssh exited with status {session.returncode}")

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            session = self.session
            if session is None or not _send(session, "beat"):
                return

    def release(self) -> None:
        """Remove the lock on the head (if it still carries this run's token) and end the session."""
        if self.session is None:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)  # it wakes at once: no thread outlives the lock
        session, self.session = self.session, None
        if _send(session, "release"):
            try:
                session.stdout.readline()  # "released": the head removed it
                session.stdin.close()
                session.wait(timeout=10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                session.kill()
        else:
            session.kill()


def _send(session: subprocess.Popen, line: str) -> bool:
    """One line to the head's side of the lock; False when the session is gone."""
    try:
        session.stdin.write(line + "\n")
        session.stdin.flush()
        return True
    except (OSError, ValueError):
        return False


def run_changes_nodes(argv: list[str]) -> bool:
    """Whether a pyinfra command line may change nodes: any but the read-only runs (and --dry)."""
    words = argv[1:]
    if "--dry" in words:
        return False
    after = [
        w
        for w in words[next((i + 1 for i, w in enumerate(words) if w.endswith("inventory.py")), 0) :]
        if not w.startswith("-")
    ]
    return not after or os.path.normpath(after[0]) not in READ_ONLY_RUNS


def hold_lock_or_exit(project_dir: Path | str, argv: list[str] | None = None) -> DeployLock | None:
    """For inventory.py: take the cluster's deploy lock for a pyinfra run that may change nodes,
    released when the process exits; a held lock ends the run here (exit ``LOCK_HELD_STATUS``)."""
    argv = sys.argv if argv is None else argv
    if os.environ.get(ENV_HELD) or not run_changes_nodes(argv):
        return None
    from saf.spec import load_cluster  # validated already by inventory.py's first step

    command = " ".join(["pyinfra", *argv[1:]])
    return take_or_exit(load_cluster(project_dir).head, command)


def take_or_exit(head: NodeSpec, command: str) -> DeployLock | None:
    """Take the lock (released at exit) or end the process naming its holder."""
    lock = DeployLock(head, command)
    try:
        lock.acquire()
    except LockHeld as held:
        print(str(held), file=sys.stderr)
        raise SystemExit(LOCK_HELD_STATUS) from None
    except LockUnavailable as error:
        print(
            f"saf: WARNING: the head {head.name} ({head.address}) did not answer for the deploy lock "
            f"({error}); this run holds no lock, so another deploy is not kept out",
            file=sys.stderr,
        )
        return None
    atexit.register(lock.release)
    os.environ[ENV_HELD] = lock.token  # a `saf` verb's pyinfra run (a child) is under this lock
    return lock
