"""`saf launch` without a cluster: what is shipped to the head (the project, never a home's
credentials or what git ignores, the size checked before anything is read), the remote line that
runs the driver, and the driver's rank (a real child process: output, exit status, stop) and verdict."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from saf.launch import (
    EXCLUDED,
    LaunchError,
    driver_command,
    gitignore_pattern,
    home_path,
    launch,
    pack,
    refuse_non_project,
    shipment,
)
from saf.mlx_ring import UnknownNodes, launch_nodes
from saf.node_scripts import DIRECTORY
from saf.spec import load_cluster
from tests.conftest import PROJECT_DIR
from tests.unit.bounded import bounded  # noqa: F401 - autouse: every test here is time-bounded

sys.path.insert(0, str(DIRECTORY))
import launch_driver  # noqa: E402 - a node script, imported as the head runs it

THREE = [{"name": "alpha", "role": "head", "address": "10.0.0.1", "ssh_user": "saf"},
         {"name": "beta", "role": "worker", "address": "10.0.0.2"},
         {"name": "gamma", "role": "worker", "address": "gamma.lan", "ip": "10.0.0.3"}]


def cluster(write_cluster, **settings):
    # Ray 2.49.1 has no token auth: the firewall is the cluster file's protection unless a test says otherwise
    return load_cluster(PROJECT_DIR, write_cluster({"nodes": THREE, "settings": {"firewall": True, **settings}}))


def test_the_working_directory_is_shipped_without_vcs_venvs_or_caches(tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "small.txt").write_text("x")
    for name in (".git", ".venv", "__pycache__", ".saf"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "big").write_bytes(b"0" * 1000)
    with tarfile.open(fileobj=io.BytesIO(pack(tmp_path)), mode="r:gz") as tar:
        names = set(tar.getnames())
        assert tar.getmember("driver.py").mode == 0o644
    assert {"work/train.py", "work/data/small.txt", "driver.py", "saf_verify_node/ring.py"} <= names
    assert not any(set(Path(name).parts) & EXCLUDED for name in names)


def test_the_driver_finds_the_ring_helpers_it_was_shipped_with(tmp_path):
    """Unpacked as the head unpacks it, the launch directory holds the verification's node-side
    package, importable without SAF (an isolated Python, run elsewhere) as the driver imports it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    with tarfile.open(fileobj=io.BytesIO(pack(project)), mode="r:gz") as tar:
        tar.extractall(tmp_path / "launch")
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from saf_verify_node.ring import ring_hosts; "
              "from saf_verify_node.scheduling import on_node, wait_for_nodes; "
              "print(ring_hosts(['10.0.0.1', '10.0.0.2'], 6390))")
    shown = subprocess.run([sys.executable, "-I", "-c", script, str(tmp_path / "launch")], capture_output=True,
                           text=True, cwd="/", timeout=30)
    assert shown.stdout == "[['10.0.0.1:6390'], ['10.0.0.2:6391']]\n", shown.stderr


SECRET = "AKIA-NEVER-SHIPPED"
# a project folder as a careless user has it: credentials beside the program, ignored outputs
TREE = {
    ".ssh/id_ed25519": SECRET, ".ssh/config": "Host *", ".aws/credentials": SECRET, ".env": SECRET,
    ".env.local": SECRET, "deploy.pem": SECRET, "tls/server.key": SECRET, "tls/server.crt": "public",
    "backup/id_rsa.old": SECRET, ".config/gcloud/credentials.db": SECRET, ".config/app.toml": "ok",
    ".docker/config.json": SECRET, ".netrc": SECRET, "sub/.pgpass": SECRET,
    "train.py": "print('hi')\n", "data.csv": "1,2\n", "data/more.csv": "3,4\n",
    ".gitignore": "# outputs\n*.log\n!keep.log\nbuild/\n/top-only.txt\nruns/**/ckpt\n",
    "run.log": "x", "keep.log": "kept", "build/out.bin": "x", "top-only.txt": "x", "data/top-only.txt": "kept",
    "runs/a/b/ckpt": "x", "runs/a/notes.txt": "kept",
    "notes/.gitignore": "draft*\n", "notes/draft1.md": "x", "notes/final.md": "kept",
}
SHIPPED = {"train.py", "data.csv", "data/more.csv", ".gitignore", "keep.log", "data/top-only.txt",
           "runs/a/notes.txt", "notes/.gitignore", "notes/final.md", "tls/server.crt", ".config/app.toml"}


