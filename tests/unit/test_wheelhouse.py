"""The control-side wheelhouse: platform tags, and a pin that cannot be had stops the run."""

from __future__ import annotations

import logging

import pytest

from saf.wheelhouse import WheelhouseError, ensure_wheels, nearest_versions, platform_key, wheel_platforms


def test_linux_platforms_cover_every_manylinux_the_glibc_accepts():
    tags = wheel_platforms("Linux", "x86_64", "2.36")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags and "manylinux1_x86_64" in tags
    assert "manylinux_2_37_x86_64" not in tags


def test_mac_platforms_go_back_from_the_running_macos():
    tags = wheel_platforms("Darwin", "arm64", "15.1")
    assert tags[:2] == ["macosx_15_0_arm64", "macosx_15_0_universal2"]
    assert "macosx_11_0_arm64" in tags and "macosx_10_9_universal2" in tags
    assert "macosx_16_0_arm64" not in tags
    assert platform_key("Darwin", "arm64", "15.1", "3.9.23") == "cp3.9.23-macosx_15_0_arm64"


def test_nearest_versions_surround_the_pin():
    available = ["0.25.2", "0.26.1", "0.29.1", "0.29.3", "0.30.0", "0.31.1", "0.32.4"]
    assert nearest_versions("mlx==0.30.1", available) == ["0.29.1", "0.29.3", "0.30.0", "0.31.1"]


def test_a_pin_without_wheels_fails_before_anything_with_the_nearest_pins(tmp_path, caplog):
    """A real pip download against the package index: the version does not exist."""
    caplog.set_level(logging.INFO)
    with pytest.raises(WheelhouseError) as caught:
        ensure_wheels(tmp_path, "cp3.11.2-manylinux_2_36_x86_64", "venv", ("mlx==0.29.99",),
                      wheel_platforms("Linux", "x86_64", "2.36"), "3.11.2", node="gamma")
    message = str(caught.value)
    assert message.startswith("mlx==0.29.99 has no wheel for Python 3.11.2 on manylinux_2_36_x86_64 (node gamma).")
    assert "0.29.1" in message  # a nearby version that exists
    assert not any(tmp_path.rglob("*.whl")) and not (tmp_path / "cp3.11.2-manylinux_2_36_x86_64" / "venv").exists()
    # said before the download began: what, for which platform, how long
    assert any(record.getMessage().startswith("--> Downloading the wheels of venv for cp3.11.2-manylinux_2_36_x86_64 "
                                              "into ") and "about a minute" in record.getMessage()
               for record in caplog.records)
