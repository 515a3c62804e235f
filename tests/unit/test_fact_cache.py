"""Fact reads shared per host (saf/fact_cache.py), driven through the pinned pyinfra itself: a real
``Inventory``, ``State`` and ``Host``, operations added by ``add_op`` and run by ``run_ops``, facts
read by ``host.get_fact``. Only the channel is a stand-in: ``LocalNode``, a connector implementing
pyinfra's connector interface that runs each command line pyinfra builds in a local ``sh`` (stdin
included), copies uploads and rsyncs, and records what reached it."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from io import IOBase
from pathlib import Path
from typing import Any, Iterator

import pytest
from pyinfra.api import Config, Inventory, State, StringCommand
from pyinfra.api.command import MaskString, QuoteString
from pyinfra.api.connect import connect_all
from pyinfra.api.facts import FactBase
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.connectors.base import BaseConnector
from pyinfra.connectors.util import CommandOutput, OutputLine, make_unix_command
from pyinfra.facts import files as file_facts
from pyinfra.facts import server as server_facts
from pyinfra.facts.server import Command
from pyinfra.operations import files, server

from saf import fact_cache
from saf.fact_cache import (PURE_PYINFRA_FACTS, batch_script, batches, is_pure_read, read_questions, share_fact_reads,
                            split_batch)
from saf.facts.python import SafVenvs, VenvDistributions
from saf.facts.ray import RayProcesses, RayProcessUnits
from saf.facts.roots import SafRoots


@dataclass
class Ran:
    """One command as it reached the node: the process's command line, sudo asked, what came on stdin."""

    command_line: str
    question: str  # the command pyinfra was asked to run, before its shell wrapping
    sudo: bool
    stdin: str | None


class LocalNode(BaseConnector):
    """An in-process node: pyinfra's own command line for each command, run by a local ``sh``
    (sudo and su left out: the tests run as one user), uploads and rsyncs as file copies."""

    handles_execution = True

    def __init__(self, state: State, host: Any):
        super().__init__(state, host)
        self.ran: list[Ran] = []
        self.uploads: list[str] = []
        self.rsyncs: list[str] = []

    @staticmethod
    def make_names_data(name: str) -> Iterator[tuple[str, dict, list[str]]]:
        yield name, {}, []

    def run_shell_command(self, command: StringCommand, print_output: bool = False, print_input: bool = False,
                          **arguments: Any) -> tuple[bool, CommandOutput]:
        shaping = {name: arguments[name] for name in ("_env", "_chdir", "_shell_executable") if name in arguments}
        line = make_unix_command(command, **shaping).get_raw_value()
        stdin = arguments.get("_stdin")
        self.ran.append(Ran(line, fact_cache.command_text(command), bool(arguments.get("_sudo")), stdin))
        done = subprocess.run(["sh", "-c", line], input=None if stdin is None else f"{stdin}\n",
                              capture_output=True, text=True)
        output = [OutputLine("stdout", text) for text in done.stdout.splitlines()]
        output += [OutputLine("stderr", text) for text in done.stderr.splitlines()]
        return done.returncode in (arguments.get("_success_exit_codes") or [0]), CommandOutput(output)

    def put_file(self, filename_or_io: str | IOBase, remote_filename: str, remote_temp_filename: str | None = None,
                 print_output: bool = False, print_input: bool = False, **arguments: Any) -> bool:
        self.uploads.append(remote_filename)
        data = filename_or_io.read() if hasattr(filename_or_io, "read") else Path(filename_or_io).read_bytes()
        Path(remote_filename).write_bytes(data if isinstance(data, bytes) else data.encode())
        return True

    def get_file(self, remote_filename: str, filename_or_io: str | IOBase, remote_temp_filename: str | None = None,
                 print_output: bool = False, print_input: bool = False, **arguments: Any) -> bool:
        raise AssertionError("no fact or operation here downloads")

    def check_can_rsync(self) -> None:
        return None

    def rsync(self, src: str, dest: str, flags: Any, print_output: bool = False, print_input: bool = False,
              **arguments: Any) -> bool:
        self.rsyncs.append(dest)
        shutil.copytree(src, dest, dirs_exist_ok=True)
        return True


