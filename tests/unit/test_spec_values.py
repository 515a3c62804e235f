"""The rules of saf/spec/values.py and saf/spec/pins.py in whole sentences, through the real loader:
what each refusal says, where the Python table ends, and the control machine's home and project.

(Written to kill what the mutation run of saf/spec left alive: words nobody asserted, the edges of
the pin table, the control-side home mapping.)
"""

from __future__ import annotations

import pytest

from saf.spec import ClusterFileError, load_cluster
from saf.spec.pins import supported_python
from tests.conftest import PROJECT_DIR

NODES = [{"name": "alpha", "role": "head", "address": "10.0.0.1"},
         {"name": "beta", "role": "worker", "address": "10.0.0.2"}]


def problems(write_cluster, settings=None, nodes=None) -> list[str]:
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, write_cluster({"nodes": nodes or NODES, "settings": {"firewall": True,
                                                                                       **(settings or {})}}))
    return caught.value.problems


def loads(write_cluster, settings):
    return load_cluster(PROJECT_DIR, write_cluster({"nodes": NODES, "settings": {"firewall": True, **settings}}))


# --- Whole sentences --------------------------------------------------------------------------


def test_a_user_name_and_a_scope_id_are_refused_in_whole_sentences(write_cluster):
    nodes = [{**NODES[0], "ssh_user": "-l"}, {**NODES[1], "address": "fe80::1%a;b"}]
    assert problems(write_cluster, nodes=nodes) == [
        "node 'alpha' (nodes[0]), key ssh_user: '-l' is not a user name SAF accepts; a user name is lowercase "
        "letters, digits, '_', '.' and '-', starting with a letter or '_' (at most 32 characters), like arthurdell",
        "node 'beta' (nodes[1]), key address: 'fe80::1%a;b': its scope id 'a;b' is not an interface name; write "
        "the interface the address is on, like fe80::1%en0 (letters, digits, '_', '.' and '-', at most 15 "
        "characters)",
    ]


def test_a_user_name_has_at_most_32_characters(write_cluster):
    assert loads(write_cluster, {}) and load_cluster(PROJECT_DIR, write_cluster(
        {"nodes": [{**NODES[0], "ssh_user": "a" * 32}], "settings": {"firewall": True}}))
    assert problems(write_cluster, nodes=[{**NODES[0], "ssh_user": "a" * 33}])


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("venv_root", "~", "'~' is a home directory; SAF manages (and prunes) what is in venv_root on every node, so "
                       "give it a folder of its own, like ~/saf/venv or /opt/saf/venv"),
    ("pyenv_root", "/usr", "'/usr' is /usr, a folder of the system; SAF manages (and prunes) what is in pyenv_root "
                           "on every node, so give it a folder of its own, like ~/.pyenv or /opt/saf/pyenv"),
    ("wheelhouse", "/var", "'/var' is /var, a folder of the system; wheelhouse is a folder of SAF's own on the "
                           "control machine (relative paths are from the project directory), like "
                           ".saf/wheelhouse (or \"\" for none)"),
    ("python_source_cache", "/etc/x", "'/etc/x' is inside /etc, a folder of the system; python_source_cache is a "
                                      "folder of SAF's own on the control machine (relative paths are from the "
                                      "project directory), like .saf/python-source (or \"\" for none)"),
    ("ray_auth_token_file", "/", "'/' is /, a folder of the system; ray_auth_token_file is a file of SAF's own on "
                                 "the control machine (relative paths are from the project directory), like "
                                 ".saf/secrets/ray-auth-token"),
    ("venv_root", "~/saf\tvenv", "'~/saf\\tvenv' holds a tab; a path here may hold only ASCII letters, digits, '.', "
                                 "'_', '-' and '/' (and a leading ~/ for the home directory); SAF manages"),
    ("venv_root", "~/saf\rvenv", "'~/saf\\rvenv' holds a carriage return; a path here may hold only"),
    ("venv_root", "~arthur/venv", "'~arthur/venv' holds a '~' that is not a leading ~/; a path here may hold only"),
    ("venv_root", "~/saf/v~1", "'~/saf/v~1' holds a '~' that is not a leading ~/"),
    ("venv_root", "-x/venv", "'-x/venv' starts with '-', which a command reads as an option; write it as ./-x/venv"),
    ("venv_root", "~/Documents/../saf", "'~/Documents/../saf' holds '..'; write the path without it, as the folder it "
                                        "ends up in"),
    ("venv_root", "~/.gnupg/x/y", "'~/.gnupg/x/y' is inside ~/.gnupg, where the user's secrets are"),
    ("venv_root", "~/Desktop", "'~/Desktop' is ~/Desktop, a folder of the user's own"),
])
def test_path_settings_are_refused_in_whole_sentences(write_cluster, key, value, expected):
    [problem] = problems(write_cluster, {key: value})
    assert problem.startswith(f"key settings.{key}: {expected}")


