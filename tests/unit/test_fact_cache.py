"""Fact reads shared per host (saf/fact_cache.py), against a real shell: each "node" runs its
commands with ``sh -c`` in its own directory, and counts them."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from pyinfra.api.command import StringCommand
from pyinfra.connectors.util import CommandOutput, OutputLine

from saf import fact_cache
from saf.fact_cache import batch_script, batches, read_questions, share_fact_reads, split_batch


class Cat:
    """A fact: a file's lines (pyinfra's contract: command(), process(lines))."""

    @staticmethod
    def command(path: str) -> str:
        return f"cat {path}"

    @staticmethod
    def process(lines: list[str]) -> list[str]:
        return lines


class Printf(Cat):
    """A fact whose output has no newline at its end."""

    @staticmethod
    def command(text: str) -> str:
        return f"printf '{text}'"


class Verification(Cat):
    read_live = True


class Node:
    """What pyinfra's Host gives the cache: run_shell_command, put_file, get_fact, a name and data."""

    def __init__(self, workdir: Path, name: str = "beta"):
        self.name = name
        self.data = type("Data", (), {"ssh_hostname": "10.0.0.2"})()
        self.workdir = workdir
        self.ran: list[tuple[str, dict]] = []
        self.uploads = 0
        self.reads = 0  # reads that reached pyinfra's (here: this class's) own get_fact
        self.current_op_global_arguments = None

    def run_shell_command(self, command, print_output=False, print_input=False, **arguments):
        text = command.get_raw_value() if isinstance(command, StringCommand) else str(command)
        self.ran.append((text, arguments))
        done = subprocess.run(["sh", "-c", text], cwd=self.workdir, capture_output=True, text=True)
        lines = [OutputLine("stdout", line) for line in done.stdout.splitlines()]
        lines += [OutputLine("stderr", line) for line in done.stderr.splitlines()]
        return done.returncode == 0, CommandOutput(lines)

    def put_file(self, *args, **kwargs):
        self.uploads += 1
        self.uploaded = (args, kwargs)
        return True

    def get_fact(self, fact_cls, *args, **kwargs):
        """As pyinfra's _get_fact: the fact's command through run_shell_command, then process()."""
        self.reads += 1
        arguments = {key: value for key, value in kwargs.items() if key.startswith("_")}
        status, output = self.run_shell_command(fact_cls.command(*args), print_output=False, print_input=False,
                                                _sudo=arguments.get("_sudo", False))
        return fact_cls.process(output.stdout_lines) if status else None


@pytest.fixture
def workdir(tmp_path):
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    (node_dir / "a").write_text("one\ntwo\n")
    (node_dir / "b").write_text("three\n")
    return node_dir


def run_once(workdir: Path, project: Path | None, reads) -> tuple[Node, fact_cache.FactAnswers]:
    """One pyinfra run on a node: share its reads, make ``reads``, then what atexit does."""
    node = Node(workdir)
    answers = share_fact_reads(node, project)
    reads(node)
    answers.write_questions()
    return node, answers


def test_the_same_question_goes_to_the_node_once(workdir):
    node = Node(workdir)
    share_fact_reads(node)
    assert node.get_fact(Cat, "a") == ["one", "two"] and node.get_fact(Cat, "a") == ["one", "two"]
    assert node.get_fact(Cat, "b") == ["three"]
    assert node.get_fact(Cat, "a", _sudo=True) == ["one", "two"]  # as root: another question
    assert [text for text, _ in node.ran] == ["cat a", "cat b", "cat a"]
    assert [arguments["_sudo"] for _, arguments in node.ran] == [False, False, True]


def test_a_read_s_value_is_kept_per_operation_context_and_given_as_a_copy(workdir):
    node = Node(workdir)
    share_fact_reads(node)
    first = node.get_fact(Cat, "a")
    first.append("changed by its reader")
    assert node.get_fact(Cat, "a") == ["one", "two"] and node.reads == 1  # pyinfra's work done once
    node.current_op_global_arguments = {"_sudo": False, "_chdir": "/tmp"}  # inside an operation
    assert node.get_fact(Cat, "a") == ["one", "two"] and node.reads == 2
    assert node.get_fact(Cat, "a") == ["one", "two"] and node.reads == 2
    assert [text for text, _ in node.ran] == ["cat a"]  # the second read's command was answered too