class FileLines(FactBase[list]):
    """A fact that reads a file's lines, marked pure."""

    pure_read = True

    def command(self, path: str) -> StringCommand:
        return StringCommand("cat", QuoteString(path))

    def process(self, output: list[str]) -> list[str]:
        return output


class FileLinesUnmarked(FileLines):
    """The same command in a subclass: the mark is not inherited, a new class is judged anew."""


class NoNewline(FileLines):
    pure_read = True

    def command(self, text: str) -> str:
        return f"printf '{text}'"


def new_run(tmp_path: Path, project: Path | None = None, name: str = "beta"):
    """A fresh pyinfra run on one LocalNode host, its reads shared as deploy.py shares them."""
    inventory = Inventory(([(name, {"ssh_hostname": "10.0.0.2"})], {}))
    host = inventory.get_host(name)
    host.connector_cls = LocalNode
    state = State(inventory, Config())
    connect_all(state)  # the host becomes active: operations are added for it
    answers = share_fact_reads(host, project) if project is not False else None
    return state, host, answers


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """The node's files (the node is this machine: absolute paths under here)."""
    folder = tmp_path / "node"
    folder.mkdir()
    (folder / "a").write_text("one\ntwo\n")
    (folder / "b").write_text("three\n")
    return folder


def questions(host) -> list[str]:
    return [ran.question for ran in host.connector.ran]


# --- what drops the answers: every way pyinfra reaches the node ---------------------------------------


def test_a_pure_read_is_asked_once_and_an_operation_s_command_drops_it(tmp_path, node):
    state, host, _ = new_run(tmp_path)
    assert host.get_fact(FileLines, path=str(node / "a")) == ["one", "two"]
    assert host.get_fact(FileLines, path=str(node / "a")) == ["one", "two"]
    assert questions(host).count(f"cat {node}/a") == 1
    add_op(state, server.shell, commands=[f"echo changed > {node}/a"])
    run_ops(state)
    assert host.get_fact(FileLines, path=str(node / "a")) == ["changed"]
    assert questions(host).count(f"cat {node}/a") == 2


def test_an_upload_drops_the_answers(tmp_path, node):
    state, host, _ = new_run(tmp_path)
    assert host.get_fact(FileLines, path=str(node / "a")) == ["one", "two"]
    source = tmp_path / "new-a"
    source.write_text("uploaded\n")
    add_op(state, files.put, src=str(source), dest=str(node / "a"))  # its File/Sha1File reads are pure too
    run_ops(state)
    assert host.connector.uploads == [str(node / "a")]
    assert host.get_fact(FileLines, path=str(node / "a")) == ["uploaded"]


def test_an_rsync_drops_the_answers(tmp_path, node):
    state, host, _ = new_run(tmp_path)
    assert host.get_fact(FileLines, path=str(node / "b")) == ["three"]
    source = tmp_path / "tree"
    source.mkdir()
    (source / "b").write_text("synced\n")
    add_op(state, files.rsync, src=f"{source}/", dest=f"{node}/")
    run_ops(state)
    assert host.connector.rsyncs == [f"{node}/"]
    assert host.get_fact(FileLines, path=str(node / "b")) == ["synced"]


def test_a_read_s_value_is_kept_per_operation_context_and_given_as_a_copy(tmp_path, node):
    _, host, answers = new_run(tmp_path)
    first = host.get_fact(FileLines, path=str(node / "a"))
    first.append("changed by its reader")
    assert host.get_fact(FileLines, path=str(node / "a")) == ["one", "two"]
    assert len(answers.values) == 1
    host.current_op_global_arguments = {"_sudo": False}  # as inside an operation (its arguments: the defaults)
    assert host.get_fact(FileLines, path=str(node / "a")) == ["one", "two"] and len(answers.values) == 2
    assert questions(host) == [f"cat {node}/a"]  # the second context's command was answered too


def test_the_same_command_as_root_is_another_question(tmp_path, node):
    _, host, _ = new_run(tmp_path)
    host.get_fact(FileLines, path=str(node / "a"))
    host.get_fact(FileLines, path=str(node / "a"), _sudo=True)
    host.get_fact(FileLines, path=str(node / "a"), _sudo=True)
    assert [(ran.question, ran.sudo) for ran in host.connector.ran] == [(f"cat {node}/a", False),
                                                                        (f"cat {node}/a", True)]