def make_tree(root: Path, tree: dict[str, str] = TREE) -> Path:
    for relative, text in tree.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def shipped_names(workdir: Path) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(pack(workdir)), mode="r:gz") as tar:
        contents = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
        names = set(tar.getnames())
    assert SECRET.encode() not in contents
    assert {"driver.py", "saf_verify_node/ring.py"} <= names
    return {name[len("work/"):] for name in names if name.startswith("work/")}


def test_credentials_keys_and_what_gitignore_ignores_are_never_shipped(tmp_path):
    workdir = make_tree(tmp_path / "project")
    assert shipped_names(workdir) == SHIPPED  # .ssh/ as a whole (its config too): never shipped


def test_links_are_shipped_as_links_never_followed_and_never_as_a_credentials_folder(tmp_path):
    outside = make_tree(tmp_path / "outside", {"id_ed25519": SECRET, "notes.txt": "x"})
    workdir = make_tree(tmp_path / "project", {"train.py": "x"})
    (workdir / ".ssh").symlink_to(outside)  # a link to a folder, named as a credentials folder
    (workdir / "shared").symlink_to(outside)  # a link to a folder: the link itself, not what it holds
    (workdir / "model.bin").symlink_to(outside / "notes.txt")
    with tarfile.open(fileobj=io.BytesIO(pack(workdir)), mode="r:gz") as tar:
        links = {member.name: member.linkname for member in tar.getmembers() if member.issym()}
    assert links == {"work/shared": str(outside), "work/model.bin": str(outside / "notes.txt")}
    assert shipped_names(workdir) == {"train.py", "shared", "model.bin"}


def test_git_s_own_answer_and_the_gitignore_reader_agree(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    plain, repo = make_tree(tmp_path / "plain"), make_tree(tmp_path / "repo")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".git" / "info" / "exclude").write_text("data.csv\n")  # git's own excludes count in a work tree
    assert shipped_names(repo) == shipped_names(plain) - {"data.csv"}
    subprocess.run(["git", "-C", str(repo), "add", "-f", "run.log"], check=True)  # tracked: shipped though ignored
    assert "run.log" in shipped_names(repo)
    # run from a sub-folder of the work tree: the root's .gitignore still counts, paths are the folder's
    assert shipped_names(repo / "notes") == {".gitignore", "final.md"}
    # a folder the repository ignores as a whole is shipped as a folder of its own, by its own .gitignore
    make_tree(repo / "build" / "exp", {"a.py": "x", "b.log": "x", ".gitignore": "*.tmp\n", "c.tmp": "x"})
    assert shipped_names(repo / "build" / "exp") == {"a.py", "b.log", ".gitignore"}


@pytest.mark.parametrize(("line", "ignored", "kept"), [
    ("*.log", ["a.log", "x/y/a.log"], ["a.logx", "log"]),
    ("/top", ["top", "top/"], ["x/top"]),
    ("build/", ["build/", "x/build/"], ["build"]),  # a folder only (the trailing / marks a folder here)
    ("a/*.txt", ["a/b.txt"], ["a/b/c.txt", "x/a/b.txt"]),
    ("**/cache", ["cache", "x/y/cache"], ["cachex"]),
    ("out/**", ["out/a", "out/a/b"], ["out", "x/out/a"]),
    ("a/**/z", ["a/z", "a/b/z", "a/b/c/z"], ["b/a/z"]),
    ("file?.[ch]", ["file1.c", "d/fileA.h"], ["file10.c", "file1.o"]),
    ("[!a]bc", ["xbc"], ["abc"]),
])
def test_a_gitignore_line_matches_as_git_reads_it(line, ignored, kept):
    pattern = gitignore_pattern(line + "\n")
    for path in ignored:
        assert pattern.regex.match(path.rstrip("/")) and (path.endswith("/") or not pattern.dir_only), path
    for path in kept:
        assert not pattern.regex.match(path) or (pattern.dir_only and not path.endswith("/")), path
    assert gitignore_pattern("# a comment\n") is None and gitignore_pattern("   \n") is None


def test_stderr_names_what_was_left_out_and_how_many_never_the_contents(tmp_path):
    summary = shipment(make_tree(tmp_path / "project")).summary()
    assert summary.startswith(f"saf launch: shipping {len(SHIPPED)} files (")
    assert summary.endswith("; left out: 11 credentials and keys (.aws/, .config/gcloud/, .docker/config.json, "
                            ".env, .env.local, .netrc, .ssh/, backup/id_rsa.old and 3 more); 5 ignored by .gitignore "
                            "(build/, notes/draft1.md, run.log, runs/a/b/ckpt, top-only.txt)"), summary
    assert SECRET not in summary


@pytest.mark.parametrize("where", ["/", "~", "~/..", "~/.ssh", "~/.ssh/keys", "~/.aws", "~/.config/gcloud/x",
                                   "~/Documents", "~/Downloads", "~/Library"])
