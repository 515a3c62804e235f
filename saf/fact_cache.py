"""Facts in two SSH round trips per node: the questions of the last run, asked together up front.

pyinfra 3 reads every fact with its own command over SSH, and reads it again each time a task
or an operation asks (it keeps no cache: a fact may change once operations run). A converged
re-run asks the same questions every time, so most of its time was round trips. Here, per host,
for the facts that are **pure reads of files and versions** (and only those):

- **Asked once.** A question's answer (its exact command line and connector arguments: sudo,
  user, shell...) is kept and given again to the next identical question, and so is a whole read's
  value (the same fact, arguments and operation context: pyinfra's own work per read is skipped
  too), until anything else reaches the node: an operation's command, an upload, an rsync. Then
  everything kept is dropped, and the next questions go to the node, as pyinfra intends.
- **Asked together.** The questions a run asked are written to the control machine
  (``.saf/fact-questions/<node>-<address>.json``: commands only, never their answers, a password or
  a masked value). At its first read, the next run sends them to the node **on stdin** of one
  ``sh -s`` per group of connector arguments (no process's argv ever shows a question or the
  script), each command in its own subshell with its exit status after a marker, and keeps every
  answer that succeeded: the plain questions first, with ``sudo -n true``; those asked with sudo
  only if that succeeded (so a node that lost passwordless sudo meets it as before, never a
  password prompt); those asked through su or doas never. A question that was not asked last time,
  or failed, goes to the node on its own as before.

**Opt-in.** A fact is a pure read when its class says so itself, ``pure_read = True`` in its own
body (a subclass does not inherit it: a new command is judged anew), or when it is one of the
pyinfra facts of ``PURE_PYINFRA_FACTS``. Every other fact is read live: each read goes to the node
at the moment it is asked, nothing is kept, written down or asked ahead; exactly pyinfra's own
behaviour. Not pure: processes, sockets, launchctl/systemctl state, kernel tables (interfaces,
firewall rules, sysctl), disk usage, and anything that observes its own environment (a question
asked inside a script runs under another parent, stdin and process tree than a single read: the
``ps`` fact saw the script's own shells that way and missed a hand-run Ray). ``$HOME`` and
``$PATH`` are the same in both (the same login and connector arguments), so ``Home`` and ``Which``
count as pure.

**Why a wrapper of Host, and pyinfra pinned exactly.** pyinfra's public extension point for the
channel is a connector (entry point ``pyinfra.connectors``); a connector wrapping SSH would see
every command, upload and rsync by construction. But it cannot tell a fact's question from an
operation's command (both reach ``run_shell_command`` with the same arguments), nor which fact
asks, so the opt-in above would still need a hook on ``Host.get_fact``; and choosing it means
naming every node ``@saf/<address>`` in the inventory. So the four methods pyinfra routes through
(``Host.get_fact``, ``run_shell_command``, ``put_file``, ``rsync``) are wrapped on the host
object, and the wrapper's assumptions are held still instead: ``pyproject.toml`` pins pyinfra to
one version, ``requirements.lock`` pins it and everything else by hash, and
``tests/unit/test_fact_cache.py`` drives that pyinfra (a real ``State``, ``Inventory`` and
``Host``, real operations run by ``run_ops``, an in-process connector) to prove that a command, an
upload and an rsync each drop the answers and that a converged run's answers equal fresh reads.
Raising the pin means regenerating the lock and passing those tests.

pyinfra's own fact code still runs (its command, its ``process``, its errors); only the channel is
shared. What another node's operation changes on this node mid-run (none of SAF's tasks reads such
a thing after it could change) is not seen until the next read after this node runs a command.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.host import Host
from pyinfra.connectors.util import CommandOutput, OutputLine
from pyinfra.facts import brew, deb, files, server

QUESTIONS_DIR = ".saf/fact-questions"  # under the project directory, on the control machine
NOT_KEPT = ("print_output", "print_input")  # how pyinfra shows a read, not what it asks
NOT_WRITTEN = (
    "_sudo_password",
    "_stdin",
    "_get_pty",
)  # secrets and input: such a question (or a masked one) is never written;
# nor one asked on a terminal (an operation with _get_pty): `sh -s` on a pty never reads the end of its script
BATCH_CHARS = 1_000_000  # one script at most this long (sent on stdin: a bound on memory, not on argv)
SUDO = "_sudo"
OTHER_USERS = ("_su_user", "_doas")  # questions asked as another user this way are never asked ahead
# Asked with the plain questions: sudo would not prompt. Else the questions asked with _sudo wait
# for their own reads (where a missing sudo is met, and named, as before), never a password prompt.
SUDO_CHECK = "sudo -n true"
READ_SCRIPT_FROM_STDIN = "sh -s"

# pyinfra's facts that read files, package versions, the kernel's name and the login's home.
PURE_PYINFRA_FACTS = frozenset(
    {
        server.Home,
        server.Kernel,
        server.Arch,
        server.MacosVersion,
        server.Which,
        files.File,
        files.Link,
        files.Directory,
        files.Sha1File,
        files.Sha256File,
        files.Md5File,
        deb.DebPackages,
        brew.BrewPackages,
    }
)


def is_pure_read(fact_cls: type) -> bool:
    """Whether ``fact_cls`` may be kept and asked ahead: marked in its own body, or a known pyinfra read."""
    return fact_cls in PURE_PYINFRA_FACTS or vars(fact_cls).get("pure_read") is True


def command_text(command: Any) -> str:
    """The command line a fact runs, as the node's shell receives it."""
    return command.get_raw_value() if isinstance(command, StringCommand) else str(command)