def test_a_command_that_is_not_a_read_drops_every_answer(workdir):
    node = Node(workdir)
    share_fact_reads(node)
    node.get_fact(Cat, "a")
    node.run_shell_command(StringCommand("echo changed > a"))  # an operation's command
    assert node.get_fact(Cat, "a") == ["changed"]
    assert node.put_file("local", "a", mode="644") is True  # an upload changes the node too
    node.get_fact(Cat, "a")
    assert [text for text, _ in node.ran].count("cat a") == 3 and node.uploads == 1
    assert node.uploaded == (("local", "a"), {"mode": "644"})


class RsyncNode(Node):
    def rsync(self, src, dest, **kwargs):
        self.synced = (src, dest, kwargs)
        return "synced"


def test_rsync_drops_every_answer_and_a_host_without_rsync_gets_none(workdir):
    node = RsyncNode(workdir)
    share_fact_reads(node)
    node.get_fact(Cat, "a")
    assert node.rsync("src", "dest", flags=["-a"]) == "synced" and node.synced == ("src", "dest", {"flags": ["-a"]})
    node.get_fact(Cat, "a")
    assert [text for text, _ in node.ran] == ["cat a", "cat a"]
    plain = Node(workdir)
    share_fact_reads(plain)
    assert not hasattr(plain, "rsync")


def test_a_command_text_is_what_the_shell_receives_and_odd_arguments_still_make_a_question():
    from pyinfra.api.command import QuoteString
    command = StringCommand("cat", QuoteString("a file"))
    assert fact_cache.command_text(command) == "cat 'a file'" and fact_cache.command_text("ls") == "ls"
    odd = {"_chdir": Path("/x")}  # not JSON: written as its repr
    assert fact_cache.question_key("ls", odd) == fact_cache.question_key("ls", {"_chdir": Path("/x")})
    assert fact_cache.question_key("ls", odd) != fact_cache.question_key("ls", {"_chdir": Path("/y")})


def test_the_questions_file_is_named_by_node_and_address_in_safe_characters(tmp_path):
    node = Node(tmp_path, name="gpu/box")
    node.data.ssh_hostname = "fe80::1%en0"
    assert fact_cache.questions_file(tmp_path, node) == tmp_path / ".saf/fact-questions/gpu_box-fe80__1_en0.json"
    bare = Node(tmp_path, name="mac-1.local")
    bare.data = type("Data", (), {})()
    assert fact_cache.questions_file(tmp_path, bare).name == "mac-1.local-mac-1.local.json"


def test_a_live_fact_always_goes_to_the_node_and_is_never_written(workdir, tmp_path):
    node = Node(workdir)
    answers = share_fact_reads(node, tmp_path)
    node.get_fact(Cat, "a")
    assert node.get_fact(Verification, "b") == ["three"] and node.get_fact(Verification, "b") == ["three"]
    node.get_fact(Cat, "a")  # still kept: a live read is not a change
    assert [text for text, _ in node.ran] == ["cat a", "cat b", "cat b"]
    answers.write_questions()
    assert [q["command"] for q in read_questions(answers.questions_file)] == ["cat a"]


def test_a_failed_read_is_not_kept(workdir):
    node = Node(workdir)
    share_fact_reads(node)
    assert node.get_fact(Cat, "missing") is None and node.get_fact(Cat, "missing") is None
    assert node.reads == 2
    (workdir / "missing").write_text("now\n")
    assert node.get_fact(Cat, "missing") == ["now"]


def reads_of_every_kind(node):
    return {"a": node.get_fact(Cat, "a"), "printf": node.get_fact(Printf, "no newline at the end"),
            "b": node.get_fact(Cat, "b", _sudo=True), "missing": node.get_fact(Cat, "missing")}