def test_a_home_its_parents_and_personal_folders_are_refused_with_the_fix(tmp_path, where):
    home = tmp_path / "home" / "ada"
    workdir = Path(where.replace("~", str(home)))
    workdir.mkdir(parents=True, exist_ok=True)
    with pytest.raises(LaunchError) as refused:
        refuse_non_project(workdir, home)
    assert str(refused.value).startswith(f"saf launch ships the directory it runs from to every node, and "
                                         f"{os.path.realpath(workdir)} is ")
    assert str(refused.value).endswith("cd into the program's own project folder (its code and small data files) "
                                       "and run saf launch there")


@pytest.mark.parametrize("where", ["~/projects/train", "~/Documents/thesis-code", "~/.config-tools", "/srv/jobs"])
def test_a_project_folder_anywhere_else_is_fine(tmp_path, where):
    home = tmp_path / "home" / "ada"
    refuse_non_project(Path(where.replace("~", str(home))), home)


def test_a_launch_from_the_home_folder_is_refused_before_anything_is_sent(tmp_path, monkeypatch, write_cluster):
    home = make_tree(tmp_path / "home")
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(LaunchError, match=r"is your home folder: that would send your files"):
        launch(cluster(write_cluster), None, ["python", "train.py"], home)  # no SSH: refused before


def test_the_size_is_checked_before_any_file_is_read(tmp_path):
    with open(tmp_path / "huge.bin", "wb") as huge:  # sparse: 64 GiB that reading would take minutes to pack
        huge.truncate(64 << 30)
    started = time.monotonic()
    with pytest.raises(LaunchError, match=r"holds 65536 MiB to ship to every node \(at most 100 MiB\)"):
        pack(tmp_path)
    assert time.monotonic() - started < 2


def test_a_working_directory_too_large_to_ship_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("saf.launch.MAX_WORKDIR_BYTES", 1 << 20)
    (tmp_path / "a.bin").write_bytes(b"0" * (1 << 19))
    (tmp_path / "b.bin").write_bytes(b"0" * (1 << 19))
    assert pack(tmp_path)  # exactly the limit, over two files: shipped
    (tmp_path / "c.bin").write_bytes(b"0" * (1 << 19))
    with pytest.raises(LaunchError) as refused:
        pack(tmp_path)
    assert str(refused.value) == (
        f"the working directory {tmp_path} holds 1 MiB to ship to every node (at most 1 MiB); run saf launch from a "
        "directory with only the program and its small files, and let the ranks read large data from where it lives")


def test_node_paths_become_remote_shell_words_under_home():
    assert home_path("~/saf/venv/current/bin/python") == '"$HOME"/saf/venv/current/bin/python'
    assert home_path(".saf/launch/ab12") == '"$HOME"/.saf/launch/ab12'
    assert home_path("/opt/saf venv/bin/python") == "'/opt/saf venv/bin/python'"


def test_the_driver_runs_with_the_venv_s_python_for_the_chosen_nodes_in_cluster_order(write_cluster):
    line = driver_command(cluster(write_cluster, mlx_ring_port=7000), "gamma,alpha", '"$HOME"/.saf/launch/x',
                          ["python", "train.py", "--name", "it's"])
    assert line.startswith('stty -onlcr 2>/dev/null; cd "$HOME"/.saf/launch/x && exec env ')
    assert '"$HOME"/saf/venv/current/bin/python driver.py --address=10.0.0.1:6380 ' in line
    assert """'--nodes=[{"name": "alpha", "ip": "10.0.0.1"}, {"name": "gamma", "ip": "10.0.0.3"}]'""" in line
    assert line.endswith("--port=7000 --backend=ring -- python train.py --name 'it'\"'\"'s'")


def test_token_auth_reaches_the_driver_as_a_path_never_the_token(write_cluster, tmp_path):
    line = driver_command(cluster(write_cluster, ray_version="2.52.0", python_version="3.11.2",
                                  ray_auth_token_file=str(tmp_path / "t")), None, "d", ["true"])
    assert 'env RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$HOME"/.saf/ray/auth-token ' in line
    assert "exec env  " in driver_command(cluster(write_cluster), None, "d", ["true"])  # Ray 2.49.1: no auth
    off = driver_command(cluster(write_cluster, ray_version="2.52.0", python_version="3.11.2", ray_auth="off"),
                         None, "d", ["true"])
    assert "exec env RAY_AUTH_MODE=disabled " in off  # off means off, on a Ray that has it


@pytest.mark.parametrize(("venv_root", "python"), [("~/saf/venv/", '"$HOME"/saf/venv/current/bin/python'),
                                                   ("/opt/saf/venv", "/opt/saf/venv/current/bin/python")])