def test_a_failed_read_is_not_kept(tmp_path, node):
    _, host, answers = new_run(tmp_path)
    missing = str(node / "missing")
    host.get_fact(FileLines, path=missing, _ignore_errors=True)
    host.get_fact(FileLines, path=missing, _ignore_errors=True)
    assert questions(host) == [f"cat {missing}"] * 2 and answers.answers == {}
    (node / "missing").write_text("now\n")
    assert host.get_fact(FileLines, path=missing) == ["now"]


# --- opt-in: only pure reads are kept or asked ahead ----------------------------------------------


def test_an_unmarked_fact_is_read_live_every_time_and_never_written(tmp_path, node):
    project = tmp_path / "project"
    _, host, answers = new_run(tmp_path, project)
    host.get_fact(FileLines, path=str(node / "a"))
    assert host.get_fact(FileLinesUnmarked, path=str(node / "b")) == ["three"]
    assert host.get_fact(FileLinesUnmarked, path=str(node / "b")) == ["three"]
    assert host.get_fact(Command, command="echo live") == "live"
    host.get_fact(FileLines, path=str(node / "a"))  # still kept: a live read is not a change
    assert questions(host) == [f"cat {node}/a", f"cat {node}/b", f"cat {node}/b", "echo live"]
    answers.write_questions()
    assert [q["command"] for q in read_questions(answers.questions_file)] == [f"cat {node}/a"]


def test_the_mark_is_the_class_s_own_and_pyinfra_s_pure_reads_are_named():
    assert is_pure_read(FileLines) and not is_pure_read(FileLinesUnmarked)
    assert is_pure_read(server_facts.Home) and is_pure_read(file_facts.Sha1File)
    assert not is_pure_read(Command) and not is_pure_read(server_facts.Processes)
    assert all(is_pure_read(fact) for fact in PURE_PYINFRA_FACTS)


def test_process_lists_and_the_verification_are_not_pure_reads():
    from saf.verify.fact import ClusterVerification
    assert not any(is_pure_read(fact) for fact in (RayProcesses, RayProcessUnits, ClusterVerification))
    assert is_pure_read(SafVenvs) and is_pure_read(VenvDistributions) and is_pure_read(SafRoots)


STATE_TOOLS = re.compile(r"\b(ps|ss|lsof|netstat|systemctl|launchctl|ifconfig|ip|networksetup|pfctl|nft|iptables|"
                         r"sysctl|pmset|df|sudo|env|tty|who)\b")


def saf_facts() -> list[type]:
    import importlib
    import inspect
    import pkgutil

    import saf.facts
    modules = [importlib.import_module(f"saf.facts.{module.name}") for module in pkgutil.iter_modules(saf.facts.__path__)]
    return [cls for module in modules for cls in vars(module).values()
            if inspect.isclass(cls) and issubclass(cls, FactBase) and cls.__module__ == module.__name__]


def command_with_placeholders(fact: type) -> str:
    """The fact's command with "/x" for every argument it needs."""
    import inspect
    needed = [parameter.name for parameter in inspect.signature(fact().command).parameters.values()
              if parameter.default is inspect.Parameter.empty]
    return fact_cache.command_text(fact().command(**{name: "/x" for name in needed}))


def test_no_fact_marked_pure_asks_about_processes_sockets_services_or_its_own_environment():
    marked = [fact for fact in [*saf_facts(), *PURE_PYINFRA_FACTS] if is_pure_read(fact)]
    assert len(marked) > 20 and any(fact.__name__ == "SafRoots" for fact in marked)
    asking = {fact.__name__: STATE_TOOLS.findall(command_with_placeholders(fact)) for fact in marked}
    assert {name: tools for name, tools in asking.items() if tools} == {}
    unmarked = [fact for fact in saf_facts() if not is_pure_read(fact)]
    assert any(STATE_TOOLS.search(command_with_placeholders(fact)) for fact in unmarked)  # the check can fail