def question_key(command: Any, arguments: dict) -> str:
    """One question: the command and every connector argument that shapes how it runs."""
    kept = {name: value for name, value in arguments.items() if name not in NOT_KEPT}
    return json.dumps([command_text(command), sorted(kept.items())], default=repr)


def batch_script(commands: list[str], token: str) -> str:
    """Every command in its own subshell, each followed by ``<token> <index> <exit status>``.

    Each subshell's stdin is /dev/null: the script itself arrives on the shell's stdin."""
    return "\n".join(
        f'( {command}\n) </dev/null 2>/dev/null; echo "{token} {index} $?"' for index, command in enumerate(commands)
    )


def split_batch(lines: list[str], token: str, count: int) -> dict[int, list[str]]:
    """The stdout lines of each command that exited 0, by index, from ``batch_script``'s output.

    A command whose output did not end in a newline has the marker on its last line's end."""
    answers: dict[int, list[str]] = {}
    section: list[str] = []
    for line in lines:
        before, marker, after = line.partition(token + " ")
        if not marker:
            section.append(line)
            continue
        if before:
            section.append(before)
        fields = after.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1] == "0" and int(fields[0]) < count:
            answers[int(fields[0])] = section
        section = []
    return answers


def batches(commands: list[str]) -> list[list[str]]:
    """``commands`` in runs of at most BATCH_CHARS characters (a longer one alone)."""
    runs: list[list[str]] = [[]]
    size = 0
    for command in commands:
        cost = len(command) + 40  # with its subshell and marker
        if runs[-1] and size + cost > BATCH_CHARS:
            runs.append([])
            size = 0
        runs[-1].append(command)
        size += cost
    return [run for run in runs if run]


KEPT, LIVE = "kept", "live"  # how the fact read under way is answered