def test_the_driver_runs_the_current_venv_s_python_wherever_it_lives(write_cluster, venv_root, python):
    assert f" {python} driver.py " in driver_command(cluster(write_cluster, venv_root=venv_root), None, "d", ["x"])


def test_named_nodes_must_be_the_cluster_s(write_cluster):
    nodes = cluster(write_cluster).nodes
    assert [node.name for node in launch_nodes(nodes, "gamma, alpha")] == ["alpha", "gamma"]
    assert [node.name for node in launch_nodes(nodes, None)] == ["alpha", "beta", "gamma"]
    with pytest.raises(UnknownNodes, match="--nodes names delta; the cluster file's nodes are alpha, beta, gamma"):
        launch_nodes(nodes, "alpha,delta")
    with pytest.raises(UnknownNodes, match="--nodes names delta, epsilon; "):
        launch_nodes(nodes, "delta,alpha,epsilon")
    with pytest.raises(UnknownNodes, match="--nodes names no node"):
        launch_nodes(nodes, ",")


def read_all(rank) -> tuple[list[str], int]:
    lines = []
    while True:
        answer = rank.read()
        lines += answer["lines"]
        if answer["exit"] is not None:
            return lines, answer["exit"]


def test_a_rank_runs_its_command_with_its_rank_and_hostfile_and_reports_its_status():
    rank = launch_driver.Rank()
    script = ("import json, os, sys; print(os.environ['MLX_RANK'], os.environ['SAF_NODE']); "
              "print(json.load(open(os.environ['MLX_HOSTFILE']))); sys.exit(3)")
    assert rank.start(1, [["10.0.0.1:6390"], ["10.0.0.2:6391"]], [sys.executable, "-c", script], "beta") == ""
    hostfile = rank.hostfile
    lines, status = read_all(rank)
    assert lines == ["1 beta", "[['10.0.0.1:6390'], ['10.0.0.2:6391']]"] and status == 3
    assert not os.path.exists(hostfile)


def test_a_rank_whose_command_cannot_start_says_why():
    assert launch_driver.Rank().start(0, [], ["/nonexistent/python"], "alpha").startswith(
        "cannot run /nonexistent/python: No such file or directory")


def test_stopping_a_rank_ends_its_whole_process_group():
    rank = launch_driver.Rank()
    script = "import subprocess, sys, time; subprocess.Popen(['sleep', '60']); print('up', flush=True); time.sleep(60)"
    rank.start(0, [], [sys.executable, "-c", script], "alpha")
    assert rank.read()["lines"] == ["up"] or rank.read()["lines"] == ["up"]
    started = time.monotonic()
    rank.stop()
    assert time.monotonic() - started < launch_driver.STOP_GRACE_S
    _, status = read_all(rank)
    assert status == launch_driver.SIGNAL_STATUS + 15  # SIGTERM
    assert not group_alive(rank.process.pid)  # the child's sleep went with it


def process_state(pid: str) -> tuple[str, str, str]:
    """(state, parent, process group) from /proc/PID/stat; a gone process is ("X", "0", "0")."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return tuple(stat.read().rsplit(")", 1)[1].split()[:3])
    except (OSError, IndexError):
        return ("X", "0", "0")


def group_alive(pgid: int, patience: float = 3.0) -> bool:
    """Whether a process of the group is still running (not a zombie waiting for init to reap it)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if not any(int(pgrp) == pgid and state != "Z" for state, _, pgrp in map(process_state, os.listdir("/proc"))):
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize(("codes", "worst"), [({"a": 0, "b": 0}, 0), ({"a": 0, "b": 1}, 1), ({"a": 3, "b": 1}, 3),
                                              ({"a": 1, "b": 143}, 143), ({}, 0)])
def test_the_launch_exits_with_the_worst_rank_s_status(codes, worst):
    assert launch_driver.exit_status(codes) == worst


def test_hang_up_ends_a_session_that_ignores_ctrl_c_within_its_bounds():
    import signal
    import subprocess
    import sys
    import time

    from saf.launch import hang_up

    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
                                 "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "ready"
    stubborn.send_signal(signal.SIGINT)
    started = time.monotonic()
    hang_up(stubborn, grace_s=0.5)
    assert stubborn.poll() == -signal.SIGKILL  # neither Ctrl-C nor SIGTERM ended it: killed
    assert time.monotonic() - started < 5


def test_hang_up_leaves_a_session_that_quit_by_itself_alone():
    import subprocess
    import sys

    from saf.launch import hang_up

    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    hang_up(quick, grace_s=5)
    assert quick.returncode == 0  # it ended on its own: not terminated