def test_an_operation_s_command_inside_a_live_read_is_not_kept(tmp_path, node):
    _, host, answers = new_run(tmp_path)
    host.get_fact(Command, command=f"cat {node}/a", _sudo=True)
    host.get_fact(Command, command=f"cat {node}/a", _sudo=True)
    assert len(host.connector.ran) == 2 and answers.answers == {}


# --- the next run: the last run's questions asked together, on stdin -------------------------------------


def reads_of_every_kind(host, node: Path) -> dict:
    venvs = node / "venvs"
    return {
        "lines": host.get_fact(FileLines, path=str(node / "a")),
        "no newline": host.get_fact(NoNewline, text="no newline at the end"),
        "as root": host.get_fact(FileLines, path=str(node / "b"), _sudo=True),
        "file": host.get_fact(file_facts.File, path=str(node / "a")),
        "directory": host.get_fact(file_facts.Directory, path=str(node)),
        "sha1": host.get_fact(file_facts.Sha1File, path=str(node / "a")),
        "home": host.get_fact(server_facts.Home),
        "which": host.get_fact(server_facts.Which, command="sh"),
        "kernel": host.get_fact(server_facts.Kernel),
        "venvs": host.get_fact(SafVenvs, root=str(venvs)),
        "roots": host.get_fact(SafRoots, venv_root=str(venvs), pyenv_root=str(node / "pyenv")),
        "missing": host.get_fact(FileLines, path=str(node / "missing"), _ignore_errors=True),
    }


def test_a_converged_run_s_answers_equal_fresh_reads_in_two_round_trips(tmp_path, node, monkeypatch):
    monkeypatch.setattr(fact_cache, "SUDO_CHECK", "true")  # sudo answers without a password
    project = tmp_path / "project"
    _, first, answers = new_run(tmp_path, project)
    reads_of_every_kind(first, node)
    answers.write_questions()
    written = project / ".saf/fact-questions/beta-10.0.0.2.json"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert len(read_questions(written)) == len(first.connector.ran)

    _, second, _ = new_run(tmp_path, project)
    shared = reads_of_every_kind(second, node)
    _, fresh_host, _ = new_run(tmp_path, project=False)
    fresh = reads_of_every_kind(fresh_host, node)
    assert shared == fresh and shared["lines"] == ["one", "two"] and shared["missing"] is None
    # one script for the plain questions (and the sudo check), one for sudo's, then the failed question alone
    batch, sudo_batch, alone = second.connector.ran
    assert (batch.question, batch.sudo, sudo_batch.question, sudo_batch.sudo) == ("sh -s", False, "sh -s", True)
    assert alone.question == f"cat {node}/missing"
    assert "uname -s" in batch.stdin and f"cat {node}/b" in sudo_batch.stdin and f"cat {node}/b" not in batch.stdin


def test_the_questions_are_sent_on_stdin_and_no_process_shows_them(tmp_path, node):
    path = tmp_path / ".saf/fact-questions/beta-10.0.0.2.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([{"command": "echo QUESTION-MARK-1", "arguments": {}},
                                {"command": "ps -A -ww -o args=", "arguments": {}}]))
    _, host, answers = new_run(tmp_path, tmp_path)
    assert answers.ask_last_runs_questions() == 2
    (script,) = host.connector.ran
    assert script.command_line == "sh -c 'sh -s'" and "QUESTION-MARK-1" in script.stdin
    processes = next(output for _, output in answers.answers.values() if "ps -A" in output.stdout)
    assert processes.stdout_lines and "SAF-FACT-" not in processes.stdout and "QUESTION-MARK" not in processes.stdout
    # the other way, the script as an argument, shows the script (every question, the marker) to ps
    shown = subprocess.run(["sh", "-c", batch_script(["ps -A -ww -o args="], "SAF-FACT-x")],
                           capture_output=True, text=True).stdout.splitlines()
    assert any("SAF-FACT-x" in line and "ps -A" in line for line in shown)


