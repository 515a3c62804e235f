"""Hostile and careless cluster files: each one in tests/fixtures/hostile is refused before any host,
through the real loader and the real CLI, with the words it must say (its ``# must say:`` lines).

The corpus holds values that would reach a unit, a plist, a shell or an ssh argv (newlines,
quotes, options), folders SAF must not own or prune, pins no Ray or MLX runs on, URLs anyone on
the way can change, and a Ray open to the network. Beside it: look-alikes that are fine, and the
token file, which must be this user's private regular file holding a token of SAF's form.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from saf.spec import ClusterFileError, load_cluster
from tests.conftest import PROJECT_DIR

CORPUS = sorted((Path(__file__).resolve().parent.parent / "fixtures" / "hostile").glob("*.yaml"))
MUST_SAY = "# must say: "
NODES = [{"name": "alpha", "role": "head", "address": "10.0.0.1", "ssh_user": "arthurdell"},
         {"name": "beta", "role": "worker", "address": "10.0.0.2", "ssh_user": "arthurdell"}]


def must_say(path: Path) -> list[str]:
    return [json.loads(line[len(MUST_SAY):]) for line in path.read_text().splitlines() if line.startswith(MUST_SAY)]


def refusal(path: Path) -> ClusterFileError:
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, path)
    return caught.value


def test_the_corpus_is_there_and_every_file_says_what_it_must_say():
    assert len(CORPUS) >= 50
    assert all(must_say(path) for path in CORPUS)


@pytest.mark.parametrize("path", CORPUS, ids=[path.stem for path in CORPUS])
def test_a_hostile_cluster_file_is_refused_with_its_message(path):
    error = refusal(path)
    message = str(error)
    assert message.startswith(f"Cannot use the cluster file {path}: ")
    assert len(error.problems) == 1, message  # the hostile value is the file's only problem
    for words in must_say(path):
        assert words in message
    assert "Traceback" not in message


@pytest.mark.parametrize("path", CORPUS, ids=[path.stem for path in CORPUS])
def test_the_cli_refuses_it_with_status_2_before_any_host(path, tmp_path):
    env = {"SAF_CLUSTER": str(path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # a home that is not the project
    result = subprocess.run([sys.executable, "-m", "pyinfra", "inventory.py", "debug-inventory"], cwd=PROJECT_DIR,
                            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"saf: Cannot use the cluster file {path}" in result.stderr
    assert must_say(path)[0] in result.stderr
    assert "Traceback" not in output and "Connecting" not in output
    assert not Path("/tmp/saf-pwned").exists()


# --- Look-alikes that are fine ----------------------------------------------------------------


@pytest.mark.parametrize("settings", [
    {"venv_root": "~/saf/venv", "pyenv_root": "~/.pyenv"},
    {"venv_root": "/opt/saf/venv", "pyenv_root": "/opt/saf/pyenv"},
    {"venv_root": "saf/venv", "pyenv_root": "/Users/arthurdell/.pyenv"},
    {"venv_root": "~/.local/saf-venvs", "pyenv_root": "/usr/local/saf/pyenv"},
    {"venv_root": "/home/saf/saf/venv", "pyenv_root": "~/saf/pyenv"},
    {"venv_root": "~/saf/venv-2.49_a", "pyenv_root": "~/.pyenv"},
    {"wheelhouse": ".saf/wheelhouse", "python_source_cache": ".saf/python-source"},
    {"wheelhouse": "", "python_source_cache": ""},
    {"wheelhouse": "~/saf-cache/wheels", "python_source_cache": "/var/cache/saf"},
    {"pyenv_git_url": "https://github.com/pyenv/pyenv.git"},
    {"pyenv_git_url": "https://mirror.example.com:8443/git/pyenv.git"},
    {"pyenv_git_url": "/srv/git/pyenv.git"},
    {"pyenv_git_url": "file:///srv/git/pyenv.git"},
    {"pyenv_git_url": "git://10.77.0.1/pyenv.git", "trusted_network": True},
    {"python_version": "3.13.5"},
    {"python_version": "3.11.9", "ray_version": "2.52.0"},
    {"python_version": "3.14.0", "ray_version": "2.60.0", "mlx_version": "0.30.0"},
    {"python_version": "3.15.0", "ray_version": "2.61.0", "mlx_version": "0.33.0"},  # not in the table: not judged
])
def test_look_alikes_that_are_fine_load(write_cluster, settings):
    cluster = load_cluster(PROJECT_DIR, write_cluster({"nodes": NODES, "settings": {"firewall": True, **settings}}))
    for key, value in settings.items():
        assert getattr(cluster.settings, key) == value


@pytest.mark.parametrize(("key", "value"), [
    ("address", "fe80::1%en0"), ("address", "fe80::1%bridge0"), ("address", "fe80::1%utun_3.1-a"),
    ("ssh_user", "_saf.user-1"), ("ssh_user", "arthurdell"),
])
def test_node_values_that_are_fine_load(write_cluster, key, value):
    nodes = [NODES[0], {**NODES[1], key: value}]
    cluster = load_cluster(PROJECT_DIR, write_cluster({"nodes": nodes, "settings": {"firewall": True}}))
    assert getattr(cluster.node("beta"), key) == value


@pytest.mark.parametrize(("settings", "protection"), [
    ({"firewall": True}, "firewall"),
    ({"trusted_network": True}, "none: trusted network"),
    ({"python_version": "3.11.9", "ray_version": "2.52.0"}, "token auth"),
    ({"python_version": "3.11.9", "ray_version": "2.52.0", "firewall": True, "dashboard_bind": "cluster"},
     "token auth and firewall"),
    ({"firewall": True, "dashboard_bind": "cluster"}, "firewall"),
    ({"python_version": "3.11.9", "ray_version": "2.52.0", "ray_auth": "off", "trusted_network": True},
     "none: trusted network"),
])
def test_a_cluster_that_loads_says_what_protects_its_ray(write_cluster, settings, protection):
    from saf.auth import protection as protection_of
    assert protection_of(load_cluster(PROJECT_DIR, write_cluster({"nodes": NODES, "settings": settings})).settings) \
        == protection


def test_the_lab_s_cluster_file_trusts_its_private_bridge_unless_told_otherwise(tmp_path):
    """The lab's nodes sit on a bridge private to this machine: its generated file says so."""
    from saf.auth import protection
    from saf.lab.api import Lab
    lab = Lab(tmp_path)
    for name in ("alpha", "beta"):
        (lab.layout.node_dir(name) / "root").mkdir(parents=True)
    for key_file in (lab.layout.ssh_key, lab.layout.known_hosts):
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text("k")
    default = load_cluster(PROJECT_DIR, lab.write_cluster_file(["alpha", "beta"], path=tmp_path / "lab.yaml"))
    assert default.settings.trusted_network is True and protection(default.settings) == "none: trusted network"
    assert default.settings.pyenv_git_url.startswith("git://")  # plain git:// only on a trusted network
    told = lab.write_cluster_file(["alpha", "beta"], settings={"trusted_network": False, "firewall": True,
                                                               "pyenv_git_url": "/srv/pyenv.git"},
                                  path=tmp_path / "firewalled.yaml")
    assert protection(load_cluster(PROJECT_DIR, told).settings) == "firewall"


