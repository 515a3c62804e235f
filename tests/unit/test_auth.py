"""Ray token authentication: the mode per Ray version, the control-side token, the settings."""

from __future__ import annotations

import shlex

import pytest

import saf.wheelhouse
from saf.auth import TokenFileError, auth_environment, auth_mode, ensure_control_token, rotate_control_token
from saf.spec import ClusterFileError, load_cluster
from saf.verify.fact import ClusterVerification
from saf.wheelhouse import WheelhouseError, platform_key, wheel_platforms
from tests.conftest import PROJECT_DIR

ONE_NODE = [{"name": "alpha", "role": "head", "address": "10.0.0.1"}]


@pytest.mark.parametrize("setting, ray, mode", [
    ("auto", "2.49.1", None), ("auto", "2.51.2", None), ("auto", "2.52.0", "token"), ("auto", "2.60.0", "token"),
    ("token", "2.52.1", "token"), ("off", "2.60.0", "disabled"), ("off", "2.49.1", None),
])
def test_the_mode_follows_the_setting_and_what_the_pinned_ray_has(setting, ray, mode):
    assert auth_mode(setting, ray) == mode


def test_the_environment_names_the_token_file_never_the_token():
    assert auth_environment("token", "/home/saf/.saf/ray/auth-token") == (
        ("RAY_AUTH_MODE", "token"), ("RAY_AUTH_TOKEN_PATH", "/home/saf/.saf/ray/auth-token"))
    assert auth_environment("disabled", "/x") == (("RAY_AUTH_MODE", "disabled"),)
    assert auth_environment(None, "/x") == ()


def test_the_control_token_is_generated_once_private_and_kept(tmp_path):
    path = tmp_path / "secrets" / "ray-auth-token"
    token = ensure_control_token(path).read_text()
    assert len(token) == 64 and int(token, 16) >= 0
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert ensure_control_token(path).read_text() == token


def test_rotation_replaces_the_token_and_keeps_it_private(tmp_path):
    path = ensure_control_token(tmp_path / "ray-auth-token")
    old = path.read_text()
    rotate_control_token(path)
    assert path.read_text() != old and len(path.read_text()) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["ray-auth-token"]  # no staging file left


def test_an_empty_token_file_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "ray-auth-token"
    path.write_text("")
    path.chmod(0o600)
    with pytest.raises(TokenFileError, match="delete it to have a new one generated"):
        ensure_control_token(path)


def test_token_auth_on_a_ray_that_predates_it_is_refused(write_cluster):
    path = write_cluster({"nodes": ONE_NODE, "settings": {"ray_auth": "token"}})
    with pytest.raises(ClusterFileError) as caught:
        load_cluster(PROJECT_DIR, path)
    message = str(caught.value)
    assert "key settings: ray_auth is token but ray_version 2.49.1 has no token authentication" in message
    assert "raise ray_version, or set ray_auth: auto" in message


def test_an_unknown_auth_mode_is_refused(write_cluster):
    path = write_cluster({"nodes": ONE_NODE, "settings": {"ray_auth": "yes"}})
    with pytest.raises(ClusterFileError, match=r"key settings.ray_auth: is 'yes'; it must be one of 'auto', 'token'"):
        load_cluster(PROJECT_DIR, path)


def test_without_a_wheelhouse_the_index_is_asked_and_an_impossible_pin_stops_the_run():
    """A real query of the package index (pip's dry run, no download of dependencies)."""
    platforms = wheel_platforms("Darwin", "arm64", "15.1")
    key = platform_key("Darwin", "arm64", "15.1", "3.9.23")
    saf.wheelhouse.check_pins_available(("mlx==0.29.1",), platforms=platforms, python_version="3.9.23",
                                        key=key, node="beta")
    with pytest.raises(WheelhouseError) as caught:
        saf.wheelhouse.check_pins_available(("mlx==0.32.4",), platforms=platforms, python_version="3.9.23",
                                            key=key, node="beta")
    message = str(caught.value)
    assert message.startswith("mlx==0.32.4 has no wheel for Python 3.9.23 on macosx_15_0_arm64 (node beta).")
    assert "Nearest versions that do: " in message and "0.29.3" in message


def test_a_setting_on_one_of_rays_fixed_ports_is_refused(write_cluster):
    path = write_cluster({"nodes": ONE_NODE, "settings": {"metrics_export_port": 44217}})
    with pytest.raises(ClusterFileError, match="metrics_export_port and Ray's own fixed metrics port are both 44217"):
        load_cluster(PROJECT_DIR, path)


def test_the_verification_driver_gets_its_environment_as_quoted_words():
    command = ClusterVerification().command(
        "/Users/a b/saf/venv/current/bin/python", "10.0.0.1:6380", "{}", 120,
        environment=shlex.join(["RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN_PATH=/Users/a b/.saf/ray/auth-token"]))
    words = shlex.split(command.get_raw_value())
    assert words[:3] == ["env", "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN_PATH=/Users/a b/.saf/ray/auth-token"]
    assert words[3] == "/Users/a b/saf/venv/current/bin/python"


@pytest.mark.parametrize("ray_auth, ray, firewall, trusted, expected", [
    ("auto", "2.52.0", True, False, "token auth and firewall"),
    ("token", "2.60.0", False, False, "token auth"),
    ("auto", "2.52.0", False, True, "token auth"),
    ("auto", "2.49.1", True, False, "firewall"),
    ("off", "2.60.0", True, True, "firewall"),
    ("off", "2.60.0", False, True, "none: trusted network"),
    ("auto", "2.49.1", False, False, "none"),
])
def test_protection_names_what_keeps_strangers_off_rays_job_api(ray_auth, ray, firewall, trusted, expected):
    from types import SimpleNamespace

    from saf.auth import protection
    settings = SimpleNamespace(ray_auth=ray_auth, ray_version=ray, firewall=firewall, trusted_network=trusted)
    assert protection(settings) == expected