def test_without_sudo_answering_the_sudo_questions_wait_for_their_own_reads(tmp_path, node, monkeypatch):
    monkeypatch.setattr(fact_cache, "SUDO_CHECK", "false")  # sudo would ask for a password
    project = tmp_path / "project"
    _, first, answers = new_run(tmp_path, project)
    reads_of_every_kind(first, node)
    answers.write_questions()
    _, second, _ = new_run(tmp_path, project)
    reads_of_every_kind(second, node)
    assert [(ran.question, ran.sudo) for ran in second.connector.ran[1:]] == [
        (f"cat {node}/b", True), (f"cat {node}/missing", False)]


def test_only_sudo_questions_still_get_the_check_and_su_or_doas_are_never_asked_ahead(tmp_path, node, monkeypatch):
    monkeypatch.setattr(fact_cache, "SUDO_CHECK", "echo checked")
    path = tmp_path / ".saf/fact-questions/beta-10.0.0.2.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([{"command": f"cat {node}/a", "arguments": {"_sudo": True}},
                                {"command": f"cat {node}/b", "arguments": {"_sudo": True, "_su_user": "x"}},
                                {"command": f"cat {node}/b", "arguments": {"_doas": True}}]))
    _, host, answers = new_run(tmp_path, tmp_path)
    assert answers.ask_last_runs_questions() == 1
    assert [("echo checked" in ran.stdin, f"cat {node}/a" in ran.stdin, ran.sudo) for ran in host.connector.ran] == [
        (True, False, False), (False, True, True)]
    assert host.connector.ran[1].stdin.count("SAF-FACT-") == 1  # the sudo script: its one question, no check


def test_a_failed_plain_batch_sends_no_sudo_batch(tmp_path, node, monkeypatch):
    monkeypatch.setattr(fact_cache, "SUDO_CHECK", "true")
    monkeypatch.setattr(fact_cache, "BATCH_CHARS", 50)  # one question a script
    path = tmp_path / ".saf/fact-questions/beta-10.0.0.2.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([{"command": f"cat {node}/{name}", "arguments": {"_sudo": True}} for name in "ab"] +
                               [{"command": f"cat {node}/a", "arguments": {}}]))
    _, host, answers = new_run(tmp_path, tmp_path)
    assert answers.ask_last_runs_questions() == 3 and len(host.connector.ran) == 3
    monkeypatch.setattr(fact_cache, "READ_SCRIPT_FROM_STDIN", "exit 1")  # the node cannot run the script
    _, failing, answers = new_run(tmp_path, tmp_path)
    assert answers.ask_last_runs_questions() == 0 and len(failing.connector.ran) == 1 and answers.answers == {}


def test_a_question_not_asked_last_time_goes_to_the_node_and_is_written_for_next_time(tmp_path, node):
    project = tmp_path / "project"
    _, host, answers = new_run(tmp_path, project)
    host.get_fact(FileLines, path=str(node / "a"))
    answers.write_questions()
    _, host, answers = new_run(tmp_path, project)
    host.get_fact(FileLines, path=str(node / "a"))
    host.get_fact(FileLines, path=str(node / "b"))
    assert questions(host)[1:] == [f"cat {node}/b"]
    answers.write_questions()
    assert [q["command"] for q in read_questions(answers.questions_file)] == [f"cat {node}/a", f"cat {node}/b"]
    _, host, answers = new_run(tmp_path, project)
    host.get_fact(FileLines, path=str(node / "b"))
    answers.write_questions()
    assert [q["command"] for q in read_questions(answers.questions_file)] == [f"cat {node}/b"]  # a dropped one


def test_a_question_with_a_password_input_or_masked_secret_is_never_written(tmp_path, node):
    _, host, answers = new_run(tmp_path, tmp_path)
    answers.reads_under_way.append(fact_cache.KEPT)  # as while pyinfra reads a pure fact
    host.run_shell_command(StringCommand("cat", str(node / "a")), _sudo=True, _sudo_password="hunter2")
    host.run_shell_command(StringCommand("cat", str(node / "b")), _stdin="input")
    host.run_shell_command(StringCommand("echo", MaskString("s3cret")))
    host.run_shell_command(StringCommand("true"))
    answers.write_questions()
    assert [q["command"] for q in read_questions(answers.questions_file)] == ["true"]
    assert "s3cret" not in answers.questions_file.read_text() and "hunter2" not in answers.questions_file.read_text()