def test_the_next_run_asks_the_last_runs_questions_in_one_round_trip(workdir, tmp_path, monkeypatch):
    monkeypatch.setattr(fact_cache, "SUDO_CHECK", "true")  # sudo answers without a password
    project = tmp_path / "project"
    first, _ = run_once(workdir, project, reads_of_every_kind)
    assert len(first.ran) == 4
    written = project / ".saf/fact-questions/beta-10.0.0.2.json"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert [q["command"] for q in json.loads(written.read_text())] == ["cat a", "printf 'no newline at the end'",
                                                                       "cat b", "cat missing"]
    answers: dict = {}
    second, _ = run_once(workdir, project, lambda node: answers.update(reads_of_every_kind(node)))
    assert answers == {"a": ["one", "two"], "printf": ["no newline at the end"], "b": ["three"], "missing": None}
    # one script for the plain questions (and the sudo check), one for sudo's, then the failed question alone
    assert len(second.ran) == 3 and second.ran[2][0] == "cat missing"
    assert [arguments["_sudo"] for _, arguments in second.ran[:2]] == [False, True]
    assert "cat a" in second.ran[0][0] and "true" in second.ran[0][0] and "cat b" in second.ran[1][0]


def test_without_sudo_answering_the_sudo_questions_wait_for_their_own_reads(workdir, tmp_path, monkeypatch):
    monkeypatch.setattr(fact_cache, "SUDO_CHECK", "false")  # sudo would ask for a password
    project = tmp_path / "project"
    run_once(workdir, project, reads_of_every_kind)
    second, _ = run_once(workdir, project, reads_of_every_kind)
    assert [(text, arguments["_sudo"]) for text, arguments in second.ran[1:]] == [("cat b", True), ("cat missing", False)]
    assert "cat b" not in second.ran[0][0]


def test_only_sudo_questions_still_get_the_check_and_su_or_doas_are_never_asked_ahead(workdir, tmp_path, monkeypatch):
    monkeypatch.setattr(fact_cache, "SUDO_CHECK", "echo checked")
    path = tmp_path / ".saf/fact-questions/beta-10.0.0.2.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([{"command": "cat a", "arguments": {"_sudo": True}},
                                {"command": "cat b", "arguments": {"_sudo": True, "_su_user": "x"}},
                                {"command": "cat b", "arguments": {"_doas": True}}]))
    node = Node(workdir)
    answers = share_fact_reads(node, tmp_path)
    assert answers.ask_last_runs_questions() == 1
    assert [(("echo checked" in text), ("cat a" in text), arguments) for text, arguments in node.ran] == [
        (True, False, {}), (False, True, {"_sudo": True})]
    assert node.ran[1][0].count("SAF-FACT-") == 1  # the sudo script: its one question, no check


def test_a_failed_plain_batch_sends_no_sudo_batch_and_every_kept_answer_is_counted(workdir, tmp_path, monkeypatch):
    monkeypatch.setattr(fact_cache, "SUDO_CHECK", "true")
    monkeypatch.setattr(fact_cache, "BATCH_CHARS", 50)  # one question a script
    path = tmp_path / ".saf/fact-questions/beta-10.0.0.2.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([{"command": f"cat {name}", "arguments": {"_sudo": True}} for name in "ab"] +
                               [{"command": "cat a", "arguments": {}}]))
    node = Node(workdir)
    answers = share_fact_reads(node, tmp_path)
    assert answers.ask_last_runs_questions() == 3 and len(node.ran) == 3
    failing = Node(workdir)
    answers = share_fact_reads(failing, tmp_path)
    answers.run_command = lambda command, **arguments: (failing.ran.append(arguments), (False, CommandOutput([])))[1]
    assert answers.ask_last_runs_questions() == 0 and failing.ran == [{}]  # the plain one, then nothing