class FactAnswers:
    """One host's kept answers, and the questions it was asked this run."""

    def __init__(self, host: Host, questions_file: Path | None):
        self.questions_file = questions_file
        self.answers: dict[str, tuple[bool, CommandOutput]] = {}
        self.values: dict[str, Any] = {}  # a whole read's value (pyinfra's own work per read skipped too)
        self.statuses: list[bool] = []  # of the commands of the pure reads under way
        self.asked: dict[str, dict] = {}  # key -> {"command", "arguments"}, in the order first asked
        self.reads_under_way: list[str] = []  # KEPT or LIVE per nested read; the innermost decides
        self.last_run_asked = questions_file is None  # asked on the first read: pyinfra has connected by then
        self.run_command = host.run_shell_command
        self.put = host.put_file
        self.rsync = host.rsync

    # --- what pyinfra calls -------------------------------------------------------------------

    def run_shell_command(self, command: Any, **arguments: Any) -> tuple[bool, CommandOutput]:
        if not self.reads_under_way:
            self.forget()  # an operation's command: what was read may no longer hold
            return self.run_command(command, **arguments)
        if self.reads_under_way[-1] == LIVE:
            return self.run_command(command, **arguments)
        if not self.last_run_asked:
            self.last_run_asked = True
            self.ask_last_runs_questions()
        key = question_key(command, arguments)
        self._note(key, command, arguments)
        if key in self.answers:
            status, output = self.answers[key]
            self.statuses.append(status)
            return status, CommandOutput(list(output.combined_lines))
        status, output = self.run_command(command, **arguments)
        self.statuses.append(status)
        if status:
            self.answers[key] = (status, CommandOutput(list(output.combined_lines)))
        return status, output

    def put_file(self, *args: Any, **kwargs: Any) -> bool:
        self.forget()
        return self.put(*args, **kwargs)

    def rsync_files(self, *args: Any, **kwargs: Any) -> bool:
        self.forget()
        return self.rsync(*args, **kwargs)

    def forget(self) -> None:
        self.answers.clear()
        self.values.clear()

    def read_live(self, read_fact: Callable[..., Any], fact_cls: type, args: tuple, kwargs: dict) -> Any:
        """A read that goes to the node now, keeps nothing and is never asked ahead."""
        self.reads_under_way.append(LIVE)
        try:
            return read_fact(fact_cls, *args, **kwargs)
        finally:
            self.reads_under_way.pop()

    def read_kept(
        self, read_fact: Callable[..., Any], fact_cls: type, args: tuple, kwargs: dict, context: dict | None
    ) -> Any:
        """A pure read: its value again while nothing ran (the same fact, arguments and operation
        context), else pyinfra's read, whose value is kept if every command it ran succeeded."""
        key = repr(
            (fact_cls.__module__, fact_cls.__qualname__, args, sorted(kwargs.items()), sorted((context or {}).items()))
        )
        if key in self.values:
            return copy.deepcopy(self.values[key])
        outer, self.statuses = self.statuses, []
        self.reads_under_way.append(KEPT)
        try:
            value = read_fact(fact_cls, *args, **kwargs)
        finally:
            self.reads_under_way.pop()
            statuses, self.statuses = self.statuses, outer + self.statuses
        if statuses and all(statuses):
            self.values[key] = copy.deepcopy(value)
        return value

    # --- the questions of the last run ----------------------------------------------------------

    def _note(self, key: str, command: Any, arguments: dict) -> None:
        masked = isinstance(command, StringCommand) and command.get_masked_value() != command.get_raw_value()
        if key not in self.asked and not masked and not any(arguments.get(name) for name in NOT_WRITTEN):
            kept = {name: value for name, value in arguments.items() if name not in NOT_KEPT}
            self.asked[key] = {"command": command_text(command), "arguments": kept}

    def ask_last_runs_questions(self) -> int:
        """Send the questions written by the last run, grouped by connector arguments; returns how
        many answers were kept. Plain questions first, with SUDO_CHECK; those asked with sudo only
        if sudo answered without a password; those asked as another user (su, doas) never."""
        groups: dict[str, tuple[dict, list[str]]] = {}
        for question in read_questions(self.questions_file):
            group = json.dumps(sorted(question["arguments"].items()), default=repr)
            groups.setdefault(group, (question["arguments"], []))[1].append(question["command"])
        as_other_user = [group for group in groups.values() if any(group[0].get(name) for name in OTHER_USERS)]
        plain = [group for group in groups.values() if not group[0].get(SUDO) and group not in as_other_user]
        with_sudo = [group for group in groups.values() if group[0].get(SUDO) and group not in as_other_user]
        kept, sudo_answers = 0, False
        for arguments, commands in plain or ([({}, [])] if with_sudo else []):
            for run in batches(commands) or [[]]:
                answered, sudo_checked = self._ask_together(run, arguments, SUDO_CHECK)
                kept, sudo_answers = kept + answered, sudo_answers or sudo_checked
        for arguments, commands in with_sudo if sudo_answers else []:
            for run in batches(commands):
                kept += self._ask_together(run, arguments)[0]
        return kept

    def _ask_together(self, commands: list[str], arguments: dict, check: str | None = None) -> tuple[int, bool]:
        """Ask ``commands`` in one script read from stdin (and ``check`` after them): the answers
        kept, and whether the check exited 0."""
        token = f"SAF-FACT-{secrets.token_hex(6)}"
        script = batch_script([*commands, *([check] if check else [])], token)
        status, output = self.run_command(
            StringCommand(READ_SCRIPT_FROM_STDIN),
            print_output=False,
            print_input=False,
            **{**arguments, "_stdin": script},
        )
        if not status:
            return 0, False
        answers = split_batch(output.stdout_lines, token, len(commands) + bool(check))
        for index, lines in answers.items():
            if index < len(commands):
                key = question_key(commands[index], arguments)
                self.answers[key] = (True, CommandOutput([OutputLine("stdout", line) for line in lines]))
        return len([index for index in answers if index < len(commands)]), bool(check) and len(commands) in answers

    def write_questions(self) -> None:
        if self.questions_file is None or not self.asked:
            return
        self.questions_file.parent.mkdir(parents=True, exist_ok=True)
        staging = self.questions_file.with_suffix(".partial")
        with open(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            json.dump(list(self.asked.values()), out, indent=1, default=repr)
        staging.replace(self.questions_file)


def read_questions(path: Path | None) -> list[dict]:
    """The questions written by the last run; none when there is no file or it is unreadable."""
    if path is None:
        return []
    try:
        questions = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return (
        [
            q
            for q in questions
            if isinstance(q, dict)
            and isinstance(q.get("command"), str)
            and isinstance(q.get("arguments"), dict)
            and not any(q["arguments"].get(name) for name in NOT_WRITTEN)
        ]
        if isinstance(questions, list)
        else []
    )


def questions_file(project_dir: str | Path, host: Host) -> Path:
    """Where ``host``'s questions are kept: its name and address, so another node of that name starts afresh."""
    address = str(getattr(host.data, "ssh_hostname", None) or host.name)
    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in f"{host.name}-{address}")
    return Path(project_dir) / QUESTIONS_DIR / f"{safe}.json"


def share_fact_reads(host: Host, project_dir: str | Path | None = None) -> FactAnswers:
    """Route ``host``'s fact reads through kept answers (see the module docstring). With
    ``project_dir``: the last run's questions are asked together at the first read, and this run's
    are written at exit."""
    answers = FactAnswers(host, questions_file(project_dir, host) if project_dir else None)
    read_fact = host.get_fact

    def get_fact(fact_cls: type, *args: Any, **kwargs: Any) -> Any:
        if is_pure_read(fact_cls):
            context = host.current_op_global_arguments  # the operation a read belongs to shapes its arguments
            return answers.read_kept(read_fact, fact_cls, args, kwargs, context)  # type: ignore[arg-type]
        return answers.read_live(read_fact, fact_cls, args, kwargs)

    host.get_fact = get_fact  # type: ignore[method-assign, assignment]
    host.run_shell_command = answers.run_shell_command  # type: ignore[method-assign]
    host.put_file = answers.put_file  # type: ignore[method-assign]
    host.rsync = answers.rsync_files  # type: ignore[method-assign]
    if project_dir:
        atexit.register(answers.write_questions)
    return answers