def test_nothing_is_written_without_a_project_or_without_a_question(tmp_path, node):
    _, host, answers = new_run(tmp_path, None)
    host.get_fact(FileLines, path=str(node / "a"))
    answers.write_questions()
    _, _, answers = new_run(tmp_path, tmp_path)
    answers.write_questions()
    assert not (tmp_path / ".saf").exists()


def test_the_questions_file_is_named_by_node_and_address_in_safe_characters(tmp_path):
    inventory = Inventory((["gpu/box", "mac-1.local"], {}))
    inventory.get_host("gpu/box").data.ssh_hostname = "fe80::1%en0"
    assert fact_cache.questions_file(tmp_path, inventory.get_host("gpu/box")) == \
        tmp_path / ".saf/fact-questions/gpu_box-fe80__1_en0.json"
    assert fact_cache.questions_file(tmp_path, inventory.get_host("mac-1.local")).name == \
        "mac-1.local-mac-1.local.json"


# --- the script's parts -----------------------------------------------------------------------------


def test_a_command_text_is_what_the_shell_receives_and_odd_arguments_still_make_a_question():
    command = StringCommand("cat", QuoteString("a file"))
    assert fact_cache.command_text(command) == "cat 'a file'" and fact_cache.command_text("ls") == "ls"
    odd = {"_chdir": Path("/x")}  # not JSON: written as its repr
    assert fact_cache.question_key("ls", odd) == fact_cache.question_key("ls", {"_chdir": Path("/x")})
    assert fact_cache.question_key("ls", odd) != fact_cache.question_key("ls", {"_chdir": Path("/y")})


def test_batch_script_runs_each_command_alone_and_reports_its_status():
    script = batch_script(["echo a", "exit 3", "printf b", "echo c >&2; echo d", "cat"], "TOKEN")
    done = subprocess.run(["sh", "-s"], input=script + "\necho after\n", capture_output=True, text=True)
    assert done.stdout.splitlines() == ["a", "TOKEN 0 0", "TOKEN 1 3", "bTOKEN 2 0", "d", "TOKEN 3 0", "TOKEN 4 0",
                                        "after"]  # `cat` read nothing: the script on stdin stays the shell's
    assert done.stderr == ""
    assert split_batch(done.stdout.splitlines(), "TOKEN", 5) == {0: ["a"], 2: ["b"], 3: ["d"], 4: []}


def test_split_batch_ignores_what_is_not_its_marker():
    lines = ["x", "TOKEN 0 0", "TOKENS 1 0", "TOKEN 1 0", "y", "TOKEN 9 0", "z", "TOKEN 2 x", "TOKEN 3 0 extra",
             "w", "TOKEN 4 0", "v", "TOKEN x 0"]
    assert split_batch(lines, "TOKEN", 4) == {0: ["x"], 1: ["TOKENS 1 0"]}  # 4 is past the last of 4 commands
    assert split_batch(["", "TOKEN 0 0"], "TOKEN", 1) == {0: [""]}  # an empty line is output too


def test_batches_stay_under_the_size_and_keep_order(monkeypatch):
    monkeypatch.setattr(fact_cache, "BATCH_CHARS", 150)  # each command costs its length + 40
    commands = ["a" * 30, "b" * 30, "c" * 30, "d" * 200, "e"]
    assert batches(commands) == [["a" * 30, "b" * 30], ["c" * 30], ["d" * 200], ["e"]]
    assert batches([]) == []
    assert batches(["a" * 35, "b" * 35, "c"]) == [["a" * 35, "b" * 35], ["c"]]  # 150 exactly still fits
    assert batches(["a" * 35, "b" * 36]) == [["a" * 35], ["b" * 36]]


@pytest.mark.parametrize("content", ["", "not json", "{}", "3", '"cat a"', '[{"command": 3}]', '[["cat a"]]'])
def test_an_unreadable_questions_file_asks_nothing(tmp_path, content):
    path = tmp_path / "q.json"
    path.write_text(content)
    assert read_questions(path) == [] and read_questions(tmp_path / "absent.json") == []