# --- The token file ---------------------------------------------------------------------------

TOKEN = "0123456789abcdef" * 4


def token_cluster(write_cluster, token_file: Path):
    settings = {"python_version": "3.11.9", "ray_version": "2.52.0", "ray_auth_token_file": str(token_file)}
    return write_cluster({"nodes": NODES, "settings": settings})


def private(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(("content", "expected"), [
    ("", "is empty: delete it to have a new one generated"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
     "does not hold a token of SAF's form (64 lowercase hex characters, and nothing else: never a key"),
    (TOKEN.upper(), "does not hold a token of SAF's form"),
    (TOKEN + "\n" + TOKEN, "does not hold a token of SAF's form"),
    (TOKEN[:-1], "does not hold a token of SAF's form"),
    (" " + TOKEN, "does not hold a token of SAF's form"),
])
def test_a_token_file_that_holds_something_else_is_refused(write_cluster, tmp_path, content, expected):
    token_file = private(tmp_path / "token", content)
    error = refusal(token_cluster(write_cluster, token_file))
    assert f"key settings.ray_auth_token_file: the Ray auth token file {token_file} {expected}" in str(error)
    assert "BEGIN" not in str(error)  # what the file holds is never shown


@pytest.mark.parametrize("content", [TOKEN, TOKEN + "\n"])
def test_a_token_of_saf_s_form_is_used(write_cluster, tmp_path, content):
    from saf.auth import ensure_control_token
    token_file = private(tmp_path / "token", content)
    assert load_cluster(PROJECT_DIR, token_cluster(write_cluster, token_file))
    assert ensure_control_token(token_file) == token_file


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_a_token_file_others_can_read_or_change_is_refused(write_cluster, tmp_path, mode):
    token_file = private(tmp_path / "token", TOKEN)
    token_file.chmod(mode)
    message = str(refusal(token_cluster(write_cluster, token_file)))
    assert f"can be read or changed by other users (mode {mode:04o}); make it private with chmod 600 {token_file}" \
        in message and "saf rotate-token" in message


def test_a_token_file_that_is_a_folder_or_a_link_to_one_is_refused(write_cluster, tmp_path):
    folder = tmp_path / "token"
    folder.mkdir()
    link = tmp_path / "link"
    link.symlink_to(folder)
    for path in (folder, link):
        assert f"the Ray auth token file {path} is a folder, not a file; point ray_auth_token_file at the token " \
               "file itself" in str(refusal(token_cluster(write_cluster, path)))


def test_a_token_file_that_is_a_pipe_or_a_dangling_link_is_refused(write_cluster, tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe, 0o600)
    assert f"{pipe} is not a regular file" in str(refusal(token_cluster(write_cluster, pipe)))
    assert "/dev/null' is inside /dev, a folder of the system" in str(
        refusal(token_cluster(write_cluster, Path("/dev/null"))))
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert f"{dangling} is a link to nothing" in str(refusal(token_cluster(write_cluster, dangling)))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_token_file_of_another_user_is_refused(write_cluster, tmp_path):
    token_file = private(tmp_path / "token", TOKEN)
    os.chown(token_file, 12345, 12345)
    assert "belongs to another user (uid 12345)" in str(refusal(token_cluster(write_cluster, token_file)))


def test_the_deploy_never_pushes_a_token_file_it_refuses(tmp_path):
    from saf.auth import TokenFileError, ensure_control_token
    key = private(tmp_path / "id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(TokenFileError, match="does not hold a token of SAF's form"):
        ensure_control_token(key)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(TokenFileError, match="is a folder, not a file"):
        ensure_control_token(folder)


def test_a_token_file_is_checked_only_where_token_auth_is_on(write_cluster, tmp_path):
    """Without token auth the file is never read or pushed, so what is there does not matter."""
    folder = tmp_path / "token"
    folder.mkdir()
    path = write_cluster({"nodes": NODES, "settings": {"firewall": True, "ray_auth_token_file": str(folder)}})
    assert load_cluster(PROJECT_DIR, path).settings.ray_auth_token_file == str(folder)


def test_the_corpus_files_are_plain_yaml():
    for path in CORPUS:
        assert isinstance(yaml.safe_load(path.read_text()), dict)