def test_a_question_not_asked_last_time_goes_to_the_node_and_is_written_for_next_time(workdir, tmp_path):
    project = tmp_path / "project"
    run_once(workdir, project, lambda node: node.get_fact(Cat, "a"))
    node, _ = run_once(workdir, project, lambda node: (node.get_fact(Cat, "a"), node.get_fact(Cat, "b")))
    assert [text for text, _ in node.ran][1:] == ["cat b"]
    assert [q["command"] for q in read_questions(project / ".saf/fact-questions/beta-10.0.0.2.json")] == \
        ["cat a", "cat b"]


def test_questions_not_asked_this_run_are_dropped_from_the_file(workdir, tmp_path):
    project = tmp_path / "project"
    run_once(workdir, project, lambda node: (node.get_fact(Cat, "a"), node.get_fact(Cat, "b")))
    run_once(workdir, project, lambda node: node.get_fact(Cat, "b"))
    assert [q["command"] for q in read_questions(project / ".saf/fact-questions/beta-10.0.0.2.json")] == ["cat b"]


def test_a_question_with_a_password_or_input_is_never_written(workdir, tmp_path):
    node = Node(workdir)
    answers = share_fact_reads(node, tmp_path)
    answers.reading += 1  # as while pyinfra reads a fact
    node.run_shell_command("cat a", _sudo=True, _sudo_password="hunter2")
    node.run_shell_command("cat b", _stdin="input")
    answers.write_questions()
    assert not (tmp_path / ".saf").exists()


def test_a_question_with_a_masked_secret_is_never_written(workdir, tmp_path):
    from pyinfra.api.command import MaskString
    node = Node(workdir)
    answers = share_fact_reads(node, tmp_path)
    answers.reading += 1
    node.run_shell_command(StringCommand("echo", MaskString("s3cret")))
    node.run_shell_command(StringCommand("cat", "a"))
    answers.write_questions()
    assert [q["command"] for q in read_questions(answers.questions_file)] == ["cat a"]
    assert "s3cret" not in answers.questions_file.read_text()


def test_commands_that_are_not_kept_reach_the_node_with_their_arguments(workdir):
    node = Node(workdir)
    share_fact_reads(node)
    node.run_shell_command(StringCommand("true"), _sudo=True, _chdir="/")  # an operation's
    node.get_fact(Verification, "a", _sudo=True)  # a live read's
    assert node.ran == [("true", {"_sudo": True, "_chdir": "/"}), ("cat a", {"_sudo": True})]


def test_nothing_is_written_without_a_project_or_without_a_question(workdir, tmp_path):
    run_once(workdir, None, lambda node: node.get_fact(Cat, "a"))
    run_once(workdir, tmp_path, lambda node: None)
    assert not (tmp_path / ".saf").exists()


def test_a_failed_batch_keeps_nothing_and_reads_still_work(workdir, tmp_path):
    project = tmp_path / "project"
    run_once(workdir, project, lambda node: node.get_fact(Cat, "a"))
    node = Node(workdir)
    answers = share_fact_reads(node, project)
    answers.run_command = lambda command, **arguments: (False, CommandOutput([]))
    assert answers.ask_last_runs_questions() == 0 and answers.answers == {}


def test_batch_script_runs_each_command_alone_and_reports_its_status():
    script = batch_script(["echo a", "exit 3", "printf b", "echo c >&2; echo d"], "TOKEN")
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert done.stdout.splitlines() == ["a", "TOKEN 0 0", "TOKEN 1 3", "bTOKEN 2 0", "d", "TOKEN 3 0"]
    assert done.stderr == ""
    assert split_batch(done.stdout.splitlines(), "TOKEN", 4) == {0: ["a"], 2: ["b"], 3: ["d"]}


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


def test_process_lists_are_read_live_because_a_script_of_questions_lists_itself():
    from saf.facts.ray import RayProcesses, RayProcessUnits
    script = batch_script(["ps -A -ww -o args="], "TOKEN-SEEN")
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert any("TOKEN-SEEN" in line and "ps -A" in line for line in done.stdout.splitlines())  # the script itself
    assert RayProcesses.read_live is True and RayProcessUnits.read_live is True