@pytest.mark.parametrize("value", ["~/Desktop/saf", "~/Library/saf/venv", "/Users/a/Documents/venvs", "/etc-saf",
                                   "/opt/saf", "/usr/local/saf/venv", "/var/lib/saf/venv", "~/.sshx", "/homes"])
def test_folders_inside_personal_or_system_ones_are_fine(write_cluster, value):
    assert loads(write_cluster, {"venv_root": value}).settings.venv_root == value


@pytest.mark.parametrize(("value", "plain"), [
    ("http://mirror.lan/pyenv.git", "http://"), ("git://10.0.0.9/pyenv.git", "git://"),
])
def test_a_plain_url_is_refused_in_a_whole_sentence(write_cluster, value, plain):
    assert problems(write_cluster, {"pyenv_git_url": value}) == [
        f"key settings: pyenv_git_url is a plain {plain} URL: anyone on the network between a node and the server "
        "can change the pyenv it clones, and so the Python every node runs; use an https:// URL or a local path "
        "(or trusted_network: true, if no one else is on that network)"]


@pytest.mark.parametrize("value", [
    "http://mirror.lan/x://y", "git://a/b://c", "http://mirror.lan/py env.git", "ftp://mirror.lan/pyenv.git",
    "https://mirror.lan/x://y", "mirror.lan:pyenv.git", "git@github.com:pyenv/pyenv.git", "file://relative/path",
])
def test_what_is_no_plain_url_is_refused_even_on_a_trusted_network(write_cluster, value):
    assert problems(write_cluster, {"pyenv_git_url": value, "trusted_network": True}) == [
        f"key settings: pyenv_git_url {value!r} is not an https:// URL or a local path; pyenv is cloned from it on "
        "every node, so write it like https://github.com/pyenv/pyenv.git (no user name or password in it, letters, "
        "digits and '. _ ~ / -' in its path), or an absolute path or file:// URL on the nodes"]


def test_a_local_pyenv_path_is_judged_as_a_path(write_cluster):
    assert problems(write_cluster, {"pyenv_git_url": "file:///srv/$x"}) == [
        "key settings: pyenv_git_url is a local path that holds '$'; a path here may hold only ASCII letters, "
        "digits, '.', '_', '-' and '/' (and a leading ~/ for the home directory)"]


# --- The Python table's edges -----------------------------------------------------------------


def test_the_table_knows_what_it_was_checked_against_and_nothing_else():
    assert supported_python("ray", "2.46.0") is None  # older than the table: not judged
    assert supported_python("ray", "2.47.0").oldest == (3, 9)
    assert supported_python("ray", "2.51.2").newest == (3, 13)
    assert supported_python("ray", "2.52.0").oldest == (3, 10)
    assert supported_python("ray", "2.60.0").newest == (3, 14)  # the newest release checked is judged
    assert supported_python("ray", "2.60.1") is None  # newer than the table: not judged
    assert supported_python("mlx", "0.29.3").oldest == (3, 9) and supported_python("mlx", "0.29.4").oldest == (3, 10)
    assert supported_python("mlx", "0.28.0") is None and supported_python("mlx", "0.32.5") is None


def test_the_newest_release_in_the_table_is_judged(write_cluster):
    [problem] = problems(write_cluster, {"python_version": "3.15.0", "ray_version": "2.60.0", "mlx_version": "0.32.4"})
    assert problem == (
        "key settings: python_version 3.15.0 is not supported by ray 2.60.0 (its wheels are for Python 3.10 to "
        "3.14); pin a Python in that range, or change ray_version to a release that supports Python 3.15; and "
        "python_version 3.15.0 is not supported by mlx 0.32.4 (its wheels are for Python 3.10 to 3.14); pin a "
        "Python in that range, or change mlx_version to a release that supports Python 3.15")


def test_releases_older_than_the_table_are_not_judged(write_cluster):
    settings = loads(write_cluster, {"python_version": "3.14.1", "ray_version": "2.46.0", "mlx_version": "0.28.0"})
    assert settings.settings.ray_version == "2.46.0"


def test_python_3_9_0_is_the_oldest_and_2_and_3_8_are_refused_alone(write_cluster):
    assert loads(write_cluster, {"python_version": "3.9.0"})
    for old in ("3.8.20", "2.7.18", "3.0.1"):
        assert problems(write_cluster, {"python_version": old}) == [
            f"key settings: python_version {old} is older than any Ray or MLX SAF installs supports; pin Python "
            "3.9 or newer, like 3.9.23 (with the default pins) or 3.11.9"]


# --- The control machine: its home, the project -----------------------------------------------


def test_the_control_machine_s_home_is_known_by_its_path_too(write_cluster, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    assert problems(write_cluster, {"python_source_cache": "~/.ssh", "wheelhouse": str(home / ".aws" / "w")}) == [
        "key settings.wheelhouse: " f"{str(home / '.aws' / 'w')!r} is inside ~/.aws, where the user's secrets are; "
        "wheelhouse is a folder of SAF's own on the control machine (relative paths are from the project "
        "directory), like .saf/wheelhouse (or \"\" for none)",
        "key settings.python_source_cache: '~/.ssh' is ~/.ssh, where the user's secrets are; python_source_cache is a "
        "folder of SAF's own on the control machine (relative paths are from the project directory), like "
        ".saf/python-source (or \"\" for none)",
    ]
    assert loads(write_cluster, {"wheelhouse": "~/saf/wheels", "python_source_cache": str(home / "src")})


def test_the_project_directory_and_its_parents_are_refused(write_cluster):
    parent = str(PROJECT_DIR.parent)
    assert problems(write_cluster, {"wheelhouse": parent, "python_source_cache": str(PROJECT_DIR)}) == [
        f"key settings.wheelhouse: {parent!r} is a parent of the project directory; wheelhouse is a folder of SAF's "
        "own on the control machine (relative paths are from the project directory), like .saf/wheelhouse (or \"\" "
        "for none)",
        f"key settings.python_source_cache: {str(PROJECT_DIR)!r} is the project directory itself; python_source_cache "
        "is a folder of SAF's own on the control machine (relative paths are from the project directory), like "
        ".saf/python-source (or \"\" for none)",
    ]


def test_the_token_file_is_not_read_when_ray_auth_is_off(write_cluster, tmp_path):
    (tmp_path / "token").mkdir()
    settings = {"python_version": "3.11.9", "ray_version": "2.52.0", "ray_auth": "off",
                "ray_auth_token_file": str(tmp_path / "token")}
    assert loads(write_cluster, settings).settings.ray_auth == "off"
    [problem] = problems(write_cluster, {**settings, "ray_auth": "auto"})
    assert "is a folder, not a file" in problem


def test_overlapping_node_folders_are_refused_either_way(write_cluster):
    for settings in ({"venv_root": "~/.pyenv/venvs"}, {"pyenv_root": "saf/venv/pyenv"},
                     {"venv_root": "/opt/saf", "pyenv_root": "/opt/saf"}):
        [problem] = problems(write_cluster, settings)
        assert "overlap; SAF prunes venv_root and pyenv manages its root, so give each a folder of its own" in problem
    assert loads(write_cluster, {"venv_root": "/opt/saf/venv", "pyenv_root": "~/opt/saf/venv/pyenv"})
    assert loads(write_cluster, {"venv_root": "~/saf/venv", "pyenv_root": "~/saf/venv2"})
